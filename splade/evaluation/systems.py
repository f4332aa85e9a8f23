"""SPLADE as a compared system: encode with an `Encoder`, index and search through a `SparseIndex`."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from splade.data.beir import Document
from splade.errors import SpladeError
from splade.evaluation.base import RetrievalSystem, SearchOutput, stopwatch
from splade.evaluation.efficiency import average_terms, flops
from splade.sparse import SparseBatch

log = logging.getLogger(__name__)
BACKENDS = ("local", "opensearch")
ADD_CHUNK = 512  # documents per `SparseIndex.add` call (bounded bulk requests for OpenSearch)
SEARCH_CHUNK = 64  # queries per `SparseIndex.search` call


class SpladeSystem(RetrievalSystem):
    """A SPLADE checkpoint or ONNX export, searched exactly through the embedded index or OpenSearch."""

    kind = "splade"

    def __init__(self, name: str, model_path: str | Path, backend: str = "local",
                 opensearch: Any | None = None, encoder_backend: str = "auto", device: str | None = None,
                 batch_size: int = 32, doc_top_k: int | None = None, threshold: float = 0.0,
                 max_length: int | None = None) -> None:
        from splade.encoders import load_encoder

        if backend not in BACKENDS:
            raise SpladeError(f"--backend: unknown backend {backend!r} (choose {', '.join(BACKENDS)})")
        model_path = Path(model_path)
        if not model_path.is_dir():
            raise SpladeError(f"--splade: model folder {model_path} not found")
        super().__init__(name)
        self.model_path, self.backend, self.opensearch = model_path, backend, opensearch
        self.encoder = load_encoder(model_path, backend=encoder_backend, device=device, max_length=max_length)
        self.batch_size, self.doc_top_k, self.threshold = batch_size, doc_top_k, threshold
        self._index = None
        self._tmp: Path | None = None
        self._doc_vectors: SparseBatch | None = None
        self._generation = 0

    @property
    def description(self) -> str:
        where = "embedded index" if self.backend == "local" else "OpenSearch rank_features"
        return f"SPLADE {self.model_path.name} ({self.encoder.device_description}, {where})"

    def _metadata(self):
        from splade.indexer.base import IndexMetadata

        return IndexMetadata(model_name=self.encoder.model_name, vocab_hash=self.encoder.vocab_hash,
                             vocab_size=self.encoder.vocab_size, top_k=self.doc_top_k,
                             threshold=self.threshold)

    def _new_index(self):
        """A fresh empty index: a temporary embedded one, or an OpenSearch alias `splade-eval-<name>-<n>`."""
        self._generation += 1
        if self.backend == "local":
            from splade.indexer.local import LocalSparseIndex

            self._tmp = Path(tempfile.mkdtemp(prefix="splade-eval-"))
            return LocalSparseIndex.create(self._tmp / "index", self._metadata())
        from splade.indexer.opensearch import OpenSearchSettings, OpenSearchSparseIndex

        settings = self.opensearch or OpenSearchSettings.from_env()
        alias = f"splade-eval-{_slug(self.name)}-{self._generation}"
        index = OpenSearchSparseIndex.connect(settings, alias, self.encoder.id_to_token, self._metadata(),
                                              must_exist=False, check_existing=False)
        for stale in index.remove_stale_builds():
            log.warning("removed stale build index %r (left by an interrupted evaluation)", stale)
        return index

    def _load(self, documents: Sequence[Document], vectors: SparseBatch) -> None:
        for start in range(0, len(documents), ADD_CHUNK):
            rows = range(start, min(start + ADD_CHUNK, len(documents)))
            self._index.add([documents[r].doc_id for r in rows], vectors.select(rows))

    def index(self, documents: Sequence[Document], show_progress: bool = False) -> None:
        self.close()
        with stopwatch() as encode_time:
            vectors = self.encoder.encode([d.full_text for d in documents], batch_size=self.batch_size,
                                          top_k=self.doc_top_k, threshold=self.threshold,
                                          show_progress=show_progress, desc=f"{self.name} documents")
        with stopwatch() as index_time:
            self._index = self._new_index()
            if self.backend == "local":
                self._load(documents, vectors)
                self._index.save()
            else:  # a new concrete index behind the alias, count-checked before the alias moves to it
                with self._index.rebuild():
                    self._load(documents, vectors)
        self.doc_encode_s, self.index_s = encode_time[0], index_time[0]
        self._doc_vectors = vectors

    def search(self, queries: dict[str, str], top_k: int, show_progress: bool = False) -> SearchOutput:
        if self._index is None or self._doc_vectors is None:
            raise RuntimeError("index() a corpus before searching")
        qids = list(queries)
        with stopwatch() as encode_time:
            vectors = self.encoder.encode([queries[q] for q in qids], batch_size=self.batch_size,
                                          show_progress=show_progress, desc=f"{self.name} queries")
        run = {}
        with stopwatch() as search_time:
            for start in range(0, len(qids), SEARCH_CHUNK):
                rows = range(start, min(start + SEARCH_CHUNK, len(qids)))
                hits = self._index.search(vectors.select(rows), top_k=top_k)
                for r, found in zip(rows, hits, strict=True):
                    run[qids[r]] = {doc_id: float(score) for doc_id, score in found}
        return SearchOutput(run, encode_time[0], search_time[0], average_terms(vectors),
                            flops(vectors, self._doc_vectors))

    @property
    def avg_doc_terms(self) -> float:
        return average_terms(self._doc_vectors) if self._doc_vectors is not None else 0.0

    @property
    def index_bytes(self) -> int:
        return int(self._index.size_bytes()) if self._index is not None else 0

    def close(self) -> None:
        """Drop the evaluation's index: the temporary folder, or the OpenSearch alias and its index."""
        if self._index is not None:
            self._index.drop()
            self._index.close()
            self._index = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


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
