"""One writer per embedded index: an exclusive `flock` on the index folder's `LOCK` file, which holds the pid.

The kernel drops the lock when its holder exits, however it exits (a killed writer never leaves a stale
lock); the pid written inside only names the holder in the error a second writer gets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from splade.errors import SpladeError

LOCK_FILE = "LOCK"


class WriterLock:
    """The exclusive right to change one index folder; `acquire` fails at once when another holds it."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self, wait: bool = False) -> WriterLock:
        """Take the lock (creating the folder); a `SpladeError` names the pid of the writer holding it, or,
        with `wait`, block until it is free (for holders that keep it briefly)."""
        import fcntl  # lazily, on purpose: POSIX only (Linux, macOS), the module imports anywhere

        if self._handle is not None:
            return self
        handle = self._open()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise SpladeError(f"index {self.folder} is being written by {who}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def _open(self) -> IO[str]:
        """Open (creating) the lock file; retried while another process moves the folder away."""
        for _ in range(100):
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                return open(self.folder / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
            except (FileExistsError, FileNotFoundError):  # the folder vanished between the two steps
                continue
        raise SpladeError(f"{self.folder}: kept vanishing while taking its lock")

    def release(self) -> None:
        """Give the lock up (closing the file releases the `flock`)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
