"""Shared fixtures: the `../shared` folder (skipped with a reason when absent) and tiny models."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SPLADE_SHARED_DIR", REPO_ROOT.parent / "shared"))

TINY_TEXTS = [
    "당뇨병 치료 방법", "diabetes mellitus treatment", "고혈압 예방과 관리", "hypertension prevention",
    "서울은 한국의 수도이다", "Seoul is the capital of Korea",
    "커피는 건강에 좋다", "coffee is good for health",
    "인공지능 검색 모델", "neural sparse retrieval model", "감기 증상과 치료", "common cold symptoms",
] * 5


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the calling test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {Path('..', 'shared', *parts)} (real models/data are not present here)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised BERT SPLADE model saved with `save_pretrained` (never downloaded)."""
    from splade.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny_model")
    build_tiny_model(TINY_TEXTS, out, vocab_size=300, hidden_size=32, num_layers=1, num_heads=2)
    return out


@pytest.fixture(scope="session")
def splade_tiny_dir() -> Path:
    """The trained English SPLADE checkpoint from ../shared/models (skips when absent)."""
    return shared_path("models", "splade-tiny")


@pytest.fixture(scope="session")
def me5_dir() -> Path:
    """The Korean-capable multilingual e5-small from ../shared/models (skips when absent)."""
    return shared_path("models", "me5-small-koen")


@pytest.fixture(scope="session")
def opensearch_url():
    """A real OpenSearch-compatible HTTP server (`osmem-server`, in memory) on a free loopback port.

    It speaks the OpenSearch REST API (rank_features, bool/rank_feature, bulk, aliases) but not
    `neural_sparse`, nori or ML Commons; see ../shared/DESIGN.md. Yields `http://127.0.0.1:PORT`.
    """
    osmem = pytest.importorskip("osmem_server", reason="needs osmem-server (pip install -e '.[dev]')")
    try:
        server = osmem.OsmemServer.start(japanese=False, addr="127.0.0.1:0")
    except osmem.OsmemError as exc:
        pytest.skip(f"osmem-server could not start: {exc}")
    yield server.url
    server.close()


PAIRS = [
    ("당뇨병 치료 방법", "diabetes mellitus treatment"),
    ("고혈압 예방과 관리", "hypertension prevention"),
    ("서울은 한국의 수도이다", "Seoul is the capital of Korea"),
    ("커피는 건강에 좋다", "coffee is good for health"),
    ("인공지능 검색 모델", "neural sparse retrieval model"),
    ("감기 증상과 치료", "common cold symptoms"),
]


def write_triplets(path: Path, n: int, seed: int = 0) -> Path:
    """`n` triplets over six Korean-English pairs, with pair types and difficulties."""
    rnd = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            query, positive = PAIRS[i % len(PAIRS)]
            negative = rnd.choice([p for _, p in PAIRS if p != positive])
            handle.write(
                json.dumps(
                    {
                        "query": query,
                        "positive": positive,
                        "negative": negative,
                        "pair_type": ["single_term", "cross_lingual", "multi_term"][i % 3],
                        "difficulty": ["easy", "hard"][i % 2],
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    return path


def tiny_config(tmp_path: Path, model_dir: Path, *overrides: str, n_train: int = 24):
    """The quickstart training config on tiny triplets written inside the test."""
    from splade.config import load_config
    from splade.quickstart import QUICKSTART_CONFIG

    train_file = write_triplets(tmp_path / "train.jsonl", n_train)
    val_file = write_triplets(tmp_path / "val.jsonl", 12, seed=1)
    return load_config(
        QUICKSTART_CONFIG,
        [
            f"model.name={model_dir}",
            f"data.train_files=[{train_file}]",
            f"data.val_files=[{val_file}]",
            f"output.dir={tmp_path / 'out'}",
            "data.batch_size=4",
            "data.max_length=16",
            "data.epoch_size=null",
            *overrides,
        ],
    )


def served_alike_everywhere(folder: Path, out: Path, texts: list[str]):
    """Export the saved model `folder` to ONNX and to an OpenSearch TorchScript package under `out`; assert
    the ONNX vectors equal torch's and the package passed its parity check; return torch's vectors."""
    import numpy as np

    from splade.config.export import ExportConfig
    from splade.encoders import load_encoder
    from splade.export.onnx_export import export_onnx
    from splade.export.opensearch_package import build_ml_commons_package

    export_onnx(ExportConfig(checkpoint=folder, out=out / "onnx"))
    served = load_encoder(folder, device="cpu").encode(texts).to_dense()
    exported = load_encoder(out / "onnx", device="cpu").encode(texts).to_dense()
    np.testing.assert_allclose(exported, served, atol=1e-5)
    package = build_ml_commons_package(folder, out / "opensearch", name=f"{folder.name}-test")
    assert json.loads((package.parent / "parity.json").read_text())["passed"] is True  # TorchScript too
    return served


@pytest.fixture
def one_torch_thread():
    """Tiny models train fastest on one thread (and do not fight other jobs on a shared 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`splade ARGS` in a new process: its exit code and stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "splade", *args], capture_output=True, text=True,
                          timeout=300)


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one `error: ` line of a failed command (exit 2, no traceback; progress lines may precede it)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = [line for line in proc.stderr.strip().splitlines() if line.startswith("error: ")]
    assert proc.stderr.strip().endswith(line)
    return line
