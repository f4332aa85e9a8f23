"""Check a checkpoint folder before loading it: a missing or damaged file is one line naming the folder.

Only cheap checks: `config.json` parses, the weight files named by the folder exist, and each is as long
as its own header says (a copy or download cut short is the usual damage).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from splade.errors import SpladeError

SAFETENSORS = "model.safetensors"
TORCH_BIN = "pytorch_model.bin"
SHARD_INDEXES = (f"{SAFETENSORS}.index.json", f"{TORCH_BIN}.index.json")


def check_model_folder(folder: str | Path) -> None:
    """Raise a `SpladeError` naming `folder` and what it lacks, or which file is damaged and how."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SpladeError(f"{folder}: model folder not found")
    config = folder / "config.json"
    if not config.is_file():
        raise SpladeError(f"{folder}: not a model folder (no config.json)")
    _read_json(config)
    for path in _weight_files(folder):
        if path.suffix == ".safetensors":
            _check_safetensors(path)
        else:
            _check_torch_bin(path)


def _damaged(path: Path, why: str) -> SpladeError:
    return SpladeError(f"{path.parent}: {path.name} is damaged ({why})")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(path, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _damaged(path, "expected a JSON object")
    return data


def _weight_files(folder: Path) -> list[Path]:
    """The weight files the folder's loader will read: one file, or the shards an index file names."""
    for name in (SAFETENSORS, TORCH_BIN):
        if (folder / name).is_file():
            return [folder / name]
    for name in SHARD_INDEXES:
        if (folder / name).is_file():
            weight_map = _read_json(folder / name).get("weight_map", {})
            shards = [folder / shard for shard in sorted(set(weight_map.values()))]
            missing = [p.name for p in shards if not p.is_file()]
            if missing or not shards:
                listed = ", ".join(missing) or "none"
                raise SpladeError(f"{folder}: {name} names missing weight files ({listed})")
            return shards
    raise SpladeError(f"{folder}: no model weights ({SAFETENSORS} or {TORCH_BIN})")


def _check_safetensors(path: Path) -> None:
    """An 8-byte header length, a JSON header, then every tensor's bytes up to its end offset."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise _damaged(path, f"truncated: {size} bytes")
        (header_len,) = struct.unpack("<Q", head)
        if 8 + header_len > size:
            raise _damaged(path, f"truncated: {size:,} bytes, its header alone needs {8 + header_len:,}")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _damaged(path, "unreadable header") from None
    ends = [t["data_offsets"][1] for t in header.values() if isinstance(t, dict) and "data_offsets" in t]
    needed = 8 + header_len + max(ends, default=0)
    if needed > size:
        raise _damaged(path, f"truncated: {size:,} bytes, its header needs {needed:,}")


def _check_torch_bin(path: Path) -> None:
    """A zip archive (PyTorch's format since 1.6) whose members all lie inside the file."""
    size = path.stat().st_size
    if not zipfile.is_zipfile(path):
        with path.open("rb") as handle:
            if handle.read(1) == b"\x80":  # the legacy pickle format: no cheap check
                return
        raise _damaged(path, f"truncated or not a PyTorch file: {size:,} bytes")
    with zipfile.ZipFile(path) as archive:
        needed = max((m.header_offset + m.compress_size for m in archive.infolist()), default=0)
    if needed > size:
        raise _damaged(path, f"truncated: {size:,} bytes, its archive needs {needed:,}")
