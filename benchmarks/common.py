"""What the benchmarks share: where the real model and data are, and the Korean training triplets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
ME5 = SHARED / "models" / "me5-small-koen"
KOREAN_TRIPLETS = REPO / "data" / "ko" / "train.jsonl"
DEV_SETS = [SHARED / "data" / "beir" / name for name in ("korquad", "msmarco-ko", "msmarco-koen")]


def ensure_triplets(path: Path) -> Path:
    """The triplets at `path`; the Korean set (the default) is built first when it is missing."""
    if path.is_file():
        return path
    if path != KOREAN_TRIPLETS:
        sys.exit(f"no triplets at {path}")
    if not (SHARED / "data").is_dir():
        sys.exit(f"no triplets at {path} and no ../shared/data to build them from: pass --triplets FILE")
    print(f"building {path} with splade data build --config configs/data_ko.yaml (once)", flush=True)
    command = [
        sys.executable,
        "-m",
        "splade",
        "data",
        "build",
        "--config",
        "configs/data_ko.yaml",
        "--out",
        str(path.parent),
    ]
    subprocess.run(command, cwd=REPO, check=True)
    return path
