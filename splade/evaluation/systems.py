"""SPLADE as a compared system: encode with an `Encoder`, index and search through a `SparseIndex`."""

from __future__ import annotations

import copy
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from splade.config.index import IndexTarget
from splade.data.beir import Document
from splade.errors import SpladeError, at_option
from splade.evaluation.base import RetrievalSystem, SearchOutput, stopwatch
from splade.evaluation.efficiency import average_terms, flops
from splade.fingerprint import corpus_fingerprint
from splade.indexer.base import IndexMetadata, SparseIndex
from splade.indexer.local import LocalSparseIndex
from splade.indexer.opensearch import OpenSearchSettings
from splade.indexer.pipeline import BACKENDS, backend_of, open_index
from splade.sparse import SparseBatch

log = logging.getLogger(__name__)
ADD_CHUNK = 512  # documents per `SparseIndex.add` call (bounded bulk requests for OpenSearch)


class SpladeSystem(RetrievalSystem):
    """A SPLADE checkpoint or ONNX export, searched through the embedded index (exact) or OpenSearch (laid
    out as `layout` says). `variant` makes a system for another OpenSearch layout of the same model: it
    shares the encoder and the encoded documents, so a corpus is encoded once per model."""

    kind = "splade"

    def __init__(self, name: str, model_path: str | Path, backend: str = "local",
                 opensearch: Any | None = None, encoder_backend: str = "auto", device: str | None = None,
                 batch_size: int = 32, doc_top_k: int | None = None, threshold: float = 0.0,
                 query_top_k: int | None = None, query_max_length: int | None = None,
                 doc_max_length: int | None = None,
                 layout: Any | None = None, existing_index: str | None = None) -> None:
        # lazily, on purpose: the model stack (torch, transformers, onnxruntime) loads only with a model
        from splade.encoders import load_encoder

        if backend not in BACKENDS:
            raise SpladeError(f"--backend: unknown backend {backend!r} (choose {', '.join(BACKENDS)})")
        model_path = Path(model_path)
        if not model_path.is_dir():
            raise SpladeError(f"--splade: model folder {model_path} not found")
        super().__init__(name)
        self.spec_name = name  # the name given to this model (variants add their layout to `name`)
        self.model_path, self.backend, self.opensearch, self.layout = model_path, backend, opensearch, layout
        self.index_class = backend_of(backend)
        self.encoder = load_encoder(model_path, backend=encoder_backend, device=device)
        # the model's own served lengths (splade_config.json) unless overridden
        self.query_max_length = query_max_length or self.encoder.query_max_length
        self.doc_max_length = doc_max_length or self.encoder.max_length
        _check_length("--query-max-length", query_max_length, self.encoder.tokenizer, model_path)
        _check_length("--doc-max-length", doc_max_length, self.encoder.tokenizer, model_path)
        self.batch_size, self.doc_top_k, self.threshold = batch_size, doc_top_k, threshold
        self.query_top_k = query_top_k  # a query's heaviest terms searched (None: every positive weight)
        self.existing_index = existing_index  # searched as it is (nothing encoded); never dropped
        self._index = None
        self._tmp: Path | None = None
        self._doc_vectors: SparseBatch | None = None
        self._generation = 0
        self._encoded: dict[str, tuple[SparseBatch, float]] = {}  # corpus key -> vectors, seconds (shared)

    def variant(self, name: str, layout: Any) -> SpladeSystem:
        """The same model and encoded documents, indexed in OpenSearch with another layout."""
        other = copy.copy(self)
        other.name, other.layout, other._index, other._tmp, other._generation = name, layout, None, None, 0
        return other

    @property
    def description(self) -> str:
        where = self.index_class.describe(self.layout)
        if self.existing_index is not None:
            where = f"existing {self.index_class.where} {self.existing_index}"
        return f"SPLADE {self.model_path.name} ({self.encoder.device_description}, {where}{self._pruning})"

    @property
    def _pruning(self) -> str:
        """`; pruned: queries to 64 terms and documents to 256 terms` (or "") for the description."""
        limits = [f"{side} to {k} terms" for side, k in (("queries", self.query_top_k),
                                                         ("documents", self.doc_top_k)) if k is not None]
        return f"; pruned: {' and '.join(limits)}" if limits else ""

    @property
    def lengths(self) -> dict[str, int | str]:
        return {"query_max_length": self.query_max_length, "doc_max_length": self.doc_max_length}

    def _metadata(self) -> IndexMetadata:
        return IndexMetadata(model_name=self.encoder.model_name, vocab_hash=self.encoder.vocab_hash,
                             vocab_size=self.encoder.vocab_size, top_k=self.doc_top_k,
                             threshold=self.threshold)

    def _target(self) -> IndexTarget:
        """Where this evaluation writes: a temporary embedded index, or the OpenSearch alias
        `splade-eval-<name>-<n>`."""
        self._generation += 1
        if self.index_class is LocalSparseIndex:
            self._tmp = Path(tempfile.mkdtemp(prefix="splade-eval-"))
            return IndexTarget(backend=self.backend, index=str(self._tmp / "index"))
        alias = f"splade-eval-{_slug(self.name)}-{self._generation}"
        return IndexTarget(backend=self.backend, index=alias,
                           opensearch=self.opensearch or OpenSearchSettings.from_env())

    @staticmethod
    def _load(index: SparseIndex, documents: Sequence[Document], vectors: SparseBatch) -> None:
        for start in range(0, len(documents), ADD_CHUNK):
            rows = range(start, min(start + ADD_CHUNK, len(documents)))
            index.add([documents[r].doc_id for r in rows], vectors.select(rows))

    def preload(self, documents: Sequence[Document], vectors: SparseBatch, seconds: float) -> None:
        """Use `vectors` (encoded elsewhere, e.g. by the shards of a sharded evaluation) for `documents`."""
        self._encoded.clear()
        self._encoded[corpus_key(documents)] = (vectors, seconds)

    def encode_documents(self, documents: Sequence[Document], show_progress: bool = False) -> SparseBatch:
        """The documents' vectors (title + text, at the document length, pruned as configured)."""
        return self.encoder.encode_documents([d.full_text for d in documents], batch_size=self.batch_size,
                                             top_k=self.doc_top_k, threshold=self.threshold,
                                             max_length=self.doc_max_length, show_progress=show_progress,
                                             desc=f"{self.name} documents")

    def index(self, documents: Sequence[Document], show_progress: bool = False) -> None:
        self.close()
        if self.existing_index is not None:
            self._open_existing(len(documents))
            return
        key = corpus_key(documents)
        if key not in self._encoded:  # variants of this model share the encoded corpus
            with stopwatch() as encode_time:
                vectors = self.encode_documents(documents, show_progress)
            self._encoded.clear()
            self._encoded[key] = (vectors, encode_time[0])
        vectors, self.doc_encode_s = self._encoded[key]
        with stopwatch() as index_time:  # published on the block's end (OpenSearch: count-checked first)
            with self.index_class.writer(self._target(), self._metadata(), keep_open=True, layout=self.layout,
                                         id_to_token=self.encoder.id_to_token) as index:
                self._load(index, documents, vectors)
            self._index = index
            for note in index.write_notes():
                log.warning("%s (before this evaluation)", note)
        self.index_s = index_time[0]
        self._doc_vectors = vectors

    def _open_existing(self, n_documents: int) -> None:
        """Search an index built earlier (`splade index`) instead of encoding the corpus: it must hold this
        model's vectors (the same model, not only the same vocabulary)."""
        target = IndexTarget(backend=self.backend, index=self.existing_index, opensearch=self.opensearch)
        with stopwatch() as open_time:
            try:
                self._index = open_index(target, self.encoder)
            except SpladeError as exc:
                raise SpladeError(f"--index {self.spec_name}: {exc}") from None
        self.doc_encode_s, self.index_s = 0.0, open_time[0]
        count = self._index.count()
        if count < n_documents:
            log.warning("%s: the index %s holds %d documents, fewer than the corpus's %d", self.name,
                        self.existing_index, count, n_documents)

    def search(self, queries: dict[str, str], top_k: int, show_progress: bool = False) -> SearchOutput:
        """Queries are encoded together, then searched one at a time: `latencies_ms` holds each search's time
        as a user would see it (for OpenSearch: the request, the cluster's work and the answer)."""
        if self._index is None or (self._doc_vectors is None and self.existing_index is None):
            raise RuntimeError("index() a corpus before searching")
        qids = list(queries)
        with stopwatch() as encode_time:
            vectors = self.encoder.encode_queries([queries[q] for q in qids], batch_size=self.batch_size,
                                                  top_k=self.query_top_k, max_length=self.query_max_length,
                                                  show_progress=show_progress, desc=f"{self.name} queries")
        run, latencies = {}, []
        with stopwatch() as search_time:
            for r in tqdm(range(len(qids)), desc=f"{self.name} search", disable=not show_progress, unit="q"):
                start = time.perf_counter()
                [found] = self._index.search(vectors.select([r]), top_k=top_k)
                latencies.append((time.perf_counter() - start) * 1000.0)
                run[qids[r]] = {doc_id: float(score) for doc_id, score in found}
        cost = flops(vectors, self._doc_vectors) if self._doc_vectors is not None else None
        return SearchOutput(run, encode_time[0], search_time[0], average_terms(vectors), cost, latencies)

    @property
    def avg_doc_terms(self) -> float:
        if self._doc_vectors is None:
            return float("nan") if self.existing_index is not None else 0.0
        return average_terms(self._doc_vectors)

    @property
    def index_bytes(self) -> int:
        return int(self._index.size_bytes()) if self._index is not None else 0

    def close(self) -> None:
        """Drop the evaluation's index: the temporary folder, or the OpenSearch alias and its index."""
        if self._index is not None:
            if self.existing_index is None:
                self._index.drop()
            self._index.close()
            self._index = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _check_length(option: str, length: int | None, tokenizer: Any, model_path: Path) -> None:
    """An override longer than the model's tokenizer takes (its `model_max_length`) is the user's mistake."""
    limit = tokenizer.model_max_length  # huge where the tokenizer sets none
    if length is not None and limit and length > limit:
        raise at_option(option, f"{length} tokens is more than {model_path.name} reads ({limit})")


def corpus_key(documents: Sequence[Document]) -> str:
    """Names a corpus by its document ids and texts (which vectors belong to which corpus)."""
    return corpus_fingerprint(documents)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-") or "model"


def parse_splade_spec(spec: str) -> tuple[str, Path]:
    """`name=path` or `path` (named after the folder, other characters than `[A-Za-z0-9._-]` made `-`)."""
    name, sep, path = spec.partition("=")
    if not sep:
        path, name = spec, re.sub(r"[^A-Za-z0-9._-]+", "-", Path(spec.rstrip("/")).name).strip("-")
    if not name or not path:
        raise SpladeError(f"--splade: expected MODEL_DIR or NAME=MODEL_DIR, got {spec!r}")
    return name, Path(path)


def parse_index_specs(specs: Sequence[str], splade_names: Sequence[str]) -> dict[str, str]:
    """`--index` values as {SPLADE system name: index}: `NAME=INDEX`, or `INDEX` with one --splade."""
    indexes: dict[str, str] = {}
    for spec in specs:
        name, sep, index = spec.partition("=")
        if not sep:
            if len(splade_names) != 1:
                raise SpladeError(f"--index {spec}: with {len(splade_names)} --splade systems, say which one "
                                  "searches it: --index NAME=INDEX")
            name, index = splade_names[0], spec
        if not name or not index:
            raise SpladeError(f"--index: expected INDEX or NAME=INDEX, got {spec!r}")
        if name in indexes:
            raise SpladeError(f"--index: two indexes for the --splade system {name!r}")
        indexes[name] = index
    return indexes
