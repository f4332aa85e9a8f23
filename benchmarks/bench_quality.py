"""Retrieval quality: a v23 model from me5-small-koen against BM25, dense e5 and sentence-transformers.

1. The Korean triplets of `splade data build --config configs/data_ko.yaml` (built when missing).
2. `splade train v23` from me5-small-koen with the me5 teacher, the dev sets (sampled) selecting the best
   model: on a CPU the v23 curriculum scaled to `--steps` optimizer steps (20 epochs of steps/20), on a
   GPU the full schedule (`--full`). `--variant NAME=KEY=VALUE[;KEY=VALUE...]` trains more v23 variants
   the same way (e.g. `--variant cosine=loss.similarity=cosine`); they are compared at equal steps on
   the dev samples their training evaluates (a table of its own), not in the final evaluation.
3. sentence-transformers `SparseEncoder` + `SpladeLoss(SparseMultipleNegativesRankingLoss)` for the same
   steps, batch and length on the same triplets (its documented regularizer weights).
4. `splade export` of both models (ONNX, as they are served), then `splade eval` on the dev splits of
   korquad, msmarco-ko and msmarco-koen, each against its own corpus and against the merged corpus, with
   Kiwi BM25 and dense me5-small-koen.

It prints one table (NDCG@10 per set and corpus, Recall@1000 on the merged corpus, terms per query and
per document) and each model's dev curve; reports, runs and logs stay under `--out`.

    python benchmarks/bench_quality.py [--device cpu|cuda] [--steps 200] [--batch 16] [--full]
                                       [--variant NAME=OVERRIDES ...] [--max-queries N] [--no-peer]
                                       [--corpus own|merged|both] [--reuse]

`--reuse` resumes each training under `--out` (a finished one returns at once) and keeps the finished
sentence-transformers model and exports there, to redo the evaluation without retraining;
`--corpus own` skips the merged-corpus evaluation, which on a CPU takes as long again.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from common import (
    DEV_SETS,
    KOREAN_TRIPLETS,
    ME5,
    REPO,
    ensure_triplets,
    sentence_transformers_splade,
    sentence_transformers_step,
)

PEER = "sentence-transformers"


def run(command: list[str], log: Path) -> None:
    """Run a command, its output into `log`; stop with the log's tail when it fails."""
    started = time.perf_counter()
    print(f"$ {' '.join(command)}", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w", encoding="utf-8") as handle:
        proc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"failed ({log}):\n" + "\n".join(log.read_text(encoding="utf-8").splitlines()[-30:]))
    print(f"  done in {time.perf_counter() - started:.0f} s (log {log})", flush=True)


def reusable(args: argparse.Namespace, path: Path) -> bool:
    """With --reuse, a finished model or export under --out (its last file written) is kept, and said so."""
    if args.reuse and path.exists():
        print(f"reusing {path}", flush=True)
        return True
    return False


def train_splade(args: argparse.Namespace, name: str, overrides: list[str]) -> Path:
    out = args.out / name
    settings = [
        f"model.name={args.model}",
        f"loss.teacher.name={args.model}",
        f"data.train_files=[{args.triplets}]",
        "data.val_files=[]",
        f"data.batch_size={args.batch}",
        f"training.device={args.device}",
        f"dev.sets=[{','.join(str(p) for p in args.datasets)}]",
        f"dev.max_queries={args.dev_queries}",
        f"dev.max_documents={args.dev_documents}",
        "training.save_steps=null",
    ]
    if not args.full:  # the v23 curriculum (20 epochs, 3 phases) scaled to --steps optimizer steps
        settings += [
            f"data.epoch_size={args.steps * args.batch // 20}",
            f"dev.every_steps={args.steps // 4}",
            f"loss.flops_warmup_steps={args.steps // 10}",
            "training.early_stopping_patience=null",  # every model trains the same steps
        ]
    command = [sys.executable, "-m", "splade", "train", "v23", "--output-dir", str(out)]
    if args.reuse:  # a killed training continues from its last checkpoint; a finished one returns at once
        command.append("--resume")
    for override in [*settings, *overrides]:
        command += ["--set", override]
    run(command, args.out / f"train-{name}.log")
    return out / "best_model"


def train_peer(args: argparse.Namespace) -> Path:
    out = args.out / PEER
    if reusable(args, out / "modules.json"):
        return out
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--model",
        str(args.model),
        "--triplets",
        str(args.triplets),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--device",
        args.device,
        "--out",
        str(out),
    ]
    run(command, args.out / f"train-{PEER}.log")
    return out


def peer_worker(args: argparse.Namespace) -> None:
    """sentence-transformers' SPLADE recipe on the same triplets, as its documentation trains it."""
    import torch
    from sentence_transformers.sparse_encoder.losses import SparseMultipleNegativesRankingLoss, SpladeLoss
    from tqdm.auto import tqdm

    from splade.data.triplets import load_triplets

    torch.manual_seed(42)
    rows = load_triplets([args.triplets]).triplets
    order = list(range(len(rows)))
    random.Random(42).shuffle(order)
    model = sentence_transformers_splade(args.model, 128, args.device)
    loss_fn = SpladeLoss(
        model,
        SparseMultipleNegativesRankingLoss(model),
        query_regularizer_weight=5e-5,
        document_regularizer_weight=3e-5,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    warmup = max(1, args.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (args.steps - s) / max(1, args.steps - warmup)),
    )
    model.train()
    for step in tqdm(range(args.steps), desc=PEER):
        batch = [rows[order[(step * args.batch + i) % len(rows)]] for i in range(args.batch)]
        sentence_transformers_step(model, loss_fn, optimizer, batch, args.device)
        schedule.step()
    model.save(str(args.out))


def export(args: argparse.Namespace, name: str, model: Path) -> Path:
    """The ONNX export users serve (with its parity check)."""
    out = args.out / f"{name}-onnx"
    if reusable(args, out / "model.onnx"):
        return out
    run(
        [sys.executable, "-m", "splade", "export", str(model), "--out", str(out)],
        args.out / f"export-{name}.log",
    )
    return out


def evaluate(args: argparse.Namespace, models: dict[str, Path], merged: bool) -> dict:
    name = "merged" if merged else "own"
    out = args.out / f"eval-{name}"
    command = [sys.executable, "-m", "splade", "eval", "--out", str(out), "--dense", str(args.model)]
    command += [part for path in args.datasets for part in ("--dataset", str(path))]
    command += [part for system, path in models.items() for part in ("--splade", f"{system}={path}")]
    if merged:
        command.append("--merged-corpus")
    if args.max_queries:
        command += ["--max-queries", str(args.max_queries)]
    if args.device == "cuda":
        command += ["--device", "cuda"]
    run(command, args.out / f"eval-{name}.log")
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def _systems(results: dict) -> dict[str, dict[str, dict]]:
    """{system: {dataset: system result}}"""
    table: dict[str, dict[str, dict]] = {}
    for dataset in results["datasets"]:
        for system in dataset["systems"]:
            table.setdefault(system["name"], {})[dataset["name"]] = system
    return table


def print_table(args: argparse.Namespace, results: dict[str, dict]) -> None:
    """NDCG@10 for each set on each evaluated corpus; Recall@1000 on the merged corpus when it was run."""
    rows = {corpus: _systems(result) for corpus, result in results.items()}
    recall_corpus = "merged" if "merged" in rows else "own"
    print()
    budget = (
        "full v23 schedule"
        if args.full
        else f"{args.steps} steps of batch {args.batch}, v23 curriculum scaled"
    )
    print(
        f"retrieval quality on the dev splits ({args.device}; SPLADE models: {budget}; "
        f"{args.max_queries or 'all'} queries a set; R@1000 on the {recall_corpus} corpus)"
    )
    sets = [path.name for path in args.datasets]
    header = f"{'system':22}"
    for name in sets:
        header += "".join(f" {name + ' ' + corpus:>{len(name) + 8}}" for corpus in rows) + f"{'R@1000':>8}"
    print(header + f"{'q terms':>9}{'d terms':>9}")
    for system in next(iter(rows.values())):
        cells = ""
        for name in sets:
            for by_system in rows.values():
                metrics = by_system.get(system, {}).get(name, {}).get("metrics", {})
                cells += f" {metrics.get('ndcg@10', float('nan')):{len(name) + 8}.3f}"
            metrics = rows[recall_corpus].get(system, {}).get(name, {}).get("metrics", {})
            cells += f"{metrics.get('recall@1000', float('nan')):8.3f}"
        efficiency = next(iter(rows[recall_corpus][system].values()))["efficiency"]
        terms = f"{efficiency['avg_query_terms']:9.1f}{efficiency['avg_doc_terms']:9.1f}"
        print(f"{system:22}{cells}{terms}")
    print(
        "targets (NDCG@10, own corpus): korquad 0.955 (BM25), msmarco-ko 0.936 (dense), "
        "msmarco-koen 0.621 (dense)"
    )


def _dev_points(args: argparse.Namespace, name: str) -> list[tuple[int, dict]]:
    path = args.out / name / "training_history.json"
    if not path.is_file():
        return []
    history = json.loads(path.read_text(encoding="utf-8"))
    points = [(e["global_step"], e["val"]) for e in history.get("evaluations", [])]
    return points or [(e["global_step"], e["val"]) for e in history["epochs"] if "dev/ndcg@10" in e["val"]]


def print_variants(args: argparse.Namespace, names: list[str]) -> None:
    """Each trained model's last dev evaluation (the sampled dev sets), side by side."""
    sets = [path.name for path in args.datasets]
    print()
    print(
        f"v23 variants at equal steps: dev NDCG@10 on the training's dev samples "
        f"({args.dev_queries} queries, {args.dev_documents} documents a set)"
    )
    print(f"{'model':26}" + "".join(f" {s:>13}" for s in sets) + f"{'mean':>8}{'q terms':>9}{'d terms':>9}")
    for name in names:
        points = _dev_points(args, name)
        if not points:
            continue
        step, val = points[-1]
        cells = "".join(f" {val.get(f'{s}/ndcg@10', float('nan')):13.3f}" for s in sets)
        print(
            f"{name + f' @{step}':26}{cells}{val['dev/ndcg@10']:8.3f}{val['dev/active_terms_query']:9.1f}"
            f"{val['dev/active_terms_doc']:9.1f}"
        )


def print_curves(args: argparse.Namespace, names: list[str]) -> None:
    for name in names:
        points = _dev_points(args, name)
        curve = ", ".join(
            f"{step}: {val['dev/ndcg@10']:.3f} ({val['dev/active_terms_query']:.0f}/"
            f"{val['dev/active_terms_doc']:.0f} terms)"
            for step, val in points
        )
        print(f"{name} dev NDCG@10 by step (query/doc terms): {curve}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model", type=Path, default=ME5)
    parser.add_argument("--triplets", type=Path, default=KOREAN_TRIPLETS)
    parser.add_argument(
        "--steps", type=int, default=200, help="optimizer steps (the curriculum is scaled to them)"
    )
    parser.add_argument("--batch", type=int, default=None, help="triplets a step (default 16 CPU, 64 GPU)")
    parser.add_argument("--full", action="store_true", help="the full v23 schedule instead of --steps")
    parser.add_argument("--variant", action="append", default=[], help="NAME=KEY=VALUE[;KEY=VALUE...]")
    parser.add_argument("--no-peer", action="store_true", help="skip sentence-transformers")
    parser.add_argument("--max-queries", type=int, default=None, help="queries a set in the final evaluation")
    parser.add_argument("--dev-queries", type=int, default=50, help="dev queries a set while training")
    parser.add_argument("--dev-documents", type=int, default=300, help="dev documents a set while training")
    parser.add_argument("--datasets", type=Path, nargs="+", default=DEV_SETS, help="BEIR dev sets")
    parser.add_argument("--corpus", choices=["own", "merged", "both"], default="both",
                        help="evaluate each set against its own corpus, the merged corpus, or both")
    parser.add_argument("--reuse", action="store_true",
                        help="resume trainings and keep finished models and exports under --out")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_quality")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch = args.batch or (64 if args.device == "cuda" else 16)
    if args.worker:
        peer_worker(args)
        return
    if not args.model.exists() or not all(p.is_dir() for p in args.datasets):
        sys.exit(
            "needs ../shared/models/me5-small-koen and ../shared/data/beir/{korquad,msmarco-ko,msmarco-koen}"
        )
    args.triplets = ensure_triplets(args.triplets)
    args.out.mkdir(parents=True, exist_ok=True)
    trained = {"splade-v23": train_splade(args, "splade-v23", [])}
    variants = []
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        variants.append(f"splade-{name}")
        train_splade(args, variants[-1], [o for o in overrides.split(";") if o])
    if not args.no_peer:
        trained[PEER] = train_peer(args)
    models = {name: export(args, name, path) for name, path in trained.items()}
    corpora = ["own", "merged"] if args.corpus == "both" else [args.corpus]
    results = {corpus: evaluate(args, models, merged=corpus == "merged") for corpus in corpora}
    print_table(args, results)
    print_variants(args, ["splade-v23", *variants])
    print_curves(args, ["splade-v23", *variants])


if __name__ == "__main__":
    main()
