"""Training speed: `splade train v23` on the real configuration, its variants, and sentence-transformers.

By default: me5-small-koen from `../shared/models`, the Korean triplets of
`splade data build --config configs/data_ko.yaml` (built into `data/ko/` first when missing), the v23
config (IDF-aware FLOPS, distillation from the me5 teacher), batch 16 x 128 tokens on a CPU and
64 x 128 on a GPU. Each row runs in its own process, so its peak memory is its own:

- `splade v23 (cold)`: the default as a first run sees it: token ids, IDF and teacher embeddings are
  computed (the teacher's one-time cost is reported apart);
- `splade v23 (warm)`: the same command again, reading what the first run cached;
- one row per pooling implementation, one without distillation, one with `torch.compile` (GPU);
- `sentence-transformers`: `SparseEncoder` + `SpladeLoss(SparseMultipleNegativesRankingLoss)` on the same
  backbone, triplets, batch and length (no distillation: it has none built in).

For each it prints setup time (process start to the first optimizer step), steady-state seconds per step,
triplets/s and peak memory (RSS on a CPU, allocated GPU memory on a GPU), and the achieved FLOP/s of one
step (counted with `torch.utils.flop_counter`) against a matmul timed on the same device in the same run.

    python benchmarks/bench_train.py [--device cpu|cuda] [--model PATH] [--triplets FILE]
                                     [--batch N] [--length N] [--steps N] [--warmup N] [--only ROW ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    KOREAN_TRIPLETS,
    ME5,
    REPO,
    ensure_triplets,
    sentence_transformers_splade,
    sentence_transformers_step,
)

DEFAULT_MODEL = ME5
DEFAULT_TRIPLETS = KOREAN_TRIPLETS
STARTED = time.perf_counter()

# row name -> overrides of the v23 config (on top of the common ones)
VARIANTS: dict[str, list[str]] = {
    "splade v23 (cold)": [],
    "splade v23 (warm)": [],
    "pooling=plain": ["training.pooling=plain"],
    "pooling=dense": ["training.pooling=dense"],
    "pooling=sparse": ["training.pooling=sparse"],
    "no distillation": ["loss.lambda_kd=0"],
    "expansion weight 1": ["model.expansion_weight=1"],
    "torch.compile": ["training.compile=true"],
}
PEER = "sentence-transformers"


def peak_memory_mib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matmul_flops(device: str) -> float:
    """FLOP/s of a large matmul in the training precision (bf16 on a GPU, fp32 on a CPU)."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    n = 8192 if device == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    repeats = 20 if device == "cuda" else 5
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - started)


class StepClock:
    """Marks each optimizer step's end; counts the FLOPs of one step after the warm-up."""

    def __init__(self, device: str, counted_step: int) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        self.device = device
        self.counted_step = counted_step
        self.marks: dict[int, float] = {}
        self.counter = FlopCounterMode(display=False)
        self.flops = 0

    def sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def __call__(self, step: int) -> None:
        self.sync()
        if step == self.counted_step:  # the next step runs under the FLOP counter (and is not timed)
            self.counter.__enter__()
        elif step == self.counted_step + 1:
            self.counter.__exit__(None, None, None)
            self.flops = self.counter.get_total_flops()
        self.marks[step] = time.perf_counter()


def run_splade(args: argparse.Namespace, overrides: list[str], out: Path) -> dict[str, float]:
    from splade.config import load_config
    from splade.trainer.loop import train

    counted = args.warmup  # step warmup+1 is counted, the timed steps come after it
    total = args.warmup + 1 + args.steps
    teacher = f"loss.teacher.name={args.teacher}" if args.teacher else "loss.teacher.name=" + str(args.model)
    cfg = load_config(
        REPO / "configs" / "train_v23.yaml",
        [
            f"model.name={args.model}",
            f"data.train_files=[{args.triplets}]",
            "data.val_files=[]",
            f"data.batch_size={args.batch}",
            f"data.max_length={args.length}",
            f"data.cache_dir={args.cache}",
            teacher,
            "dev.sets=[]",
            f"training.max_steps={total}",
            "training.early_stopping_patience=null",  # every step runs: a timing must not stop early
            f"training.device={args.device}",
            "training.logging_steps=1000000",
            "training.save_steps=null",
            "training.save_total_limit=1",
            "output.tensorboard=false",
            f"output.dir={out}",
            *overrides,
        ],
    )
    clock = StepClock(args.device, counted)
    result = train(cfg, step_callback=clock)
    timed = clock.marks[total] - clock.marks[counted + 1]
    setup = result.summary["setup_seconds"]
    first_step = clock.marks[1] - STARTED
    return {
        "setup_s": first_step,
        "teacher_s": setup.get("teacher", 0.0),
        "step_s": timed / args.steps,
        "flops_per_step": clock.flops,
        "setup_parts": setup,
    }


def run_peer(args: argparse.Namespace) -> dict[str, float]:
    import torch
    from sentence_transformers.sparse_encoder.losses import SparseMultipleNegativesRankingLoss, SpladeLoss

    from splade.data.triplets import load_triplets

    torch.manual_seed(42)
    rows = load_triplets([args.triplets]).triplets
    model = sentence_transformers_splade(args.model, args.length, args.device)
    model.train()
    loss_fn = SpladeLoss(
        model,
        SparseMultipleNegativesRankingLoss(model),
        document_regularizer_weight=3e-3,
        query_regularizer_weight=3e-3,
    )
    fused = {"fused": True} if args.device == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, **fused)
    clock = StepClock(args.device, args.warmup)
    total = args.warmup + 1 + args.steps
    for step in range(1, total + 1):
        batch = rows[(step - 1) * args.batch : step * args.batch]
        sentence_transformers_step(model, loss_fn, optimizer, batch, args.device)
        clock(step)
    timed = clock.marks[total] - clock.marks[args.warmup + 1]
    return {
        "setup_s": clock.marks[1] - STARTED,
        "teacher_s": 0.0,
        "step_s": timed / args.steps,
        "flops_per_step": clock.flops,
    }


def worker(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.worker == PEER:
            result = run_peer(args)
        else:
            result = run_splade(args, VARIANTS[args.worker], Path(tmp) / "out")
    result["peak_mib"] = peak_memory_mib(args.device)
    result["matmul_flops"] = matmul_flops(args.device)
    result["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(result), flush=True)


def run_row(args: argparse.Namespace, row: str) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        row,
        "--device",
        args.device,
        "--model",
        str(args.model),
        "--triplets",
        str(args.triplets),
        "--batch",
        str(args.batch),
        "--length",
        str(args.length),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--cache",
        str(args.cache),
    ]
    if args.teacher:
        cmd += ["--teacher", str(args.teacher)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(f"{row}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
        return {}
    result = json.loads(line[len("RESULT ") :])
    result["wall_s"] = time.perf_counter() - started
    print(f"  {row}: {result['step_s']:.3f} s/step, setup {result['setup_s']:.1f} s", flush=True)
    return result


def print_table(args: argparse.Namespace, results: dict[str, dict[str, float]]) -> None:
    peer = results.get(PEER) or {}
    base = results.get("splade v23 (warm)") or results.get("splade v23 (cold)") or {}
    memory = "peak GPU MiB" if args.device == "cuda" else "peak RSS MiB"
    unit = "TFLOP/s" if args.device == "cuda" else "GFLOP/s"
    scale = 1e12 if args.device == "cuda" else 1e9
    threads = next(iter(results.values()), {}).get("threads", "?")
    print()
    print(
        f"training speed: {args.model.name}, {args.triplets.name}, batch {args.batch} triplets x "
        f"{args.length} tokens, {args.steps} timed steps after {args.warmup} warm-up, {args.device}, "
        f"{threads} torch threads"
    )
    header = (
        f"{'':22}{'setup s':>9}{'teacher s':>10}{'s/step':>9}{'triplets/s':>11}{'vs peer':>9}"
        f"{memory:>14}{unit:>9}{'of matmul':>10}"
    )
    print(header)
    for row, r in results.items():
        if not r:
            print(f"{row:22}{'failed':>9}")
            continue
        speed = args.batch / r["step_s"]
        ratio = f"{speed / (args.batch / peer['step_s']):.2f}x" if peer else "-"
        achieved = r["flops_per_step"] / r["step_s"]
        print(
            f"{row:22}{r['setup_s']:9.1f}{r['teacher_s']:10.1f}{r['step_s']:9.3f}{speed:11.1f}{ratio:>9}"
            f"{r['peak_mib']:14.0f}{achieved / scale:9.2f}{achieved / r['matmul_flops']:9.1%}"
        )
    if base and peer:
        print(f"splade v23 vs sentence-transformers per triplet: {peer['step_s'] / base['step_s']:.2f}x")
    if base:
        print(f"matmul on this device: {base['matmul_flops'] / scale:.1f} {unit}")
    for row in ("splade v23 (cold)", "splade v23 (warm)"):
        parts = (results.get(row) or {}).get("setup_parts")
        if parts:
            print(f"{row} setup, seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="backbone (default me5-small-koen)")
    parser.add_argument("--teacher", type=Path, default=None, help="distillation teacher (default: --model)")
    parser.add_argument("--triplets", type=Path, default=DEFAULT_TRIPLETS)
    parser.add_argument("--batch", type=int, default=None, help="triplets a step (default 16 CPU, 64 GPU)")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 4 CPU, 30 GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 CPU, 5 GPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--only", nargs="*", default=None, help="rows to run (names as printed)")
    parser.add_argument("--cache", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    gpu = args.device == "cuda"
    args.batch = args.batch or (64 if gpu else 16)
    args.steps = args.steps or (30 if gpu else 4)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 2)
    if args.worker:
        worker(args)
        return
    if not args.model.exists():
        sys.exit(f"no model at {args.model}: pass --model PATH (a masked-LM backbone)")
    args.triplets = ensure_triplets(args.triplets)
    rows = args.only or [r for r in [*VARIANTS, PEER] if gpu or r != "torch.compile"]
    unknown = [r for r in rows if r not in VARIANTS and r != PEER]
    if unknown:
        sys.exit(f"--only: no row {unknown[0]!r}; the rows are: {', '.join([*VARIANTS, PEER])}")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-cache-") as cache:
        args.cache = Path(cache)  # cold for the first row; the rows after it read what it cached
        for row in rows:
            results[row] = run_row(args, row)
    print_table(args, results)


if __name__ == "__main__":
    main()
