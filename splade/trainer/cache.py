"""What training computes once and keeps on disk: token ids, IDF weights and teacher embeddings.

Entries live in one folder (`data.cache_dir`, by default `.splade-cache/` beside the first training
file) under names that carry a key of everything they depend on, so a changed file, tokenizer or teacher
gets a new entry instead of a stale one. Each entry is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from splade.fingerprint import files_fingerprint, key_of  # noqa: F401 - their old home, kept for old imports

log = logging.getLogger(__name__)
CACHE_FOLDER = ".splade-cache"
PACKAGE = Path(__file__).resolve().parent.parent  # the installed splade package (its bundled data)


class ArrayCache:
    """Named groups of numpy arrays in one folder, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def for_files(cls, train_files: list[Path], configured: Path | None, fallback: Path) -> ArrayCache:
        """`configured`, else `.splade-cache/` beside the first training file, else `fallback` (under the
        output folder): for files inside the installed package or in a folder that cannot be written."""
        beside = Path(train_files[0]).resolve().parent
        inside_package = PACKAGE in beside.parents or beside == PACKAGE
        candidates = [configured] if configured else ([] if inside_package else [beside / CACHE_FOLDER])
        for folder in [*candidates, fallback]:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError:
                continue
            if os.access(folder, os.W_OK):
                return cls(folder)
        return cls(fallback)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.npz"

    def load(self, name: str) -> dict[str, np.ndarray] | None:
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:  # a damaged entry is recomputed, not trusted
            log.warning("cache entry %s is unreadable (%s): recomputing it", path, exc)
            return None

    def save(self, name: str, **arrays: np.ndarray) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(name)
        handle, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, **arrays)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def names(self, prefix: str) -> list[str]:
        """Entry names starting with `prefix`, sorted."""
        return sorted(p.stem for p in self.folder.glob(f"{prefix}*.npz"))
