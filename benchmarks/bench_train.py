"""Training throughput: splade's trainer vs sentence-transformers' SparseEncoder + SpladeLoss.

Both sides train the same backbone on the same triplets with the same batch size, sequence length,
optimizer (AdamW) and gradient clipping, each in its own subprocess (so peak memory is per side).
splade runs its real `train()` loop with the v22 six-part loss; the peer runs SparseEncoder with
SpladeLoss(SparseMultipleNegativesRankingLoss + FLOPS regularizers), tokenizing each column like its
data collator does. Throughput is measured after warm-up steps; peak memory is the process max RSS.

    python benchmarks/bench_train.py [--model PATH] [--batch 16] [--length 64] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO.parent / "shared" / "models" / "splade-tiny"
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "that",
    "this",
    "which",
    "are",
    "be",
    "or",
    "an",
    "were",
    "diabetes",
    "treatment",
    "blood",
    "sugar",
    "insulin",
    "heart",
    "pressure",
    "capital",
    "city",
    "country",
    "river",
    "history",
    "music",
    "science",
    "computer",
    "search",
    "model",
    "sparse",
    "retrieval",
    "neural",
    "network",
    "language",
    "korea",
    "seoul",
    "health",
    "coffee",
    "cold",
    "symptoms",
    "prevention",
    "hospital",
    "doctor",
    "patient",
    "medicine",
    "study",
    "result",
    "data",
    "system",
]


def make_triplets(path: Path, count: int, seed: int = 0) -> list[dict[str, str]]:
    """Synthetic triplets long enough that every text is truncated to the benchmark length."""
    rnd = random.Random(seed)

    def text(n: int) -> str:
        return " ".join(rnd.choice(WORDS) for _ in range(n))

    rows = [
        {
            "query": text(80),
            "positive": text(120),
            "negative": text(120),
            "pair_type": "single_term",
            "difficulty": "easy",
        }
        for _ in range(count)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return rows


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_ours(args: argparse.Namespace, data: Path, out: Path) -> dict[str, float]:
    from splade.config import load_config
    from splade.trainer.loop import train

    total = args.warmup + args.steps
    cfg = load_config(
        REPO / "configs" / "train_v22.yaml",
        [
            f"model.name={args.model}",
            f"data.train_files=[{data}]",
            "data.val_files=[]",
            f"data.batch_size={args.batch}",
            f"data.max_length={args.length}",
            "model.dropout=0.1",
            "training.num_epochs=1",
            f"training.max_steps={total}",
            "training.mixed_precision=no",
            "training.device=cpu",
            "training.logging_steps=1000000",
            "training.save_total_limit=1",
            "training.learning_rate=2e-5",
            "output.tensorboard=false",
            f"output.dir={out}",
        ],
    )
    marks: dict[int, float] = {}
    train(cfg, step_callback=lambda step: marks.setdefault(step, time.perf_counter()))
    elapsed = marks[total] - marks[args.warmup]
    return {"samples_per_s": args.steps * args.batch / elapsed, "step_s": elapsed / args.steps}


def run_peer(args: argparse.Namespace, rows: list[dict[str, str]]) -> dict[str, float]:
    import torch
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.losses import SparseMultipleNegativesRankingLoss, SpladeLoss

    torch.manual_seed(42)
    model = SparseEncoder(str(args.model), device="cpu")
    model.max_seq_length = args.length
    model.train()
    loss_fn = SpladeLoss(
        model,
        SparseMultipleNegativesRankingLoss(model),
        document_regularizer_weight=3e-3,
        query_regularizer_weight=5e-3,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    times = []
    for step in range(args.warmup + args.steps):
        batch = rows[step * args.batch : (step + 1) * args.batch]
        times.append(time.perf_counter())
        features = [model.tokenize([r[col] for r in batch]) for col in ("query", "positive", "negative")]
        losses = loss_fn(features, None)
        loss = sum(losses.values()) if isinstance(losses, dict) else losses
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    times.append(time.perf_counter())
    elapsed = times[-1] - times[args.warmup]  # from the end of the warm-up steps to the end of the last
    return {"samples_per_s": args.steps * args.batch / elapsed, "step_s": elapsed / args.steps}


def worker(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "triplets.jsonl"
        rows = make_triplets(data, args.batch * (args.warmup + args.steps))
        result = run_ours(args, data, Path(tmp) / "out") if args.worker == "splade" else run_peer(args, rows)
    result["peak_rss_mib"] = peak_rss_mib()
    result["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="backbone (default ../shared splade-tiny)"
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per side (0: torch default)")
    parser.add_argument("--worker", choices=["splade", "sentence-transformers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if not args.model.exists():
        sys.exit(f"no model at {args.model}: pass --model PATH (a masked-LM backbone)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    results = {}
    for side in ("splade", "sentence-transformers"):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            side,
            "--model",
            str(args.model),
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
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
        results[side] = json.loads(line[len("RESULT ") :])
    ours, peer = results["splade"], results["sentence-transformers"]
    print(
        f"training throughput: {args.model.name}, batch {args.batch} triplets x {args.length} tokens, "
        f"{args.steps} timed steps after {args.warmup} warm-up, CPU, {ours['threads']} torch threads"
    )
    print(f"{'':24}{'samples/s':>12}{'s/step':>10}{'peak RSS MiB':>15}")
    for side, r in results.items():
        print(f"{side:24}{r['samples_per_s']:12.1f}{r['step_s']:10.3f}{r['peak_rss_mib']:15.0f}")
    print(
        f"{'ratio splade/peer':24}{ours['samples_per_s'] / peer['samples_per_s']:11.2f}x"
        f"{'':10}{ours['peak_rss_mib'] / peer['peak_rss_mib']:14.2f}x"
    )


if __name__ == "__main__":
    main()
