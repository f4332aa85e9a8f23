"""The embedded on-disk index: an inverted index of per-term posting lists, scored exactly with NumPy.

Layout of an index folder::

    manifest.json            format, metadata (model, vocabulary hash, pruning), the live segments
    seg-000001/              one segment per `save()` that had new documents
        doc_ids.json         external document ids, row order
        texts.json           document texts (optional, for display)
        postings_ptr.npy     int64 [vocab + 1]: term t's postings are [ptr[t], ptr[t + 1])
        postings_docs.npy    int32 [nnz]: segment rows, ascending within a term
        postings_weights.npy float32 [nnz]
        deleted-<gen>.npy    bool [n_docs] tombstones (a new file per generation)

Posting arrays are opened with `np.load(mmap_mode="r")`, so they are never read whole: the OS pages
in only the posting lists queries touch (opening still reads the document ids, one JSON list per
segment). `add` buffers documents in memory (searchable at once);
`save` writes them as a new segment and then swaps `manifest.json` atomically, so readers see either
the old or the new set of segments. `delete` writes tombstones; `compact` rewrites everything live
into one segment. Re-adding an existing id replaces it. One writer at a time.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from splade.atomic import fsync_files, recover_dir, write_json
from splade.errors import SpladeError
from splade.indexer.base import IndexMetadata, SearchHits, SparseIndex, check_add_arguments
from splade.sparse import SparseBatch

FORMAT = "splade-sparse-index"
VERSION = 1
MANIFEST = "manifest.json"


class _Segment:
    """One immutable set of documents as posting lists (memory-mapped or in memory) plus tombstones."""

    def __init__(self, name: str, doc_ids: list[str], ptr: np.ndarray, docs: np.ndarray, weights: np.ndarray,
                 texts: list[str] | None, deleted: np.ndarray | None = None) -> None:
        self.name = name
        self.doc_ids = doc_ids
        self.ptr, self.docs, self.weights = ptr, docs, weights
        self._texts = texts
        self.texts_file: Path | None = None  # read on first use: texts are only needed for display
        n = len(doc_ids)
        self.deleted = np.zeros(n, dtype=bool) if deleted is None else np.array(deleted, dtype=bool)
        self.deleted_file: str | None = None
        self.dirty = False  # tombstones changed since the last save

    @property
    def texts(self) -> list[str] | None:
        if self._texts is None and self.texts_file is not None and self.texts_file.is_file():
            self._texts = json.loads(self.texts_file.read_text(encoding="utf-8"))
        return self._texts

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def live(self) -> int:
        return int(self.n_docs - self.deleted.sum())

    @staticmethod
    def from_batch(name: str, doc_ids: list[str], vectors: SparseBatch, texts: list[str] | None) -> _Segment:
        """Invert a CSR batch (rows = documents) into posting lists (CSC)."""
        csr = sp.csr_matrix((vectors.values, vectors.indices, vectors.indptr),
                            shape=(len(vectors), vectors.vocab_size))
        csc = csr.tocsc()
        csc.sort_indices()
        return _Segment(name, doc_ids, csc.indptr.astype(np.int64), csc.indices.astype(np.int32),
                        csc.data.astype(np.float32), texts)

    def to_batch(self, rows: np.ndarray) -> SparseBatch:
        """The given rows back as a CSR batch (for compaction)."""
        vocab = self.ptr.size - 1
        csc = sp.csc_matrix((np.asarray(self.weights), np.asarray(self.docs), np.asarray(self.ptr)),
                            shape=(self.n_docs, vocab))
        csr = csc.tocsr()[rows]
        csr.sort_indices()
        return SparseBatch(csr.indptr, csr.indices, csr.data, vocab)

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=False)
        np.save(folder / "postings_ptr.npy", np.asarray(self.ptr))
        np.save(folder / "postings_docs.npy", np.asarray(self.docs))
        np.save(folder / "postings_weights.npy", np.asarray(self.weights))
        (folder / "doc_ids.json").write_text(json.dumps(self.doc_ids, ensure_ascii=False), encoding="utf-8")
        if self.texts is not None:
            (folder / "texts.json").write_text(json.dumps(self.texts, ensure_ascii=False), encoding="utf-8")
        fsync_files(sorted(folder.iterdir()))

    @staticmethod
    def read(root: Path, entry: dict) -> _Segment:
        folder = root / entry["name"]
        try:
            doc_ids = json.loads((folder / "doc_ids.json").read_text(encoding="utf-8"))
            # plain ndarray views of the memory maps: slicing a np.memmap builds a subclass object per
            # slice, which costs more than the arithmetic on a short posting list
            ptr, docs, weights = (np.asarray(np.load(folder / f"postings_{part}.npy", mmap_mode="r"))
                                  for part in ("ptr", "docs", "weights"))
            deleted = np.load(root / entry["deleted"]) if entry.get("deleted") else None
        except (OSError, ValueError) as exc:
            raise SpladeError(f"{folder}: damaged index segment ({exc})") from None
        if len(doc_ids) != entry.get("n_docs") or docs.size != weights.size or ptr[-1] != docs.size:
            raise SpladeError(f"{folder}: damaged index segment (sizes disagree with {MANIFEST})")
        segment = _Segment(entry["name"], doc_ids, ptr, docs, weights, None, deleted)
        segment.texts_file = folder / "texts.json"
        segment.deleted_file = entry.get("deleted")
        return segment

    def score(self, term_ids: np.ndarray, term_weights: np.ndarray) -> np.ndarray:
        """Exact dot products of one query with every row, term at a time (float64 accumulator)."""
        starts, ends = self.ptr[term_ids], self.ptr[term_ids + 1]
        scores = np.zeros(self.n_docs)
        for lo, hi, w in zip(starts.tolist(), ends.tolist(), term_weights.tolist(), strict=True):
            if hi > lo:
                np.add.at(scores, self.docs[lo:hi], self.weights[lo:hi] * np.float64(w))
        return scores


def _top_k(scores: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a positive score, the `top_k` best first (ties by row), and their scores."""
    if scores.size > top_k:
        kth = scores[np.argpartition(-scores, top_k - 1)[top_k - 1]]
        rows = np.flatnonzero(scores >= max(kth, np.finfo(scores.dtype).tiny))  # every row tied with the k-th
    else:
        rows = np.flatnonzero(scores > 0)
    values = scores[rows]
    order = np.lexsort((rows, -values))[:top_k]
    return rows[order], values[order]


class LocalSparseIndex(SparseIndex):
    """An embedded on-disk sparse index (see the module docstring for the layout)."""

    def __init__(self, path: Path, metadata: IndexMetadata, segments: list[_Segment],
                 generation: int) -> None:
        self.path = path
        self._metadata = metadata
        self._segments = segments
        self._generation = generation
        self._pending: dict[str, tuple[np.ndarray, np.ndarray, str | None]] = {}
        self._pending_segment: _Segment | None = None
        self._where: dict[str, tuple[int, int]] = {}
        for s, segment in enumerate(segments):
            for row in np.flatnonzero(~segment.deleted):
                self._where[segment.doc_ids[row]] = (s, int(row))

    # -- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, metadata: IndexMetadata, overwrite: bool = False) -> LocalSparseIndex:
        """A new empty index at `path`; an existing one is an error unless `overwrite=True`."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise SpladeError(f"{path}: index already exists (pass --overwrite to replace it)")
            if not (path / MANIFEST).is_file():
                raise SpladeError(f"{path}: exists and is not a splade index; refusing to replace it")
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        index = cls(path, metadata, [], 0)
        index._write_manifest()
        return index

    @classmethod
    def open(cls, path: str | Path, expected: IndexMetadata | None = None, check_model: bool = True,
             for_add: bool = False) -> LocalSparseIndex:
        """Open an index (memory-mapped); with `expected`, refuse vectors of another model or vocabulary."""
        path = Path(path)
        recover_dir(path)
        manifest_file = path / MANIFEST
        if not manifest_file.is_file():
            what = "index not found" if not path.exists() else f"not a splade index (no {MANIFEST})"
            raise SpladeError(f"{path}: {what}")
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SpladeError(f"{manifest_file}: unreadable ({exc})") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise SpladeError(f"{manifest_file}: not a version-{VERSION} {FORMAT} manifest")
        metadata = IndexMetadata.from_dict(manifest.get("metadata", {}))
        if expected is not None:
            metadata.check_compatible(expected, str(path), check_model=check_model, check_pruning=for_add)
        segments = [_Segment.read(path, entry) for entry in manifest.get("segments", [])]
        return cls(path, metadata, segments, int(manifest.get("generation", 0)))

    @property
    def metadata(self) -> IndexMetadata:
        return self._metadata

    def close(self) -> None:
        self.save()

    # -- writes ------------------------------------------------------------------------------------
    def add(self, doc_ids: Sequence[str], vectors: SparseBatch, texts: Sequence[str] | None = None) -> None:
        check_add_arguments(doc_ids, vectors, texts, self._metadata)
        for r, doc_id in enumerate(doc_ids):
            ids, weights = vectors.row(r)
            keep = np.isfinite(weights) & (weights > 0)
            self._tombstone(str(doc_id))
            text = None if texts is None else texts[r]
            self._pending[str(doc_id)] = (ids[keep].copy(), weights[keep].copy(), text)
        self._pending_segment = None

    def delete(self, doc_ids: Sequence[str]) -> int:
        removed = 0
        for doc_id in doc_ids:
            if self._pending.pop(str(doc_id), None) is not None:
                removed += 1
                self._pending_segment = None
            elif self._tombstone(str(doc_id)):
                removed += 1
        return removed

    def _tombstone(self, doc_id: str) -> bool:
        where = self._where.pop(doc_id, None)
        if where is None:
            return False
        segment = self._segments[where[0]]
        segment.deleted[where[1]] = True
        segment.dirty = True
        return True

    def save(self) -> None:
        """Write pending documents as a new segment and tombstones, then swap the manifest atomically."""
        dirty = [s for s in self._segments if s.dirty]
        if not self._pending and not dirty:
            return
        self._generation += 1
        for segment in dirty:
            segment.deleted_file = f"{segment.name}/deleted-{self._generation}.npy"
            np.save(self.path / segment.deleted_file, segment.deleted)
            fsync_files([self.path / segment.deleted_file])
        new_segment = None
        if self._pending:
            new_segment = self._build_pending()
            new_segment.name = f"seg-{self._generation:06d}"
            new_segment.write(self.path / new_segment.name)
        segments = self._segments + ([new_segment] if new_segment else [])
        self._write_manifest(segments)
        if new_segment is not None:
            base = len(self._segments)
            self._segments.append(_Segment.read(self.path, self._entry(new_segment)))
            for row, doc_id in enumerate(new_segment.doc_ids):
                self._where[doc_id] = (base, row)
        for segment in dirty:
            segment.dirty = False
        self._pending.clear()
        self._pending_segment = None
        self._remove_unreferenced()

    def compact(self) -> None:
        """Rewrite all live documents into one segment (drops tombstoned rows for good)."""
        self.save()
        if len(self._segments) <= 1 and not any(s.deleted.any() for s in self._segments):
            return
        ids, batches, texts = [], [], []
        has_texts = all(s.texts_file is not None and s.texts_file.is_file() for s in self._segments)
        for segment in self._segments:
            rows = np.flatnonzero(~segment.deleted)
            ids += [segment.doc_ids[r] for r in rows]
            batches.append(segment.to_batch(rows))
            if has_texts:
                texts += [segment.texts[r] for r in rows]
        self._generation += 1
        name = f"seg-{self._generation:06d}"
        merged = _Segment.from_batch(name, ids, SparseBatch.concat(batches), texts if has_texts else None)
        merged.write(self.path / name)
        self._write_manifest([merged])
        self._segments = [_Segment.read(self.path, self._entry(merged))]
        self._where = {doc_id: (0, row) for row, doc_id in enumerate(ids)}
        self._remove_unreferenced()

    def _build_pending(self) -> _Segment:
        if self._pending_segment is None:
            ids = list(self._pending)
            rows = [(i, w) for i, w, _ in self._pending.values()]
            texts = [t for _, _, t in self._pending.values()]
            vectors = SparseBatch.from_rows(rows, self._metadata.vocab_size)
            keep_texts = None if any(t is None for t in texts) else texts
            self._pending_segment = _Segment.from_batch("pending", ids, vectors, keep_texts)
        return self._pending_segment

    @staticmethod
    def _entry(segment: _Segment) -> dict:
        return {"name": segment.name, "n_docs": segment.n_docs, "nnz": int(segment.docs.size),
                "deleted": segment.deleted_file}

    def _write_manifest(self, segments: list[_Segment] | None = None) -> None:
        segments = self._segments if segments is None else segments
        write_json(self.path / MANIFEST, {
            "format": FORMAT, "version": VERSION, "generation": self._generation,
            "metadata": self._metadata.to_dict(),
            "segments": [self._entry(s) for s in segments],
        })

    def _remove_unreferenced(self) -> None:
        """Delete segment folders and tombstone files the manifest no longer names."""
        live = {s.name: s.deleted_file for s in self._segments}
        for child in self.path.iterdir():
            if child.is_dir() and child.name.startswith("seg-"):
                if child.name not in live:
                    shutil.rmtree(child, ignore_errors=True)
                    continue
                for old in child.glob("deleted-*.npy"):
                    if f"{child.name}/{old.name}" != live[child.name]:
                        old.unlink(missing_ok=True)

    # -- reads -------------------------------------------------------------------------------------
    def _all_segments(self) -> list[_Segment]:
        return self._segments + ([self._build_pending()] if self._pending else [])

    def count(self) -> int:
        return sum(s.live for s in self._segments) + len(self._pending)

    def size_bytes(self) -> int:
        on_disk = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return on_disk + sum(i.nbytes + w.nbytes for i, w, _ in self._pending.values())

    def search(self, queries: SparseBatch, top_k: int = 10) -> list[SearchHits]:
        if queries.vocab_size != self._metadata.vocab_size:
            raise SpladeError(f"queries have vocabulary size {queries.vocab_size}, "
                              f"the index {self._metadata.vocab_size}")
        if top_k < 1:
            raise SpladeError(f"top_k must be at least 1, got {top_k}")
        segments = self._all_segments()
        results: list[SearchHits] = []
        for ids, weights in queries.rows():
            keep = np.isfinite(weights) & (weights > 0)
            ids, weights = ids[keep].astype(np.int64), weights[keep].astype(np.float64)
            hits: list[tuple[float, int, int]] = []
            for s, segment in enumerate(segments):
                scores = segment.score(ids, weights)
                scores[segment.deleted] = 0.0
                rows, values = _top_k(scores, top_k)
                hits += [(float(v), s, int(r)) for r, v in zip(rows, values, strict=True)]
            hits.sort(key=lambda h: (-h[0], h[1], h[2]))
            results.append([(segments[s].doc_ids[r], score) for score, s, r in hits[:top_k]])
        return results

    def fetch_texts(self, doc_ids: Sequence[str]) -> list[str | None]:
        """Stored texts of the given documents (None where absent)."""
        out: list[str | None] = []
        for doc_id in doc_ids:
            if doc_id in self._pending:
                out.append(self._pending[doc_id][2])
                continue
            where = self._where.get(doc_id)
            texts = None if where is None else self._segments[where[0]].texts
            out.append(None if texts is None or where is None else texts[where[1]])
        return out
