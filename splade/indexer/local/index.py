"""The embedded on-disk index: an inverted index of per-term posting lists, scored exactly with NumPy.

An index folder is a series of immutable generations and a `CURRENT` pointer to the published one
(`.generations`); each generation lists its segments (`.segment`), whose
posting arrays are opened with `np.load(mmap_mode="r")`, so only the posting lists queries touch are
paged in. A reader serves the generation it opened until `reload()`.

Writing takes the folder's writer lock (`splade.lock`) at the first change, and recovers what a
killed writer left. `add` buffers documents in memory (searchable at once); `save` writes them as a new
segment and publishes a new generation; `delete` tombstones; `compact` rewrites everything live into
one segment; `create(..., overwrite=True)` starts an empty generation that replaces the published one
only when saved; `adopt` takes in the segments of other published indexes (the parts of a sharded build)
by hard link. Re-adding an existing id replaces it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from splade.atomic import fsync_dir, fsync_files, recover_dir, remove_leftovers
from splade.errors import SpladeError, at_option
from splade.indexer.base import (
    IndexMetadata,
    SearchHits,
    SparseIndex,
    check_add_arguments,
    check_search_arguments,
)
from splade.indexer.local.generations import (
    Generation,
    highest_number,
    is_index,
    is_unpublished,
    publish,
    published_entries,
    read_generation,
    read_pointer,
    remove_unreferenced,
)
from splade.indexer.local.segment import Segment, top_k_rows
from splade.lock import WriterLock
from splade.sparse import SparseBatch


class LocalSparseIndex(SparseIndex):
    """An embedded on-disk sparse index (see the module docstring)."""

    where = "embedded index"

    def __init__(self, path: Path, metadata: IndexMetadata, generation: Generation | None) -> None:
        self.path = path
        self._metadata = metadata
        self._lock: WriterLock | None = None
        self._owns_lock = False
        self._last_number = 0  # highest generation number on disk, known while holding the lock
        self._replacing = False  # an empty generation started by `create`: publish it even if empty
        self._adopted = False  # segments taken in by `adopt`, published by the next `save`
        self._expected: tuple[IndexMetadata, bool] | None = None  # what `open` checked, for `reload`
        self.recovered: list[str] = []  # what taking the lock removed (a killed writer's files)
        self._use(generation)

    def _use(self, generation: Generation | None) -> None:
        """Serve `generation` (None: nothing published yet); drops unsaved changes."""
        self._pending: dict[str, tuple[np.ndarray, np.ndarray, str | None]] = {}
        self._pending_segment: Segment | None = None
        segments = [] if generation is None else list(generation.segments)
        self._where: dict[str, tuple[int, int]] = {}
        for s, segment in enumerate(segments):
            for row in np.flatnonzero(~segment.deleted):
                self._where[segment.doc_ids[row]] = (s, int(row))
        self._segments = segments
        self._generation = 0 if generation is None else generation.number
        self._manifest = None if generation is None else generation.manifest

    # -- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, metadata: IndexMetadata, overwrite: bool = False,
               lock: WriterLock | None = None) -> LocalSparseIndex:
        """A new empty index at `path`, published by `save`/`close`. An existing index is an error unless
        `overwrite=True`; it then keeps serving readers until this one is saved. `lock`: the folder's
        writer lock, already held by the caller (else it is taken here)."""
        path = Path(path)
        if path.exists() and (path.is_file() or any(path.iterdir())) and not is_unpublished(path):
            if not overwrite:
                raise SpladeError(f"{path}: index already exists (pass overwrite=True to replace it)")
            if not is_index(path):
                raise SpladeError(f"{path}: exists and is not a splade index; refusing to replace it")
        index = cls(path, metadata, None)
        index._take_lock(lock, replacing=True)
        index._replacing = True
        return index

    @classmethod
    def open(cls, path: str | Path, expected: IndexMetadata | None = None, check_model: bool = True,
             for_add: bool = False, lock: WriterLock | None = None) -> LocalSparseIndex:
        """Open the published generation (memory-mapped); with `expected`, refuse vectors of another model
        or vocabulary (and, `for_add`, of other pruning). `lock`: the writer lock, already held."""
        path = Path(path)
        recover_dir(path)
        generation = read_generation(path)
        if expected is not None:
            generation.metadata.check_compatible(expected, str(path), check_model=check_model,
                                                 check_pruning=for_add)
        index = cls(path, generation.metadata, generation)
        index._expected = None if expected is None else (expected, check_model)
        if lock is not None:
            index._take_lock(lock)
        return index

    @classmethod
    @contextlib.contextmanager
    def writer(cls, target: Any, meta: IndexMetadata, append: bool = False, *, keep_open: bool = False,
               lock: WriterLock | None = None, layout: Any = None,
               **_: Any) -> Iterator[LocalSparseIndex]:
        """Fill a new generation of the index folder `target` (a path, or an `IndexTarget`), on top of the
        published one with `append`, and publish it when the block ends cleanly. On an exception nothing is
        published (a full disk gives its space back and says so in one line). `lock`: the folder's writer
        lock, already held; `layout` must be None (OpenSearch layouts have no meaning here)."""
        if layout is not None:
            raise at_option("--mapping", "--mapping, --two-phase, --seismic, --primary-shards and --replicas "
                                         "need --backend opensearch")
        path = Path(getattr(target, "index", target))
        if append:
            index = cls.open(path, expected=meta, for_add=True, lock=lock)
        else:
            index = cls.create(path, meta, overwrite=True, lock=lock)
        try:
            yield index
            index.save()
        except BaseException as exc:
            full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
            if full:
                with contextlib.suppress(OSError, SpladeError):  # give the unpublished files' space back
                    remove_unreferenced(path, *published_entries(path))
            index._abandon()
            if full:
                raise SpladeError(f"{path}: writing the index failed ({exc.strerror}); the published index "
                                  "is unchanged: free some space and run it again") from None
            raise
        if not keep_open:
            index.close()

    def write_notes(self) -> list[str]:
        if not self.recovered:
            return []
        shown = ", ".join(self.recovered[:3]) + (", ..." if len(self.recovered) > 3 else "")
        return [f"removed {len(self.recovered)} unpublished files an interrupted write left in {self.path} "
                f"({shown})"]

    def _abandon(self) -> None:
        """Drop unsaved changes (never published) and give an own writer lock up."""
        self._use(None)
        self._replacing = self._adopted = False
        if self._owns_lock and self._lock is not None:
            self._lock.release()
        self._lock = None

    @classmethod
    def open_for_search(cls, target: Any, meta: IndexMetadata, check_model: bool = True,
                        **_: Any) -> LocalSparseIndex:
        """Open the published index `target` to search it with vectors made under `meta`."""
        return cls.open(getattr(target, "index", target), expected=meta, check_model=check_model)

    @classmethod
    def check_target(cls, target: Any, append: bool | None = None) -> None:
        """Fail fast, before a model loads: searching (`append` None) needs a readable index; building,
        a folder that is a splade index (needed with `append`), empty or missing."""
        path = Path(getattr(target, "index", target))
        if append is None:
            cls.open(path).close()
            return
        if append and not is_index(path):
            raise at_option("--append", f"{path}: no index to append to")
        if path.is_file() or (path.is_dir() and any(path.iterdir()) and not is_index(path)
                              and not is_unpublished(path)):
            raise at_option("--index", f"{path} exists and is not a splade index; refusing to replace it")

    @classmethod
    def build_lock(cls, target: Any) -> contextlib.AbstractContextManager[WriterLock | None]:
        """The folder's writer lock, held for a whole build (see `build_lock`)."""
        return build_lock(Path(getattr(target, "index", target)))

    @classmethod
    def describe(cls, layout: Any = None) -> str:
        return "embedded index"

    @classmethod
    def verify(cls, path: str | Path) -> dict[str, int | bool]:
        """The full check of the published generation: every file's checksum and every posting list; a
        one-line `SpladeError` names the first damaged file. `checksums` is False for an index written
        before checksums existed (structure checked only)."""
        index = cls.open(path)
        try:
            for segment in index._segments:
                segment.verify()
            return {"segments": len(index._segments), "documents": index.count(),
                    "checksums": all(s.checksums is not None for s in index._segments)}
        finally:
            index.close()

    @property
    def metadata(self) -> IndexMetadata:
        return self._metadata

    @property
    def generation(self) -> int:
        """The number of the generation this index serves (0: none published yet)."""
        return self._generation

    def reload(self) -> bool:
        """Serve the latest published generation (for long-lived readers); False when already serving it.

        A generation of another vocabulary (or, when `open` was given `expected`, another model) is
        refused with a `SpladeError`, and this index keeps serving its generation."""
        if self._pending or any(s.dirty for s in self._segments):
            raise SpladeError(f"{self.path}: unsaved changes; save() before reload()")
        if read_pointer(self.path) == self._manifest:
            return False
        generation = read_generation(self.path)
        expected, check_model = self._expected or (self._metadata, False)  # at least the same vocabulary
        generation.metadata.check_compatible(expected, str(self.path), check_model=check_model)
        self._metadata = generation.metadata
        self._use(generation)
        return True

    def close(self) -> None:
        """Save pending changes and give the writer lock up."""
        try:
            self.save()
        finally:
            if self._owns_lock and self._lock is not None:
                self._lock.release()
            self._lock = None

    def drop(self) -> None:
        """Delete the index folder (readers holding it open keep their generation until they close)."""
        if self._lock is None:
            self._take_lock(None)
        aside = self.path.parent / f".{self.path.name}.dropped-{os.getpid()}"
        os.replace(self.path, aside)
        fsync_dir(self.path.parent)
        self._use(None)  # nothing left to save
        self._replacing = False
        self.close()
        shutil.rmtree(aside, ignore_errors=True)

    # -- writing -----------------------------------------------------------------------------------
    def _take_lock(self, lock: WriterLock | None, replacing: bool = False) -> None:
        """Hold the writer lock, and remove what a killed writer left (unpublished files, temporaries).
        `replacing`: a new index replaces this one, which may be damaged (its files go at publication)."""
        self._owns_lock = lock is None
        self._lock = WriterLock(self.path).acquire() if lock is None else lock
        if not self._lock.held:
            raise ValueError("the writer lock passed in is not held")
        self.recovered = remove_leftovers(self.path)
        try:
            manifest, entries = published_entries(self.path)
        except SpladeError:  # a damaged manifest: clean nothing up; only a replacement may go on
            if not replacing:
                if self._owns_lock:
                    self._lock.release()
                self._lock = None
                raise
        else:
            self.recovered = remove_unreferenced(self.path, manifest, entries) + self.recovered
        self._last_number = highest_number(self.path)

    def _begin_write(self) -> None:
        """Take the writer lock before the first change, and move to the latest generation if another
        writer published one since this index was opened."""
        if self._lock is not None:
            return
        self._take_lock(None)
        if read_pointer(self.path) != self._manifest:
            generation = read_generation(self.path)
            if generation.metadata != self._metadata:
                self.close()
                raise SpladeError(f"{self.path}: rebuilt with other settings since it was opened; "
                                  "open it again")
            self._use(generation)

    def add(self, doc_ids: Sequence[str], vectors: SparseBatch, texts: Sequence[str] | None = None) -> None:
        check_add_arguments(doc_ids, vectors, texts, self._metadata)
        self._begin_write()
        for r, doc_id in enumerate(doc_ids):
            ids, weights = vectors.row(r)
            keep = np.isfinite(weights) & (weights > 0)
            self._tombstone(str(doc_id))
            text = None if texts is None else texts[r]
            self._pending[str(doc_id)] = (ids[keep].copy(), weights[keep].copy(), text)
        self._pending_segment = None

    def delete(self, doc_ids: Sequence[str]) -> int:
        self._begin_write()
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
        """Write pending documents as a new segment and changed tombstones, then publish a new generation."""
        dirty = [s for s in self._segments if s.dirty]
        if not self._pending and not dirty and not self._replacing and not self._adopted:
            return
        self._begin_write()
        number = self._next_number()
        emptied = [s for s in self._segments if s.live == 0]  # reclaimed: the generation leaves them out
        tombstones = {s.name: s.write_tombstones(self.path, number) for s in dirty if s.live}
        segments = [s for s in self._segments if s.live]
        if self._pending:
            new = self._build_pending()
            new.name = f"seg-{number:06d}"
            new.write(self.path / new.name)
            segments.append(new)
        entries = []
        for s in segments:
            deleted, checksum = tombstones.get(s.name, (s.deleted_file, s.deleted_checksum))
            entries.append(dict(s.entry(), deleted=deleted, deleted_checksum=checksum))
        self._publish(number, entries)
        for segment in dirty:
            if segment.name in tombstones:
                segment.deleted_file, segment.deleted_checksum = tombstones[segment.name]
            segment.dirty = False
        if self._pending:  # serve the new segment from its files, memory-mapped
            segments[-1] = Segment.read(self.path, entries[-1], self._metadata.vocab_size)
        if emptied:  # segment positions moved: map the ids again
            self._segments = []
            self._where = {}
        for segment in segments[len(self._segments):]:
            for row in np.flatnonzero(~segment.deleted):
                self._where[segment.doc_ids[row]] = (len(self._segments), int(row))
            self._segments.append(segment)
        self._pending.clear()
        self._pending_segment = None

    def adopt(self, parts: Sequence[str | Path]) -> int:
        """Take in the live documents of the published embedded indexes `parts`, in order, replacing
        documents of the same id; `save` publishes them. Their segment files are hard-linked (copied across
        file systems), never re-encoded or rewritten. Returns how many documents were taken in."""
        self._begin_write()
        if self._pending:
            raise ValueError("save() the pending documents before adopt()")
        number, taken = self._next_number(), set()
        for part in map(Path, parts):
            generation = read_generation(part)
            if generation.metadata != self._metadata:
                raise SpladeError(f"{part}: built with {generation.metadata}, not {self._metadata}")
            for source in generation.segments:
                name = f"seg-{number:06d}-{len(self._segments):05d}"
                _link_files(part / source.name, self.path / name)
                segment = Segment.read(self.path, dict(source.entry(), name=name, deleted=None),
                                       self._metadata.vocab_size)
                segment.deleted, segment.dirty = source.deleted.copy(), bool(source.deleted.any())
                for row in np.flatnonzero(~segment.deleted):
                    doc_id = segment.doc_ids[row]
                    if doc_id in taken:
                        raise SpladeError(f"{part}: document {doc_id!r} is also in an earlier part")
                    taken.add(doc_id)
                    self._tombstone(doc_id)
                    self._where[doc_id] = (len(self._segments), int(row))
                self._segments.append(segment)
        self._adopted = True
        return len(taken)

    def compact(self) -> None:
        """Rewrite all live documents into one segment (drops tombstoned rows for good)."""
        self.save()
        if len(self._segments) <= 1 and not any(s.deleted.any() for s in self._segments):
            return
        self._begin_write()
        ids, batches, texts = [], [], []
        has_texts = all(s.has_texts for s in self._segments)
        for segment in self._segments:
            segment.check_terms(np.arange(self._metadata.vocab_size))  # never carry damage into the merge
            rows = np.flatnonzero(~segment.deleted)
            ids += [segment.doc_ids[r] for r in rows]
            batches.append(segment.to_batch(rows))
            if has_texts:
                texts += [segment.texts[r] for r in rows]
        number = self._next_number()
        merged = Segment.from_batch(f"seg-{number:06d}", ids, SparseBatch.concat(batches),
                                    texts if has_texts else None)
        merged.write(self.path / merged.name)
        manifest = self._publish(number, [merged.entry()])
        merged = Segment.read(self.path, merged.entry(), self._metadata.vocab_size)
        self._use(Generation(number, manifest, self._metadata, [merged]))

    def _next_number(self) -> int:
        self._last_number += 1
        return self._last_number

    def _publish(self, number: int, entries: list[dict]) -> str:
        """Point `CURRENT` at generation `number`, then remove the files no longer used; returns the
        manifest's name."""
        self._manifest = publish(self.path, number, self._metadata, entries)
        self._generation = number
        self._replacing = self._adopted = False
        remove_unreferenced(self.path, self._manifest, entries)
        return self._manifest

    def _build_pending(self) -> Segment:
        if self._pending_segment is None:
            ids = list(self._pending)
            rows = [(i, w) for i, w, _ in self._pending.values()]
            texts = [t for _, _, t in self._pending.values()]
            vectors = SparseBatch.from_rows(rows, self._metadata.vocab_size)
            keep_texts = None if any(t is None for t in texts) else texts
            self._pending_segment = Segment.from_batch("pending", ids, vectors, keep_texts)
        return self._pending_segment

    # -- reads -------------------------------------------------------------------------------------
    def _all_segments(self) -> list[Segment]:
        segments = self._segments  # one read: a concurrent `reload` swaps the list, never edits it
        return segments + ([self._build_pending()] if self._pending else [])

    def count(self) -> int:
        return sum(s.live for s in self._segments) + len(self._pending)

    def size_bytes(self) -> int:
        on_disk = sum(s.disk_bytes for s in self._segments)
        return on_disk + sum(i.nbytes + w.nbytes for i, w, _ in self._pending.values())

    def search(self, queries: SparseBatch, top_k: int = 10) -> list[SearchHits]:
        check_search_arguments(queries, top_k, self._metadata)
        segments = self._all_segments()
        results: list[SearchHits] = []
        for ids, weights in queries.rows():
            keep = np.isfinite(weights) & (weights > 0)
            ids, weights = ids[keep].astype(np.int64), weights[keep].astype(np.float64)
            hits: list[tuple[float, int, int]] = []
            for s, segment in enumerate(segments):
                scores = segment.score(ids, weights)
                scores[segment.deleted] = 0.0
                rows, values = top_k_rows(scores, top_k)
                hits += [(float(v), s, int(r)) for r, v in zip(rows, values, strict=True)]
            hits.sort(key=lambda h: (-h[0], h[1], h[2]))
            results.append([(segments[s].doc_ids[r], score) for score, s, r in hits[:top_k]])
        return results

    def fetch_texts(self, doc_ids: Sequence[str]) -> list[str | None]:
        out: list[str | None] = []
        for doc_id in doc_ids:
            if doc_id in self._pending:
                out.append(self._pending[doc_id][2])
                continue
            where = self._where.get(doc_id)
            texts = None if where is None else self._segments[where[0]].texts
            out.append(None if texts is None or where is None else texts[where[1]])
        return out


def _link_files(source: Path, target: Path) -> None:
    """Hard-link a segment's files (not its tombstones) into a new folder; copy where links fail."""
    target.mkdir()
    for file in sorted(source.iterdir()):
        if file.name.startswith("deleted-"):
            continue
        try:
            os.link(file, target / file.name)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(file, target / file.name)
    fsync_files(sorted(target.iterdir()))
    fsync_dir(target)


@contextlib.contextmanager
def build_lock(path: Path) -> Iterator[WriterLock]:
    """Hold an index folder's writer lock for a whole build (take it before the model loads, so a second
    writer fails at once); a folder this build created is removed again if nothing was published."""
    created = not path.exists()
    lock = WriterLock(path).acquire()
    try:
        yield lock
    except BaseException:
        if created and not is_index(path):
            shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        lock.release()
