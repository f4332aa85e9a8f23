"""Atomic writes: a file or folder appears whole or not at all, with the modes `open` and `mkdir` give
(0666 / 0777 less the umask), not the private ones of temporary files."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from splade.errors import at_option


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ordinary_modes(paths: Iterable[Path]) -> None:
    """Give files and folders another tool wrote privately the modes `open` and `mkdir` give."""
    mask = _umask()
    for path in paths:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (files created or renamed in it) to disk."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_files(paths: list[Path]) -> None:
    """Flush written files to disk before a manifest that names them is swapped in."""
    for path in paths:
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dir(target: str | Path) -> bool:
    """Put back a folder that a crash between `atomic_dir`'s two renames left aside; True if it did.

    `atomic_dir` moves the old folder to `.NAME.old-PID` and then the new one into place; a process
    killed between the two leaves no `NAME`. An aside copy whose writer is no longer running is restored.
    """
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return False
    for aside in sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime,
                        reverse=True):
        pid = aside.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue
        os.replace(aside, target)
        fsync_dir(target.parent)
        return True
    return False


def remove_leftovers(target: str | Path) -> list[str]:
    """Delete what killed `atomic_dir` writers left beside `target`: `.NAME.*.tmp` folders and the
    `.NAME.old-PID` copies of writers no longer running; returns the names removed.

    Call it only where no other process can be writing `target` (e.g. under its writer lock), after
    `recover_dir`.
    """
    target = Path(target)
    removed = []
    for leftover in sorted(target.parent.glob(f".{glob.escape(target.name)}.*")):
        pid = leftover.name.rsplit("-", 1)[-1]
        dead_aside = leftover.name.startswith(f".{target.name}.old-") and pid.isdigit() and not _pid_alive(
            int(pid))
        if leftover.is_dir() and (leftover.name.endswith(".tmp") or dead_aside):
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover.name)
    return removed


@contextlib.contextmanager
def atomic_file(target: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file beside `target`; on success rename it over `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        kwargs = {"encoding": encoding} if "b" not in mode else {}
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(target: str | Path, payload: Any) -> None:
    """Write JSON atomically."""
    with atomic_file(target) as handle:
        json.dump(payload, handle, ensure_ascii=False, indent=2)


def refuse_foreign_dir(target: str | Path, marker: str, option: str, what: str) -> None:
    """Refuse to replace `target` unless it is absent, empty, or an earlier output (holds `marker`)."""
    target = Path(target)
    if not target.exists():
        return
    if target.is_dir() and (not any(target.iterdir()) or (target / marker).is_file()):
        return
    raise at_option(option, f"{target} exists and is not an earlier {what}; choose another folder")


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` in one rename.

    If `target` exists it is moved aside first and removed only after the new folder is in place,
    so a crash at any point leaves either the old or the new folder complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
