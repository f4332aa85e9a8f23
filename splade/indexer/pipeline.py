"""Index stage: encode a corpus into a `SparseIndex`, run queries against one, and the CLI's entry points."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from splade.config.index import IndexConfig, IndexTarget, SearchConfig
from splade.data.beir import Document
from splade.errors import SpladeError, at_option, first_line
from splade.indexer.base import IndexMetadata, SparseIndex
from splade.indexer.lock import WriterLock

if TYPE_CHECKING:
    from splade.encoders import Encoder

ENCODE_CHUNK = 1024  # documents encoded and handed to `index.add` at a time


def metadata_for(encoder: Encoder, top_k: int | None = None, threshold: float = 0.0) -> IndexMetadata:
    """The metadata an index built with `encoder` and this document pruning carries."""
    return IndexMetadata(encoder.model_name, encoder.vocab_hash, encoder.vocab_size, top_k, threshold)


def index_corpus(encoder: Encoder, documents: Sequence[Document], index: SparseIndex,
                 batch_size: int = IndexConfig.default("batch_size"), show_progress: bool = True) -> int:
    """Encode `documents` (title + text, pruned as `index.metadata` says) and add them; returns the count."""
    meta = index.metadata
    if encoder.vocab_hash != meta.vocab_hash:
        raise SpladeError("the encoder's vocabulary differs from the index's; "
                          "use the model the index was built with")
    done = 0
    with tqdm(total=len(documents), desc="indexing", unit="doc", disable=not show_progress) as bar:
        for start in range(0, len(documents), ENCODE_CHUNK):
            chunk = documents[start:start + ENCODE_CHUNK]
            texts = [d.full_text for d in chunk]
            vectors = encoder.encode(texts, batch_size=batch_size, top_k=meta.top_k, threshold=meta.threshold)
            index.add([d.doc_id for d in chunk], vectors, texts)
            done += len(chunk)
            bar.update(len(chunk))
    return done


def search_queries(encoder: Encoder, queries: dict[str, str], index: SparseIndex,
                   top_k: int = SearchConfig.default("top_k"),
                   batch_size: int = IndexConfig.default("batch_size"),
                   show_progress: bool = False) -> dict[str, dict[str, float]]:
    """Encode and run `queries`; the result is a run `{query id: {doc id: score}}` (best first)."""
    qids = list(queries)
    vectors = encoder.encode([queries[q] for q in qids], batch_size=batch_size, show_progress=show_progress,
                             desc="queries")
    hits = index.search(vectors, top_k=top_k)
    return {qid: dict(row) for qid, row in zip(qids, hits, strict=True)}


# -- CLI stage functions -------------------------------------------------------------------------------
def _open_opensearch(target: IndexTarget, encoder: Encoder, meta: IndexMetadata, must_exist: bool,
                     check_model: bool = True, check_existing: bool = True) -> Any:
    from splade.indexer.opensearch import OpenSearchSparseIndex, check_index_name

    assert target.opensearch is not None
    check_index_name(target.index)
    return OpenSearchSparseIndex.connect(target.opensearch, target.index, encoder.id_to_token, meta,
                                         target.query_mode, must_exist=must_exist, check_model=check_model,
                                         check_existing=check_existing)


def build_index(config: IndexConfig, show_progress: bool = True) -> dict[str, Any]:
    """`splade index`: load the corpus (fails before anything is built), encode it, and build the index.

    A local index takes its writer lock first (a second writer fails at once), then publishes a new
    generation that readers switch to in one rename; an OpenSearch index is loaded into a new concrete
    index and the alias moved only after the count check. With `append`, documents are added to the
    existing index instead (same model and pruning required). `notes` in the result says what was
    cleaned up after an interrupted earlier run.
    """
    from splade.data.beir import load_corpus
    from splade.encoders import load_encoder

    corpus_file = config.corpus / "corpus.jsonl" if config.corpus.is_dir() else config.corpus
    documents = list(load_corpus(corpus_file, config.duplicate_ids).values())
    if not documents:
        raise SpladeError(f"{corpus_file}: no documents")
    local = config.backend == "local"
    if local:
        _check_local_target(Path(config.index), config.append)
    else:  # fail fast on an unreachable cluster or bad credentials, before loading the model
        check_connection(config)
    with (_writer_lock(Path(config.index)) if local else contextlib.nullcontext()) as lock:
        encoder = _load_encoder(load_encoder, config.model, config.device)
        meta = metadata_for(encoder, config.top_k_doc, config.threshold)
        if local:
            count, notes = _build_local(encoder, documents, config, meta, show_progress, lock)
        else:
            count, notes = _build_opensearch(encoder, documents, config, meta, show_progress)
    return {"documents": count, "index": config.index, "backend": config.backend, "model": meta.model_name,
            "device": encoder.device_description, "notes": notes}


def check_connection(target: IndexTarget) -> None:
    """Reach the cluster once (a one-line `SpladeError` for an unreachable cluster or a wrong password)."""
    from splade.indexer.connection import describe_error, make_client
    from splade.indexer.opensearch import check_index_name

    assert target.opensearch is not None
    check_index_name(target.index)
    client = make_client(target.opensearch)
    try:
        client.info()
    except Exception as exc:
        raise describe_error(exc, target.opensearch, "connecting") from None
    finally:
        client.close()


def _load_encoder(loader: Any, model: str | Path, device: str | None) -> Encoder:
    if not Path(model).is_dir():
        raise at_option("--model", f"model folder not found: {model}")
    try:
        return loader(model, device=device)
    except (OSError, ValueError) as exc:
        raise at_option("--model", f"cannot load a model from {model}: {first_line(exc)}") from None


def _check_local_target(path: Path, append: bool) -> None:
    from splade.indexer.generations import is_index, is_unpublished

    if append and not is_index(path):
        raise at_option("--append", f"{path}: no index to append to")
    if path.is_file() or (path.is_dir() and any(path.iterdir()) and not is_index(path)
                          and not is_unpublished(path)):
        raise at_option("--index", f"{path} exists and is not a splade index; refusing to replace it")


@contextlib.contextmanager
def _writer_lock(path: Path) -> Iterator[WriterLock]:
    """Hold the index folder's writer lock for a whole build (before the model loads, so a second
    writer fails at once); a folder this build created is removed again if nothing was published."""
    from splade.indexer.generations import is_index

    created = not path.exists()
    lock = WriterLock(path).acquire()
    try:
        yield lock
    except BaseException:
        if created and not is_index(path):
            shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        lock.release()


def _build_local(encoder: Encoder, documents: list[Document], config: IndexConfig, meta: IndexMetadata,
                 show_progress: bool, lock: WriterLock) -> tuple[int, list[str]]:
    """Encode into a new generation (on top of the published one with `append`) and publish it."""
    from splade.indexer.local import LocalSparseIndex

    path = Path(config.index)
    if config.append:
        index = LocalSparseIndex.open(path, expected=meta, for_add=True, lock=lock)
    else:
        index = LocalSparseIndex.create(path, meta, overwrite=True, lock=lock)
    index_corpus(encoder, documents, index, config.batch_size, show_progress)
    index.save()
    notes = []
    if index.recovered:
        shown = ", ".join(index.recovered[:3]) + (", ..." if len(index.recovered) > 3 else "")
        notes.append(f"removed {len(index.recovered)} unpublished files an interrupted write left in {path} "
                     f"({shown})")
    return index.count(), notes


def _build_opensearch(encoder: Encoder, documents: list[Document], config: IndexConfig, meta: IndexMetadata,
                      show_progress: bool) -> tuple[int, list[str]]:
    index = _open_opensearch(config, encoder, meta, must_exist=config.append, check_existing=config.append)
    with index:
        notes = [f"removed stale build index {name!r} (left by an interrupted rebuild)"
                 for name in index.remove_stale_builds()]
        if config.append:
            index.stored_metadata().check_compatible(meta, f"OpenSearch index {config.index!r}",
                                                     check_pruning=True)
            index_corpus(encoder, documents, index, config.batch_size, show_progress)
        else:
            with index.rebuild():
                index_corpus(encoder, documents, index, config.batch_size, show_progress)
        return index.count(), notes


def open_index(target: IndexTarget, encoder: Encoder, check_model: bool = True) -> SparseIndex:
    """Open an existing index for searching with `encoder` (refused when it was built by another model)."""
    meta = metadata_for(encoder)
    if target.backend == "local":
        from splade.indexer.local import LocalSparseIndex

        return LocalSparseIndex.open(target.index, expected=meta, check_model=check_model)
    index = _open_opensearch(target, encoder, meta, must_exist=True, check_model=check_model)
    index.use_stored_metadata()  # searching: the stored pruning is the index's own
    return index


def search_text(config: SearchConfig, query: str) -> list[tuple[str, float, str | None]]:
    """`splade search`: encode one query and return `(doc_id, score, text)` best first."""
    from splade.encoders import load_encoder

    if not query.strip():
        raise at_option("QUERY", "the query is empty")
    if config.backend == "local":  # fail fast, before loading the model
        from splade.indexer.local import LocalSparseIndex

        LocalSparseIndex.open(config.index).close()
    else:
        check_connection(config)
    encoder = _load_encoder(load_encoder, config.model, config.device)
    index = open_index(config, encoder, check_model=not config.allow_other_model)
    with contextlib.closing(index):
        hits = index.search(encoder.encode([query]), top_k=config.top_k)[0]
        texts = index.fetch_texts([d for d, _ in hits])
    return [(doc_id, score, text) for (doc_id, score), text in zip(hits, texts, strict=True)]
