"""Index stage: the CLI's entry points (`splade index`, `splade search`) over `splade.indexer.corpus`."""

from __future__ import annotations

import contextlib
import errno
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splade.config.index import IndexConfig, IndexTarget, SearchConfig
from splade.data.beir import Document
from splade.errors import SpladeError, at_option, first_line
from splade.indexer.base import IndexMetadata, SparseIndex
from splade.indexer.corpus import index_corpus, metadata_for, search_queries
from splade.indexer.layouts import Layout
from splade.indexer.local import build_lock
from splade.ledger import Shard, resolve_shard
from splade.lock import WriterLock

if TYPE_CHECKING:
    from splade.encoders import Encoder

log = logging.getLogger(__name__)

__all__ = ["build_index", "index_corpus", "metadata_for", "open_index", "search_queries", "search_text"]


# -- CLI stage functions -------------------------------------------------------------------------------
def _open_opensearch(target: IndexTarget, encoder: Encoder, meta: IndexMetadata, must_exist: bool,
                     check_model: bool = True, check_existing: bool = True,
                     layout: Layout | None = None) -> Any:
    from splade.indexer.opensearch import OpenSearchSparseIndex, check_index_name

    assert target.opensearch is not None
    check_index_name(target.index)
    return OpenSearchSparseIndex.connect(target.opensearch, target.index, encoder.id_to_token, meta,
                                         target.query_mode, must_exist=must_exist, check_model=check_model,
                                         check_existing=check_existing, layout=layout)


def _prepare_append(index: Any, meta: IndexMetadata, layout: Layout | None) -> None:
    """Appending: the model and pruning of the index, and its own layout (another one is an error)."""
    index.stored_metadata().check_compatible(meta, f"OpenSearch index {index.name!r}", check_pruning=True)
    stored = index.stored_layout()
    if layout is not None and layout != stored:
        raise at_option("--mapping", f"OpenSearch index {index.name!r} is laid out as {stored.name}, not "
                                     f"{layout.name}; rebuild it (without --append) to change that")
    index.layout = stored


def build_index(config: IndexConfig, show_progress: bool = True) -> dict[str, Any]:
    """`splade index`: load the corpus (fails before anything is built), encode it, and build the index.

    A local index takes its writer lock first (a second writer fails at once), then publishes a new
    generation that readers switch to in one rename; an OpenSearch index is loaded into a new concrete
    index and the alias moved only after the count check. With `append`, documents are added to the
    existing index instead (same model and pruning required). `notes` in the result says what was
    cleaned up after an interrupted earlier run.

    `config.shard` ("i/n"; torchrun's RANK/WORLD_SIZE when not given) encodes only this process's share;
    the last shard to finish publishes the whole index (`splade.indexer.sharded`; `message` in the result
    says which). `_layout(config)`: the OpenSearch field type, SEISMIC parameters and two-phase pipeline.
    """
    from splade.data.beir import load_corpus
    from splade.encoders import load_encoder

    target, layout = config, _layout(config)
    local = target.backend == "local"
    if local and layout is not None:
        raise at_option("--mapping", "--mapping, --two-phase, --seismic, --primary-shards and --replicas "
                                     "need --backend opensearch")
    sharded = resolve_shard(config.shard)
    corpus_file = config.corpus / "corpus.jsonl" if config.corpus.is_dir() else config.corpus
    documents = list(load_corpus(corpus_file, config.duplicate_ids).values())
    if not documents:
        raise SpladeError(f"{corpus_file}: no documents")
    if local:
        _check_local_target(Path(target.index), config.append)
    else:  # fail fast on an unreachable cluster or bad credentials, before loading the model
        check_connection(target)
    whole_build = local and sharded is None
    with (build_lock(Path(target.index)) if whole_build else contextlib.nullcontext()) as lock:
        device = sharded.device(config.device) if sharded else config.device
        encoder = _load_encoder(load_encoder, config.model, device)
        meta = metadata_for(encoder, config.top_k_doc, config.threshold)
        result = {"index": target.index, "backend": target.backend, "model": meta.model_name,
                  "device": encoder.device_description}
        if sharded is not None:
            return {**result, **_build_shard(encoder, documents, target, meta, sharded, config.batch_size,
                                             config.append, show_progress, layout)}
        if local:
            count, notes = _build_local(encoder, documents, Path(target.index), meta, config.batch_size,
                                        config.append, show_progress, lock)
        else:
            count, notes = _build_opensearch(encoder, documents, target, meta, config.batch_size,
                                             config.append, show_progress, layout)
    return {**result, "documents": count, "notes": notes}


def _layout(config: IndexConfig) -> Layout | None:
    """The OpenSearch layout the options ask for (None: the default `rank_features` one)."""
    custom = config.mapping or config.two_phase or config.seismic
    if not (custom or config.primary_shards != 1 or config.replicas):
        return None
    return Layout.build(config.mapping or "rank_features", config.two_phase, config.seismic,
                        config.primary_shards, config.replicas)


def _build_shard(encoder: Encoder, documents: list[Document], target: IndexTarget, meta: IndexMetadata,
                 shard: Shard, batch_size: int, append: bool, show_progress: bool,
                 layout: Layout | None) -> dict[str, Any]:
    """This process's share of a sharded build (see `splade.indexer.sharded`)."""
    from splade.indexer import sharded

    if target.backend == "local":
        outcome = sharded.build_local_shard(encoder, documents, Path(target.index), meta, shard, batch_size,
                                            append, show_progress)
        return sharded.summary(outcome, f"the local index {target.index}")
    index = _open_opensearch(target, encoder, meta, must_exist=append, check_existing=append, layout=layout)
    with index:
        if append:  # OpenSearch appends are not atomic anyway: each shard adds its share through the alias
            _prepare_append(index, meta, layout)
            count = index_corpus(encoder, sharded.my_documents(documents, shard), index, batch_size,
                                 show_progress)
            return {"documents": count, "notes": [],
                    "message": f"shard {shard.label}: appended {count} documents to {target.index!r}"}
        outcome = sharded.build_opensearch_shard(encoder, documents, index, shard, batch_size, show_progress)
    return sharded.summary(outcome, f"the OpenSearch alias {target.index!r}")


def check_connection(target: IndexTarget) -> None:
    """Reach the cluster once (a one-line `SpladeError` for an unreachable cluster or a wrong password)."""
    from splade.indexer.connection import describe_error, make_client
    from splade.indexer.opensearch import check_index_name
    from splade.indexer.retry import RetryPolicy

    assert target.opensearch is not None
    check_index_name(target.index)
    client = make_client(target.opensearch)
    try:
        RetryPolicy().call(client.info)
    except Exception as exc:
        raise describe_error(exc, target.opensearch, "connecting") from None
    finally:
        client.close()


def _load_encoder(loader: Any, model: str | Path, device: str | None) -> Encoder:
    if not Path(model).is_dir():
        raise at_option("--model", f"model folder not found: {model}")
    try:
        encoder = loader(model, device=device)
    except (OSError, ValueError) as exc:
        raise at_option("--model", f"cannot load a model from {model}: {first_line(exc)}") from None
    if getattr(getattr(encoder, "model", None), "head_built", False):
        log.warning("--model %s has no trained MLM head (a dense or base encoder?): its SPLADE head was "
                    "built untrained here, so the vectors do not rank well; train it first with splade train",
                    model)
    return encoder


def _check_local_target(path: Path, append: bool) -> None:
    from splade.indexer.generations import is_index, is_unpublished

    if append and not is_index(path):
        raise at_option("--append", f"{path}: no index to append to")
    if path.is_file() or (path.is_dir() and any(path.iterdir()) and not is_index(path)
                          and not is_unpublished(path)):
        raise at_option("--index", f"{path} exists and is not a splade index; refusing to replace it")


def _build_local(encoder: Encoder, documents: list[Document], path: Path, meta: IndexMetadata,
                 batch_size: int, append: bool, show_progress: bool,
                 lock: WriterLock) -> tuple[int, list[str]]:
    """Encode into a new generation (on top of the published one with `append`) and publish it."""
    from splade.indexer.local import LocalSparseIndex

    if append:
        index = LocalSparseIndex.open(path, expected=meta, for_add=True, lock=lock)
    else:
        index = LocalSparseIndex.create(path, meta, overwrite=True, lock=lock)
    try:
        index_corpus(encoder, documents, index, batch_size, show_progress)
        index.save()
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from splade.indexer.generations import published_entries, remove_unreferenced

        with contextlib.suppress(OSError, SpladeError):  # give the space of the unpublished files back
            remove_unreferenced(path, *published_entries(path))
        raise SpladeError(f"{path}: writing the index failed ({exc.strerror}); the published index is "
                          "unchanged: free some space and run it again") from None
    notes = []
    if index.recovered:
        shown = ", ".join(index.recovered[:3]) + (", ..." if len(index.recovered) > 3 else "")
        notes.append(f"removed {len(index.recovered)} unpublished files an interrupted write left in {path} "
                     f"({shown})")
    return index.count(), notes


def _build_opensearch(encoder: Encoder, documents: list[Document], target: IndexTarget, meta: IndexMetadata,
                      batch_size: int, append: bool, show_progress: bool,
                      layout: Layout | None) -> tuple[int, list[str]]:
    index = _open_opensearch(target, encoder, meta, must_exist=append, check_existing=append, layout=layout)
    with index:
        notes = [f"removed stale build index {name!r} (left by an interrupted rebuild)"
                 for name in index.remove_stale_builds()]
        if append:
            _prepare_append(index, meta, layout)
            index_corpus(encoder, documents, index, batch_size, show_progress)
        else:
            with index.rebuild():
                index_corpus(encoder, documents, index, batch_size, show_progress)
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
        hits = index.search(encoder.encode_queries([query]), top_k=config.top_k)[0]
        texts = index.fetch_texts([d for d, _ in hits])
    return [(doc_id, score, text) for (doc_id, score), text in zip(hits, texts, strict=True)]
