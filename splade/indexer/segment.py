"""One segment of the embedded index: an immutable set of documents as posting lists, plus tombstones.

A segment folder holds::

    doc_ids.json          external document ids, row order
    texts.json            document texts (optional, for display)
    postings_ptr.npy      int64 [vocab + 1]: term t's postings are [ptr[t], ptr[t + 1])
    postings_docs.npy     int32 [nnz]: segment rows, ascending within a term
    postings_weights.npy  float32 [nnz]
    deleted-<gen>.npy     bool [n_docs] tombstones, a new file per generation that changed them

Nothing in it is rewritten once written; a generation names the tombstone file it uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

import numpy as np
import scipy.sparse as sp

from splade.atomic import fsync_dir, fsync_files
from splade.errors import SpladeError
from splade.sparse import SparseBatch


class Segment:
    """Posting lists (memory-mapped once written) and tombstones of one set of documents."""

    def __init__(self, name: str, doc_ids: list[str], ptr: np.ndarray, docs: np.ndarray, weights: np.ndarray,
                 texts: list[str] | None, deleted: np.ndarray | None = None) -> None:
        self.name = name
        self.doc_ids = doc_ids
        self.ptr, self.docs, self.weights = ptr, docs, weights
        self._texts = texts
        # texts are read on first use (only display needs them), through a handle opened with the other
        # files: it still reads this generation's file after a newer generation has removed it
        self.texts_handle: IO[bytes] | None = None
        n = len(doc_ids)
        self.deleted = np.zeros(n, dtype=bool) if deleted is None else np.array(deleted, dtype=bool)
        self.deleted_file: str | None = None  # "<segment>/deleted-<gen>.npy", relative to the index folder
        self.dirty = False  # tombstones changed since the last save
        self.disk_bytes = 0

    @property
    def texts(self) -> list[str] | None:
        if self._texts is None and self.texts_handle is not None:
            self.texts_handle.seek(0)
            self._texts = json.loads(self.texts_handle.read().decode("utf-8"))
            self.texts_handle.close()
            self.texts_handle = None
        return self._texts

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def live(self) -> int:
        return int(self.n_docs - self.deleted.sum())

    def entry(self) -> dict:
        """This segment as its generation's manifest lists it."""
        return {"name": self.name, "n_docs": self.n_docs, "nnz": int(self.docs.size),
                "deleted": self.deleted_file, "texts": self.has_texts}

    @property
    def has_texts(self) -> bool:
        return self._texts is not None or self.texts_handle is not None

    @staticmethod
    def from_batch(name: str, doc_ids: list[str], vectors: SparseBatch, texts: list[str] | None) -> Segment:
        """Invert a CSR batch (rows = documents) into posting lists (CSC)."""
        csr = sp.csr_matrix((vectors.values, vectors.indices, vectors.indptr),
                            shape=(len(vectors), vectors.vocab_size))
        csc = csr.tocsc()
        csc.sort_indices()
        return Segment(name, doc_ids, csc.indptr.astype(np.int64), csc.indices.astype(np.int32),
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
        """Write the segment's files into a new folder and flush them to disk."""
        folder.mkdir(parents=True, exist_ok=False)
        np.save(folder / "postings_ptr.npy", np.asarray(self.ptr))
        np.save(folder / "postings_docs.npy", np.asarray(self.docs))
        np.save(folder / "postings_weights.npy", np.asarray(self.weights))
        (folder / "doc_ids.json").write_text(json.dumps(self.doc_ids, ensure_ascii=False), encoding="utf-8")
        if self.texts is not None:
            (folder / "texts.json").write_text(json.dumps(self.texts, ensure_ascii=False), encoding="utf-8")
        fsync_files(sorted(folder.iterdir()))
        fsync_dir(folder)

    def write_tombstones(self, root: Path, generation: int) -> str:
        """Write the tombstones as a new file for `generation`; returns its name relative to `root`."""
        name = f"{self.name}/deleted-{generation:06d}.npy"
        np.save(root / name, self.deleted)
        fsync_files([root / name])
        fsync_dir(root / self.name)
        return name

    @staticmethod
    def read(root: Path, entry: dict) -> Segment:
        """Open a listed segment memory-mapped; a file that is gone raises `FileNotFoundError` (a newer
        generation may have removed it: the caller decides), other damage a `SpladeError`."""
        folder = root / entry["name"]
        try:
            doc_ids = json.loads((folder / "doc_ids.json").read_text(encoding="utf-8"))
            # plain ndarray views of the memory maps: slicing a np.memmap builds a subclass object per
            # slice, which costs more than the arithmetic on a short posting list
            ptr, docs, weights = (np.asarray(np.load(folder / f"postings_{part}.npy", mmap_mode="r"))
                                  for part in ("ptr", "docs", "weights"))
            deleted = np.load(root / entry["deleted"]) if entry.get("deleted") else None
            has_texts = entry.get("texts", (folder / "texts.json").is_file())  # older manifests lack it
            texts_handle = open(folder / "texts.json", "rb") if has_texts else None  # noqa: SIM115
            disk_bytes = sum(f.stat().st_size for f in folder.iterdir() if not f.name.startswith("deleted-"))
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise SpladeError(f"{folder}: damaged index segment ({exc})") from None
        if len(doc_ids) != entry.get("n_docs") or docs.size != weights.size or ptr[-1] != docs.size:
            raise SpladeError(f"{folder}: damaged index segment (sizes disagree with its manifest)")
        segment = Segment(entry["name"], doc_ids, ptr, docs, weights, None, deleted)
        segment.texts_handle = texts_handle
        segment.deleted_file = entry.get("deleted")
        segment.disk_bytes = disk_bytes + (segment.deleted.nbytes if deleted is not None else 0)
        return segment

    def score(self, term_ids: np.ndarray, term_weights: np.ndarray) -> np.ndarray:
        """Exact dot products of one query with every row, term at a time (float64 accumulator)."""
        starts, ends = self.ptr[term_ids], self.ptr[term_ids + 1]
        scores = np.zeros(self.n_docs)
        for lo, hi, w in zip(starts.tolist(), ends.tolist(), term_weights.tolist(), strict=True):
            if hi > lo:
                np.add.at(scores, self.docs[lo:hi], self.weights[lo:hi] * np.float64(w))
        return scores


def top_k_rows(scores: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a positive score, the `top_k` best first (ties by row), and their scores."""
    if scores.size > top_k:
        kth = scores[np.argpartition(-scores, top_k - 1)[top_k - 1]]
        rows = np.flatnonzero(scores >= max(kth, np.finfo(scores.dtype).tiny))  # every row tied with the k-th
    else:
        rows = np.flatnonzero(scores > 0)
    values = scores[rows]
    order = np.lexsort((rows, -values))[:top_k]
    return rows[order], values[order]
