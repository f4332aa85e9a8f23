"""One segment of the embedded index: an immutable set of documents as posting lists, plus tombstones.

A segment folder holds::

    doc_ids.json          external document ids, row order
    texts.json            document texts (optional, for display)
    postings_ptr.npy      int64 [vocab + 1]: term t's postings are [ptr[t], ptr[t + 1])
    postings_docs.npy     int32 [nnz]: segment rows, ascending within a term
    postings_weights.npy  float32 [nnz]
    postings_crc.npy      uint32 [vocab, 2]: CRC-32 of each term's rows and weights
    deleted-<gen>.npy     bool [n_docs] tombstones, a new file per generation that changed them

Nothing in it is rewritten once written; a generation names the tombstone file it uses, and the
checksums of the segment's files (`splade.indexer.local.integrity`). Opening a segment checks its structure
and the checksums of its small files; a posting list is checked the first time a query uses it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import IO, Any

import numpy as np
import scipy.sparse as sp

from splade.atomic import fsync_dir, fsync_files
from splade.errors import SpladeError
from splade.indexer.local import integrity
from splade.sparse import SparseBatch

SEGMENT_NAME = re.compile(r"^seg-\d+(?:-\d+)?$")
POSTINGS = ("postings_ptr.npy", "postings_docs.npy", "postings_weights.npy")
CRC_FILE = "postings_crc.npy"


def check_entry(entry: Any, where: Path) -> None:
    """A manifest's segment entry names a segment folder and its own tombstone file, nothing else (no
    path may lead out of the index folder)."""
    name = entry.get("name") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not SEGMENT_NAME.match(name):
        raise SpladeError(f"{where}: damaged manifest (segment name {str(name)[:60]!r})")
    deleted = entry.get("deleted")
    if deleted is not None and (not isinstance(deleted, str)
                                or not re.fullmatch(rf"{re.escape(name)}/deleted-\d+\.npy", deleted)):
        raise SpladeError(f"{where}: damaged manifest (tombstone file {str(deleted)[:60]!r})")


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
        self.deleted_checksum: str | None = None
        self.dirty = False  # tombstones changed since the last save
        self.disk_bytes = 0
        self.folder: Path | None = None  # where the files are (None: built in memory)
        self.checksums: dict[str, str] | None = None  # file name: checksum, written by `write`
        self.crcs: np.ndarray | None = None
        self._checked: np.ndarray | None = None  # terms whose posting list passed `check_postings`

    @property
    def texts(self) -> list[str] | None:
        if self._texts is None and self.texts_handle is not None:
            self.texts_handle.seek(0)
            data = self.texts_handle.read()
            self.texts_handle.close()
            self.texts_handle = None
            path = (self.folder or Path(self.name)) / "texts.json"
            expected = (self.checksums or {}).get("texts.json")
            integrity.check_digest(path, expected, integrity.digest_bytes(data))
            try:
                texts = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise integrity.damaged(path, str(exc)[:80]) from None
            if not isinstance(texts, list) or len(texts) != self.n_docs:
                raise integrity.damaged(path, "not one text per document")
            self._texts = texts
        return self._texts

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def live(self) -> int:
        return int(self.n_docs - self.deleted.sum())

    def entry(self) -> dict:
        """This segment as its generation's manifest lists it."""
        entry = {"name": self.name, "n_docs": self.n_docs, "nnz": int(self.docs.size),
                 "deleted": self.deleted_file, "texts": self.has_texts}
        if self.checksums is not None:
            entry["checksums"] = self.checksums
        if self.deleted_checksum is not None and self.deleted_file is not None:
            entry["deleted_checksum"] = self.deleted_checksum
        return entry

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
        np.save(folder / CRC_FILE, integrity.posting_crcs(self.ptr, self.docs, self.weights))
        (folder / "doc_ids.json").write_text(json.dumps(self.doc_ids, ensure_ascii=False), encoding="utf-8")
        if self.texts is not None:
            (folder / "texts.json").write_text(json.dumps(self.texts, ensure_ascii=False), encoding="utf-8")
        files = sorted(folder.iterdir())
        fsync_files(files)
        fsync_dir(folder)
        self.checksums = {f.name: integrity.digest(f) for f in files}

    def write_tombstones(self, root: Path, generation: int) -> tuple[str, str]:
        """Write the tombstones as a new file for `generation`; returns its name relative to `root` and
        its checksum."""
        name = f"{self.name}/deleted-{generation:06d}.npy"
        np.save(root / name, self.deleted)
        fsync_files([root / name])
        fsync_dir(root / self.name)
        return name, integrity.digest(root / name)

    @staticmethod
    def read(root: Path, entry: dict, vocab_size: int | None = None) -> Segment:
        """Open a listed segment memory-mapped, checking its structure and the checksums of its small
        files; a file that is gone raises `FileNotFoundError` (a newer generation may have removed it: the
        caller decides), other damage a one-line `SpladeError` naming the file."""
        check_entry(entry, root)
        folder = root / entry["name"]
        checksums = entry.get("checksums") if isinstance(entry.get("checksums"), dict) else None
        sums = checksums or {}
        path = folder / "doc_ids.json"
        try:
            data = path.read_bytes()
            integrity.check_digest(path, sums.get("doc_ids.json"), integrity.digest_bytes(data))
            doc_ids = json.loads(data.decode("utf-8"))
            # plain ndarray views of the memory maps: slicing a np.memmap builds a subclass object per
            # slice, which costs more than the arithmetic on a short posting list
            path = folder / POSTINGS[0]
            integrity.check_digest(path, sums.get(POSTINGS[0]))
            arrays = []
            for name in POSTINGS:
                path = folder / name
                arrays.append(np.asarray(np.load(path, mmap_mode="r")))
            ptr, docs, weights = arrays
            crcs = None
            if checksums is not None:
                path = folder / CRC_FILE
                integrity.check_digest(path, sums.get(CRC_FILE))
                crcs = np.load(path)
            deleted = None
            if entry.get("deleted"):
                path = root / entry["deleted"]
                integrity.check_digest(path, entry.get("deleted_checksum"))
                deleted = np.load(path)
            has_texts = entry.get("texts", (folder / "texts.json").is_file())  # older manifests lack it
            texts_handle = open(folder / "texts.json", "rb") if has_texts else None  # noqa: SIM115
            disk_bytes = sum(f.stat().st_size for f in folder.iterdir() if not f.name.startswith("deleted-"))
        except FileNotFoundError:
            raise
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise integrity.damaged(path, str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
                                    ) from None
        integrity.check_structure(folder, doc_ids, ptr, docs, weights, crcs, deleted, entry.get("n_docs"),
                                  vocab_size)
        if docs.size != entry.get("nnz", docs.size):
            raise integrity.damaged(folder / POSTINGS[1],
                                    f"{docs.size} postings, the manifest says {entry['nnz']}")
        segment = Segment(entry["name"], doc_ids, ptr, docs, weights, None, deleted)
        segment.texts_handle = texts_handle
        segment.deleted_file = entry.get("deleted")
        segment.deleted_checksum = entry.get("deleted_checksum") if deleted is not None else None
        segment.disk_bytes = disk_bytes + (segment.deleted.nbytes if deleted is not None else 0)
        segment.folder, segment.checksums, segment.crcs = folder, checksums, crcs
        segment._checked = np.zeros(ptr.size - 1, dtype=bool)
        return segment

    def check_terms(self, term_ids: np.ndarray) -> None:
        """Check the posting lists of `term_ids` not checked yet (see `integrity.check_postings`)."""
        if self._checked is None or self.folder is None:
            return  # built in memory
        todo = term_ids[~self._checked[term_ids]]
        if todo.size:
            integrity.check_postings(self.folder, np.unique(todo).tolist(), self.ptr, self.docs, self.weights,
                                     self.crcs, self.n_docs)
            self._checked[todo] = True

    def verify(self) -> None:
        """The full check: every file's checksum (when the manifest has them) and every posting list."""
        if self.folder is not None:
            for name, expected in sorted((self.checksums or {}).items()):
                integrity.check_digest(self.folder / name, expected)
        self.check_terms(np.arange(self.ptr.size - 1))
        if self.has_texts:
            _ = self.texts

    def score(self, term_ids: np.ndarray, term_weights: np.ndarray) -> np.ndarray:
        """Exact dot products of one query with every row, term at a time (float64 accumulator)."""
        self.check_terms(term_ids)
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
