"""Moved to `splade.lock` (the writer lock is shared by indexes and job ledgers); kept for old imports."""

from splade.lock import LOCK_FILE, WriterLock

__all__ = ["LOCK_FILE", "WriterLock"]
