"""The embedded index folder as a series of generations: immutable files, and one pointer to the live one.

    CURRENT                 "manifest-000007.json": the published generation (replaced by one rename)
    LOCK                    the writer lock (`splade.lock`)
    manifest-000007.json    generation 7: format, version, metadata and its segments
    seg-000003/ seg-000007/ segments (`.segment`), named after the generation that wrote them

A writer writes a generation's new files, flushes them, writes its manifest and only then points
`CURRENT` at it (`publish`), so a writer killed at any point leaves the previous generation published;
its unpublished files are removed by the next writer (`remove_unreferenced`). Once published, no file is
changed, and numbers are never reused while a reader could know them. A reader resolves `CURRENT` once
(`read_generation`); if a newer generation removed that generation's files before the reader opened
them, it starts over from the new pointer. Files a reader already opened (memory maps, open handles)
stay readable after they are removed, so it keeps answering from its generation until it reloads.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from splade.atomic import atomic_file, write_json
from splade.errors import SpladeError
from splade.indexer.base import IndexMetadata
from splade.indexer.local.segment import Segment, check_entry
from splade.lock import LOCK_FILE

FORMAT = "splade-sparse-index"
VERSION = 2  # 1: one `manifest.json` rewritten in place, no pointer (still read, and upgraded on write)
POINTER = "CURRENT"
LEGACY_MANIFEST = "manifest.json"
MANIFEST_NAME = re.compile(r"^manifest-(\d{6,})\.json$")
NUMBERED = re.compile(r"^(?:seg|manifest|deleted)-(\d+)")
OPEN_ATTEMPTS = 100  # a reader outpaced by this many publications in a row gives up


@dataclass
class Generation:
    """One published state of an index: its number, manifest file, metadata and open segments."""

    number: int
    manifest: str
    metadata: IndexMetadata
    segments: list[Segment]


def manifest_name(number: int) -> str:
    return f"manifest-{number:06d}.json"


def is_index(folder: Path) -> bool:
    """Whether `folder` holds a published index (of this layout or version 1)."""
    return (folder / POINTER).is_file() or (folder / LEGACY_MANIFEST).is_file()


def _is_ours(name: str) -> bool:
    """A name a writer creates in an index folder (temporary files included)."""
    return (name in (POINTER, LOCK_FILE, LEGACY_MANIFEST) or bool(NUMBERED.match(name))
            or (name.startswith(".") and name.endswith(".tmp")))


def is_unpublished(folder: Path) -> bool:
    """Whether `folder` holds only what a writer killed before its first publication leaves behind."""
    return ((folder / LOCK_FILE).is_file() and not is_index(folder)
            and all(_is_ours(child.name) for child in folder.iterdir()))


def read_pointer(folder: Path) -> str | None:
    """The published manifest's file name (`manifest.json` for version 1), None when there is none."""
    try:
        name = (folder / POINTER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return LEGACY_MANIFEST if (folder / LEGACY_MANIFEST).is_file() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpladeError(f"{folder / POINTER}: unreadable ({exc})") from None
    if not MANIFEST_NAME.match(name):
        raise SpladeError(f"{folder / POINTER}: damaged (expected a manifest file name, found {name[:60]!r})")
    return name


def read_manifest(folder: Path, name: str) -> dict:
    """A manifest's contents; a missing file raises `FileNotFoundError`, any other damage a `SpladeError`."""
    path = folder / name
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise SpladeError(f"{path}: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") not in (
            1, VERSION):
        raise SpladeError(f"{path}: not a {FORMAT} manifest of version 1 or {VERSION}")
    segments = manifest.setdefault("segments", [])
    if not isinstance(segments, list):
        raise SpladeError(f"{path}: damaged manifest (segments is not a list)")
    for entry in segments:
        check_entry(entry, path)  # every name stays inside the index folder
    return manifest


def read_generation(folder: Path) -> Generation:
    """The published generation with its segments opened, retried while newer ones replace it."""
    for _ in range(OPEN_ATTEMPTS):
        name = read_pointer(folder)
        if name is None:
            what = "index not found" if not folder.exists() else f"not a splade index (no {POINTER})"
            raise SpladeError(f"{folder}: {what}")
        try:
            manifest = read_manifest(folder, name)
            metadata = IndexMetadata.from_dict(manifest.get("metadata", {}))
            segments = [Segment.read(folder, entry, metadata.vocab_size) for entry in manifest["segments"]]
        except FileNotFoundError as exc:
            if read_pointer(folder) == name:  # still the published generation: a file is really missing
                raise SpladeError(f"{folder}: damaged index ({exc.filename} is missing)") from None
            continue  # a newer generation was published and this one's files removed: read that one
        return Generation(int(manifest.get("generation", 0)), name, metadata, segments)
    raise SpladeError(f"{folder}: the index was replaced {OPEN_ATTEMPTS} times while opening it; try again")


def highest_number(folder: Path) -> int:
    """The highest generation number any file in `folder` is named after (0 for none)."""
    names = [child.name for child in folder.iterdir()]
    names += [f.name for child in folder.iterdir() if child.is_dir() and child.name.startswith("seg-")
              for f in child.iterdir()]
    numbers = [int(m.group(1)) for m in map(NUMBERED.match, names) if m]
    pointer = read_pointer(folder)
    if pointer == LEGACY_MANIFEST:
        numbers.append(int(read_manifest(folder, pointer).get("generation", 0)))
    return max(numbers, default=0)


def publish(folder: Path, number: int, metadata: IndexMetadata, entries: list[dict]) -> str:
    """Write generation `number`'s manifest, then point `CURRENT` at it; its segment files must be
    flushed already. Returns the manifest's file name."""
    name = manifest_name(number)
    write_json(folder / name, {"format": FORMAT, "version": VERSION, "generation": number,
                               "metadata": metadata.to_dict(), "segments": entries})
    with atomic_file(folder / POINTER) as handle:
        handle.write(name + "\n")
    return name


def published_entries(folder: Path) -> tuple[str | None, list[dict]]:
    """The published manifest's name and segment entries (None and [] when nothing is published)."""
    name = read_pointer(folder)
    if name is None:
        return None, []
    try:
        return name, read_manifest(folder, name).get("segments", [])
    except FileNotFoundError:
        raise SpladeError(f"{folder}: damaged index ({POINTER} names {name}, which is missing)") from None


def remove_unreferenced(folder: Path, manifest: str | None, entries: list[dict]) -> list[str]:
    """Delete the writer-made files generation `manifest` does not use: other manifests, segments and
    tombstone files, temporary files. Only the holder of the writer lock may call this. Returns the
    removed names (relative to `folder`)."""
    keep = {entry["name"]: entry.get("deleted") for entry in entries}
    removed: list[str] = []
    for child in sorted(folder.iterdir()):
        name = child.name
        if name in (POINTER, LOCK_FILE, manifest) or not _is_ours(name):
            continue
        if name in keep:
            stale = [f for f in child.iterdir()
                     if f.name.startswith("deleted-") and f"{name}/{f.name}" != keep[name]]
            for f in stale:
                f.unlink(missing_ok=True)
            removed += [f"{name}/{f.name}" for f in stale]
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed.append(name)
    return removed
