"""Index stage: the CLI's entry points (`splade index`, `splade search`) over `splade.indexer.corpus`.

A backend is chosen in one place, `backend_of`; everything else goes through the `SparseIndex` class it
returns: `check_target`, `build_lock`, `writer` (fill, then publish on a clean exit) and `open_for_search`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splade.config.index import IndexConfig, IndexTarget, SearchConfig
from splade.data.beir import Document, load_corpus
from splade.errors import SpladeError, at_option, first_line
from splade.indexer import sharded
from splade.indexer.base import IndexMetadata, SparseIndex
from splade.indexer.corpus import index_corpus, metadata_for, search_queries
from splade.indexer.local import LocalSparseIndex
from splade.indexer.opensearch import OpenSearchSparseIndex
from splade.indexer.opensearch.layouts import Layout
from splade.ledger import Shard, resolve_shard

if TYPE_CHECKING:
    from splade.encoders import Encoder

log = logging.getLogger(__name__)

__all__ = ["backend_of", "build_index", "index_corpus", "metadata_for", "open_index", "search_queries",
           "search_text"]

BACKENDS: dict[str, type[SparseIndex]] = {"local": LocalSparseIndex, "opensearch": OpenSearchSparseIndex}


def backend_of(target: IndexTarget | str) -> type[SparseIndex]:
    """The `SparseIndex` class of a target's backend (`local` or `opensearch`): where a backend is chosen."""
    name = target if isinstance(target, str) else target.backend
    try:
        return BACKENDS[name]
    except KeyError:
        raise at_option("--backend", f"unknown backend {name!r} (choose {', '.join(BACKENDS)})") from None


def build_index(config: IndexConfig, show_progress: bool = True) -> dict[str, Any]:
    """`splade index`: load the corpus (fails before anything is built), encode it, and build the index.

    A local index takes its writer lock first (a second writer fails at once), then publishes a new
    generation that readers switch to in one rename; an OpenSearch index is loaded into a new concrete
    index and the alias moved only after the count check (both: `SparseIndex.writer`). With `append`,
    documents are added to the existing index instead (same model and pruning required). `notes` in the
    result says what was cleaned up after an interrupted earlier run.

    `config.shard` ("i/n"; torchrun's RANK/WORLD_SIZE when not given) encodes only this process's share;
    the last shard to finish publishes the whole index (`splade.indexer.sharded`; `message` in the result
    says which). `_layout(config)`: the OpenSearch field type, SEISMIC parameters and two-phase pipeline.
    """
    backend, layout = backend_of(config), _layout(config)
    if layout is not None and not backend.takes_layout:  # fail before the corpus loads
        raise at_option("--mapping", "--mapping, --two-phase, --seismic, --primary-shards and --replicas "
                                     "need --backend opensearch")
    shard = resolve_shard(config.shard)
    corpus_file = config.corpus / "corpus.jsonl" if config.corpus.is_dir() else config.corpus
    documents = list(load_corpus(corpus_file, config.duplicate_ids).values())
    if not documents:
        raise SpladeError(f"{corpus_file}: no documents")
    backend.check_target(config, config.append)  # fail fast, before loading the model
    with (backend.build_lock(config) if shard is None else contextlib.nullcontext()) as lock:
        device = shard.device(config.device) if shard else config.device
        encoder = _load_encoder(config.model, device)
        meta = metadata_for(encoder, config.top_k_doc, config.threshold)
        result = {"index": config.index, "backend": config.backend, "model": meta.model_name,
                  "device": encoder.device_description}
        if shard is not None:
            return {**result, **_build_shard(encoder, documents, config, meta, shard, show_progress, layout)}
        with backend.writer(config, meta, append=config.append, keep_open=True, lock=lock, layout=layout,
                            id_to_token=encoder.id_to_token) as index:
            index_corpus(encoder, documents, index, config.batch_size, show_progress)
        with contextlib.closing(index):
            return {**result, "documents": index.count(), "notes": index.write_notes()}


def _layout(config: IndexConfig) -> Layout | None:
    """The OpenSearch layout the options ask for (None: the default `rank_features` one)."""
    custom = config.mapping or config.two_phase or config.seismic
    if not (custom or config.primary_shards != 1 or config.replicas):
        return None
    return Layout.build(config.mapping or "rank_features", config.two_phase, config.seismic,
                        config.primary_shards, config.replicas)


def _build_shard(encoder: Encoder, documents: list[Document], config: IndexConfig, meta: IndexMetadata,
                 shard: Shard, show_progress: bool, layout: Layout | None) -> dict[str, Any]:
    """This process's share of a sharded build (see `splade.indexer.sharded`)."""
    build = sharded.SHARD_BUILDERS[config.backend]
    return build(encoder, documents, config, meta, shard, config.batch_size, config.append, show_progress,
                 layout)


def check_connection(target: IndexTarget) -> None:
    """Reach the cluster once (a one-line `SpladeError` for an unreachable cluster or a wrong password)."""
    OpenSearchSparseIndex.check_target(target)


def _load_encoder(model: str | Path, device: str | None) -> Encoder:
    # lazily, on purpose: the model stack (torch, transformers, onnxruntime) loads only when a model does
    from splade.encoders import load_encoder

    if not Path(model).is_dir():
        raise at_option("--model", f"model folder not found: {model}")
    try:
        encoder = load_encoder(model, device=device)
    except (OSError, ValueError) as exc:
        raise at_option("--model", f"cannot load a model from {model}: {first_line(exc)}") from None
    if getattr(getattr(encoder, "model", None), "head_built", False):
        log.warning("--model %s has no trained MLM head (a dense or base encoder?): its SPLADE head was "
                    "built untrained here, so the vectors do not rank well; train it first with splade train",
                    model)
    return encoder


def open_index(target: IndexTarget, encoder: Encoder, check_model: bool = True) -> SparseIndex:
    """Open an existing index for searching with `encoder` (refused when it was built by another model)."""
    return backend_of(target).open_for_search(target, metadata_for(encoder), check_model=check_model,
                                              id_to_token=encoder.id_to_token)


def search_text(config: SearchConfig, query: str) -> list[tuple[str, float, str | None]]:
    """`splade search`: encode one query and return `(doc_id, score, text)` best first."""
    if not query.strip():
        raise at_option("QUERY", "the query is empty")
    backend_of(config).check_target(config)  # fail fast, before loading the model
    encoder = _load_encoder(config.model, config.device)
    index = open_index(config, encoder, check_model=not config.allow_other_model)
    with contextlib.closing(index):
        hits = index.search(encoder.encode_queries([query], top_k=config.query_top_k), top_k=config.top_k)[0]
        texts = index.fetch_texts([d for d, _ in hits])
    return [(doc_id, score, text) for (doc_id, score), text in zip(hits, texts, strict=True)]
