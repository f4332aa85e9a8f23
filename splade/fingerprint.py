"""Short stable hashes that name things on disk: caches, checkpoints' settings, weights, jobs, corpora.

One home for every fingerprint. Each function produces exactly the values its former home did, so caches,
checkpoints, ledgers and job folders written before still match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol


class _Document(Protocol):
    doc_id: str

    @property
    def full_text(self) -> str: ...


def key_of(*parts: object) -> str:
    """A short stable hash of `parts` (their `str`, joined by a unit separator)."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8"))
    return digest.hexdigest()[:16]


def fingerprint(parts: Iterable[str]) -> str:
    """A short hash of a sequence of strings (each ended by a NUL byte): names one job or corpus."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def json_fingerprint(value: Any) -> str:
    """A short hash of `value` as JSON with sorted keys (e.g. the settings a checkpoint was saved with)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def files_fingerprint(paths: Iterable[Path]) -> str:
    """A hash of the files' whole contents, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def weights_fingerprint(directory: str | Path) -> str:
    """A quick fingerprint of a checkpoint's weight files (names, sizes, first and last MiB)."""
    digest = hashlib.sha256()
    files = sorted(Path(directory).glob("*.safetensors")) + sorted(Path(directory).glob("*.bin"))
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


def corpus_fingerprint(documents: Sequence[_Document], *head: str) -> str:
    """`fingerprint` of `head`, then each document's id and text: which vectors belong to which corpus."""
    return fingerprint([*head, *(f"{d.doc_id}\t{d.full_text}" for d in documents)])
