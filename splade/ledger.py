"""Sharded jobs' ledger: which share of a corpus this process encodes, and which process finishes the job.

A shard comes from `--shard i/n` or from torchrun's `RANK` / `WORLD_SIZE`; both name the same thing, so
`torchrun --nproc_per_node 2 -m splade index ...` and two `splade index --shard 0/2` / `--shard 1/2`
commands do the same work. Shard `i` takes a contiguous run of whole encoder windows
(`splade.windows.ENCODE_WINDOW`), so its vectors equal, bit for bit, those a single process computes.

The shards of one job share a folder (`FolderLedger`): each writes its part, then a marker saying it is
done. The shard that finds every marker present, under the folder's lock, finishes the job (merges,
publishes, reports); the others stop there. No shard waits for another, and a shard that is run again
after its marker was written skips its work.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splade.atomic import write_json
from splade.errors import SpladeError, at_option
from splade.lock import WriterLock


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based), and the GPU slot torchrun gave this process, if any."""

    index: int
    count: int
    local_rank: int | None = None

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """A file-name-safe label: `00001-of-00004`."""
        return f"{self.index:05d}-of-{self.count:05d}"

    @staticmethod
    def parse(text: str) -> Shard:
        """`"i/n"` with `0 <= i < n`."""
        index, sep, count = text.strip().partition("/")
        if not (sep and index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
            raise at_option("--shard", f"expected I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
        return Shard(int(index), int(count))

    @staticmethod
    def from_environment(environ: Mapping[str, str] | None = None) -> Shard | None:
        """torchrun's `RANK` of `WORLD_SIZE` (None outside torchrun or for one process)."""
        env = os.environ if environ is None else environ
        try:
            world, rank = int(env.get("WORLD_SIZE", "1")), int(env.get("RANK", "0"))
            local = env.get("LOCAL_RANK")
            local_rank = int(local) if local is not None else None
        except ValueError:
            raise SpladeError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (as torchrun sets them)") \
                from None
        return Shard(rank, world, local_rank) if world > 1 else None

    def positions(self, n_items: int, window: int) -> range:
        """This shard's positions among `n_items`: a contiguous run of whole `window`s (shards with no
        window left get an empty range)."""
        windows = -(-n_items // window)
        first, last = self.index * windows // self.count, (self.index + 1) * windows // self.count
        return range(min(first * window, n_items), min(last * window, n_items))

    def device(self, device: str | None) -> str | None:
        """Under torchrun on a GPU machine, `cuda:LOCAL_RANK` unless a device was given."""
        if device is not None or self.local_rank is None:
            return device
        import torch  # lazily: only torchrun launches need it, and the ledger is a light leaf

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return None


def resolve_shard(option: str | None, environ: Mapping[str, str] | None = None) -> Shard | None:
    """The shard of this process from `--shard` or torchrun (they must agree); None when unsharded."""
    launched = Shard.from_environment(environ)
    explicit = Shard.parse(option) if option else None
    if explicit and launched and (explicit.index, explicit.count) != (launched.index, launched.count):
        raise at_option("--shard", f"{explicit.label} disagrees with torchrun's RANK/WORLD_SIZE "
                                   f"({launched.label}); give one or the other")
    if explicit and launched:
        explicit = launched
    shard = explicit or launched
    return shard if shard is not None and shard.count > 1 else None


FINISH, WAIT, FINISHED = "finish", "wait", "finished"


class FolderLedger:
    """The completion markers of one sharded job (`key`) in a folder its shards share::

        LOCK                        held while a shard looks for the missing markers (and finishes)
        shard-00000-of-00002.json   {"job": key, "shard": 0, "shards": 2, ...what the shard reports}

    Markers of another job (an earlier corpus or model) do not count; the finishing shard removes the folder.
    """

    def __init__(self, folder: Path, key: str, shard: Shard) -> None:
        self.folder, self.key, self.shard = Path(folder), key, shard

    def _marker(self, index: int) -> Path:
        return self.folder / f"shard-{Shard(index, self.shard.count).tag}.json"

    def marker(self, index: int) -> dict[str, Any] | None:
        """Shard `index`'s marker for this job, None when it has not finished it."""
        try:
            data = json.loads(self._marker(index).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return data if data.get("job") == self.key else None

    def mark_done(self, info: dict[str, Any]) -> None:
        """Say this shard has finished its part (written atomically, after the part itself)."""
        write_json(self._marker(self.shard.index),
                   {"job": self.key, "shard": self.shard.index, "shards": self.shard.count, **info})

    @contextlib.contextmanager
    def finishing(self) -> Iterator[tuple[str, list[Any]]]:
        """Under the folder's lock: `(FINISH, markers)` when every shard is done (this process finishes the
        job; the folder is removed when the block ends without an error), `(WAIT, missing shard indices)`,
        or `(FINISHED, [])` when another shard already finished it."""
        lock = WriterLock(self.folder).acquire(wait=True)
        try:
            if self.marker(self.shard.index) is None:  # written before this call: gone means finished
                yield FINISHED, []
                if self.folder.is_dir() and [p.name for p in self.folder.iterdir()] == ["LOCK"]:
                    shutil.rmtree(self.folder, ignore_errors=True)  # taking the lock made it again
                return
            markers = [self.marker(i) for i in range(self.shard.count)]
            missing = [i for i, m in enumerate(markers) if m is None]
            if missing:
                yield WAIT, missing
                return
            yield FINISH, markers
            aside = self.folder.with_name(f".{self.folder.name}.finished-{os.getpid()}")
            os.replace(self.folder, aside)  # in one step: a shard arriving now finds its marker gone
            shutil.rmtree(aside, ignore_errors=True)
        finally:
            lock.release()
