"""Damage checks of embedded index segments: file checksums written at publish time, a cheap structural
check on every open, and per posting list checks on first use, so a damaged file gives one line naming it
instead of a wrong ranking.

- `digest`: a file's checksum (BLAKE2b), kept in the manifest entry of the segment (`checksums`).
- `posting_crcs`: CRC-32 of every posting list's rows and weights (`postings_crc.npy`), compared when a
  query first touches the list.
- `check_structure`: O(vocabulary + documents) checks on open; `check_postings`: rows strictly ascending
  and in range, weights finite and positive, CRCs equal, for the given terms.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import numpy as np

from splade.errors import SpladeError

DIGEST = "blake2b"
CHUNK = 1 << 20


def digest(path: Path) -> str:
    """`blake2b:<hex>` of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            h.update(block)
    return f"{DIGEST}:{h.hexdigest()}"


def digest_bytes(data: bytes) -> str:
    return f"{DIGEST}:{hashlib.blake2b(data, digest_size=16).hexdigest()}"


def damaged(path: Path, why: str) -> SpladeError:
    return SpladeError(f"{path}: damaged index file ({why}); rebuild the index "
                       "(splade index --verify-files checks every file)")


def check_digest(path: Path, expected: str | None, actual: str | None = None) -> None:
    """Compare a file's checksum with the manifest's (nothing to compare for indexes written before)."""
    if expected is not None and (actual or digest(path)) != expected:
        raise damaged(path, "checksum mismatch")


def posting_crcs(ptr: np.ndarray, docs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """uint32 [vocab, 2]: CRC-32 of each term's rows and of its weights."""
    crcs = np.zeros((ptr.size - 1, 2), dtype=np.uint32)
    for t in np.flatnonzero(np.diff(ptr)).tolist():
        lo, hi = int(ptr[t]), int(ptr[t + 1])
        crcs[t] = (zlib.crc32(np.ascontiguousarray(docs[lo:hi])),
                   zlib.crc32(np.ascontiguousarray(weights[lo:hi])))
    return crcs


def check_structure(folder: Path, doc_ids: object, ptr: np.ndarray, docs: np.ndarray, weights: np.ndarray,
                    crcs: np.ndarray | None, deleted: np.ndarray | None, n_docs: object,
                    vocab_size: int | None) -> None:
    """The checks every open makes (no pass over the postings themselves)."""
    if not isinstance(doc_ids, list) or not all(isinstance(d, str) for d in doc_ids):
        raise damaged(folder / "doc_ids.json", "not a list of document ids")
    if len(doc_ids) != n_docs:
        raise damaged(folder / "doc_ids.json", f"{len(doc_ids)} ids, the manifest says {n_docs}")
    if len(set(doc_ids)) != len(doc_ids):
        raise damaged(folder / "doc_ids.json", "an id appears twice")
    ptr_file = folder / "postings_ptr.npy"
    if ptr.ndim != 1 or ptr.dtype.kind not in "iu" or ptr.size < 1:
        raise damaged(ptr_file, f"expected a vector of integers, found {ptr.dtype} {ptr.shape}")
    if vocab_size is not None and ptr.size != vocab_size + 1:
        raise damaged(ptr_file, f"{ptr.size - 1} terms, the index has {vocab_size}")
    if ptr[0] != 0 or ptr[-1] != docs.size or np.any(np.diff(ptr) < 0):
        raise damaged(ptr_file, "row pointers are not ascending from 0 to the number of postings")
    if docs.ndim != 1 or docs.dtype.kind not in "iu":
        raise damaged(folder / "postings_docs.npy", f"expected integer rows, found {docs.dtype} {docs.shape}")
    if weights.ndim != 1 or weights.dtype.kind != "f" or weights.size != docs.size:
        raise damaged(folder / "postings_weights.npy", "expected one float weight per posting")
    if crcs is not None and crcs.shape != (ptr.size - 1, 2):
        raise damaged(folder / "postings_crc.npy", "its shape does not match the terms")
    if deleted is not None and (deleted.ndim != 1 or deleted.size != len(doc_ids)):
        raise damaged(folder, "the tombstones do not match the documents")


def check_postings(folder: Path, terms: list[int], ptr: np.ndarray, docs: np.ndarray, weights: np.ndarray,
                   crcs: np.ndarray | None, n_docs: int) -> None:
    """Rows strictly ascending within [0, n_docs), weights finite and positive, CRCs equal, per term."""
    for t in terms:
        lo, hi = int(ptr[t]), int(ptr[t + 1])
        rows, values = docs[lo:hi], weights[lo:hi]
        if hi > lo:
            if rows[0] < 0 or rows[-1] >= n_docs or (hi - lo > 1 and not np.all(rows[1:] > rows[:-1])):
                raise damaged(folder / "postings_docs.npy", f"rows of term {t} out of order or range")
            if not np.all(np.isfinite(values) & (values > 0)):
                raise damaged(folder / "postings_weights.npy",
                              f"a weight of term {t} is not finite and positive")
        if crcs is not None:
            if zlib.crc32(np.ascontiguousarray(rows)) != int(crcs[t, 0]):
                raise damaged(folder / "postings_docs.npy", f"checksum of term {t}")
            if zlib.crc32(np.ascontiguousarray(values)) != int(crcs[t, 1]):
                raise damaged(folder / "postings_weights.npy", f"checksum of term {t}")
