"""Retrieval quality: a v23 model from me5-small-koen against its own start, BM25 (Kiwi, and over the
model's own pieces), dense e5, the teacher it distils from and sentence-transformers.

1. The Korean triplets of `splade data build --config configs/data_ko.yaml` (built when missing).
2. `splade train v23` from me5-small-koen, the dev sets' `select` half choosing the best model: for
   `--steps N` optimizer steps or `--minutes M` of wall clock (the v23 schedule shrinks to fit either), or
   the full schedule on a GPU (`--full`). `--steps 0` evaluates the start alone. `--variant
   NAME=KEY=VALUE[;KEY=VALUE...]` trains more models the same way (e.g. `--variant
   doconly=model.query_encoder=idf`, an inference-free model).
3. The start (`step-0`): the same recipe with no step, i.e. the calibrated lexical start.
4. sentence-transformers `SparseEncoder` + `SpladeLoss(SparseMultipleNegativesRankingLoss)` for the steps
   the v23 model ran, on the same triplets (unless `--no-peer`).
5. `splade export` (ONNX, as served), then `splade eval` on the `report` half of the korquad, msmarco-ko and
   msmarco-koen dev splits (none of its queries selected a model), documents at the served length, with
   Kiwi BM25, BM25 over the model's pieces, dense me5-small-koen and the teacher ensemble as rows.

It prints one table (NDCG@10 per set, Recall@1000, terms per query and document and query encoding time
per query on the first set, FLOPS per query x document pair on each) and each model's dev curve (with
terms per query and document at each evaluation); `--json FILE` writes
`{system: {dataset: {"ndcg@10": x, "recall@1000": y, "flops": z}}}` (`flops` for the systems that have
it). Reports, runs and logs stay under `--out`.

    python benchmarks/bench_quality.py [--device cpu|cuda] [--steps 200 | --minutes 60 | --full]
                                       [--batch 16] [--variant NAME=OVERRIDES ...] [--max-queries 300]
                                       [--no-peer] [--corpus own|merged|both] [--reuse] [--json FILE]

`--reuse` resumes each training under `--out` (a finished one returns at once) and keeps finished models
and exports there, to redo the evaluation without retraining.
"""

from __future__ import annotations

import argparse
import json
import math
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
TRAIN_DOC_LENGTH = 256  # v23's training document length (data.max_length), for the peer too
RENAMED = {"bm25": "bm25-kiwi"}  # the report's row names -> this table's


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


def train_splade(args: argparse.Namespace, name: str, overrides: list[str], steps: int | None = None) -> Path:
    """`splade train v23` into `--out/NAME`; `steps` (default: `--steps`/`--minutes`) is the budget."""
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
    steps = args.steps if steps is None else steps
    if steps == 0 and reusable(args, out / "best_model"):  # the start leaves no checkpoint to resume from
        return out / "best_model"
    if steps == 0:
        settings.append("training.max_steps=0")
    elif not args.full:  # the v23 schedule (20 epochs, 3 phases, warm-ups) shrinks to fit the budget
        settings += [
            f"training.max_minutes={args.minutes}" if args.minutes else f"training.max_steps={steps}",
            "training.early_stopping_patience=null",  # every model trains its whole budget
            "training.logging_steps=10",
        ]
        settings.append(f"dev.evaluations={args.evaluations}")
    settings += args.set  # every SPLADE training's overrides (e.g. a CPU's shorter training documents)
    command = [sys.executable, "-m", "splade", "train", "v23", "--output-dir", str(out)]
    # a killed training continues from its last checkpoint, a finished one returns at once; else start clean
    command.append("--resume" if args.reuse else "--overwrite")
    for override in [*settings, *overrides]:
        command += ["--set", override]
    run(command, args.out / f"train-{name}.log")
    return out / "best_model"


def train_peer(args: argparse.Namespace, steps: int) -> Path:
    """sentence-transformers' SPLADE for `steps` optimizer steps (those the v23 model ran)."""
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
        str(steps),
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
    model = sentence_transformers_splade(args.model, TRAIN_DOC_LENGTH, args.device)
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
    command += ["--bm25-pieces", str(args.model), "--teacher", "--query-half", "report"]
    if args.max_documents:
        command += ["--max-documents", str(args.max_documents)]
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
            table.setdefault(RENAMED.get(system["name"], system["name"]), {})[dataset["name"]] = system
    return table


def figures(results: dict[str, dict]) -> dict[str, dict[str, dict[str, float]]]:
    """`{system: {dataset: {"ndcg@10", "recall@1000", "flops"}}}` on the own corpus (else the merged one)."""
    rows = _systems(results.get("own") or results["merged"])
    return {
        system: {dataset: _figures_of(result) for dataset, result in by_dataset.items()}
        for system, by_dataset in rows.items()
    }


def _figures_of(result: dict) -> dict[str, float]:
    """NDCG@10 and R@1000 of one system on one set, and its FLOPS per pair where it has one (sparse)."""
    out = {k: result["metrics"][k] for k in ("ndcg@10", "recall@1000") if k in result["metrics"]}
    flops = (result.get("efficiency") or {}).get("flops")
    if flops is not None and math.isfinite(flops):
        out["flops"] = flops
    return out


def print_table(args: argparse.Namespace, results: dict[str, dict], budget: str) -> None:
    """NDCG@10 for each set on each evaluated corpus, Recall@1000, terms, query encoding time and FLOPS."""
    rows = {corpus: _systems(result) for corpus, result in results.items()}
    recall_corpus = "merged" if "merged" in rows else "own"
    print()
    print(
        f"retrieval quality on the report half of the dev splits ({args.device}; SPLADE models: {budget}; "
        f"{args.max_queries or 'all'} queries a set; R@1000 on the {recall_corpus} corpus)"
    )
    sets = [path.name for path in args.datasets]
    header = f"{'system':22}"
    for name in sets:
        header += "".join(f" {name + ' ' + corpus:>{len(name) + 8}}" for corpus in rows) + f"{'R@1000':>8}"
    # terms and query encoding on the first set (its whole batch of queries, divided); FLOPS on each set
    queries = {d["name"]: d["n_queries"] for d in results[recall_corpus]["datasets"]}
    flops_header = "FLOPS " + " / ".join(sets)
    print(header + f"{'q terms':>9}{'d terms':>9}{'q ms':>8}  {flops_header}")
    for system in next(iter(rows.values())):
        cells = ""
        for name in sets:
            for by_system in rows.values():
                metrics = by_system.get(system, {}).get(name, {}).get("metrics", {})
                cells += f" {metrics.get('ndcg@10', float('nan')):{len(name) + 8}.3f}"
            metrics = rows[recall_corpus].get(system, {}).get(name, {}).get("metrics", {})
            cells += f"{metrics.get('recall@1000', float('nan')):8.3f}"
        per_set = rows[recall_corpus].get(system, {})
        by_set = {name: per_set.get(name, {}).get("efficiency") or {} for name in sets}
        first = by_set[sets[0]]
        terms = f"{first.get('avg_query_terms', float('nan')):9.1f}"
        terms += f"{first.get('avg_doc_terms', float('nan')):9.1f}"
        per_query = 1000 * first.get("query_encode_s", float("nan")) / max(1, queries[sets[0]])
        flops = " / ".join(f"{by_set[name].get('flops', float('nan')):.2f}" for name in sets)
        print(f"{system:22}{cells}{terms}{per_query:8.3f}  {flops}")


def _dev_points(args: argparse.Namespace, name: str) -> list[tuple[int, dict]]:
    path = args.out / name / "training_history.json"
    if not path.is_file():
        return []
    history = json.loads(path.read_text(encoding="utf-8"))
    points = [(e["global_step"], e["val"]) for e in history.get("evaluations", [])]
    return points or [(e["global_step"], e["val"]) for e in history["epochs"] if "dev/ndcg@10" in e["val"]]


def trained_steps(args: argparse.Namespace, name: str) -> int:
    """Optimizer steps a training under `--out` ran."""
    history = json.loads((args.out / name / "training_history.json").read_text(encoding="utf-8"))
    steps = [e["global_step"] for e in history.get("evaluations", []) + history.get("epochs", [])]
    return max(steps, default=0)


def print_curves(args: argparse.Namespace, names: list[str]) -> None:
    """Each model's dev curve on the `select` half it was chosen on, with terms per query / document."""
    sets = [path.name for path in args.datasets]
    print()
    print(f"dev curves (select half, {args.dev_queries} queries / {args.dev_documents} documents a set)")
    for name in names:
        print(f"{name}:")
        print(
            f"  {'step':>6}" + "".join(f" {s:>13}" for s in sets) + f"{'mean':>8}{'q terms':>9}{'d terms':>9}"
        )
        for step, val in _dev_points(args, name):
            cells = "".join(f" {val.get(f'{s}/ndcg@10', float('nan')):13.3f}" for s in sets)
            print(
                f"  {step:6d}{cells}{val['dev/ndcg@10']:8.3f}{val['dev/active_terms_query']:9.1f}"
                f"{val['dev/active_terms_doc']:9.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model", type=Path, default=ME5)
    parser.add_argument("--triplets", type=Path, default=KOREAN_TRIPLETS)
    parser.add_argument(
        "--steps", type=int, default=200, help="optimizer steps (the schedule shrinks to fit)"
    )
    parser.add_argument(
        "--minutes", type=float, default=None, help="train for this wall clock instead of --steps"
    )
    parser.add_argument("--batch", type=int, default=None, help="triplets a step (default 16 CPU, 64 GPU)")
    parser.add_argument("--full", action="store_true", help="the full v23 schedule instead of --steps")
    parser.add_argument("--variant", action="append", default=[], help="NAME=KEY=VALUE[;KEY=VALUE...]")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE for every SPLADE training")
    parser.add_argument("--no-peer", action="store_true", help="skip sentence-transformers")
    parser.add_argument("--max-queries", type=int, default=300, help="queries a set in the final evaluation")
    parser.add_argument(
        "--max-documents",
        type=int,
        default=None,
        help="search their judged documents plus seeded distractors up to N a set (default: all)",
    )
    parser.add_argument("--dev-queries", type=int, default=50, help="dev queries a set while training")
    parser.add_argument("--dev-documents", type=int, default=300, help="dev documents a set while training")
    parser.add_argument("--evaluations", type=int, default=4, help="dev evaluations over a budgeted run")
    parser.add_argument("--datasets", type=Path, nargs="+", default=DEV_SETS, help="BEIR dev sets")
    parser.add_argument(
        "--corpus",
        choices=["own", "merged", "both"],
        default="own",
        help="evaluate each set against its own corpus, the merged corpus, or both",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="resume trainings and keep finished models and exports under --out",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the table's figures as JSON")
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
    trained = {"step-0": train_splade(args, "step-0", [], steps=0)}
    names = []
    if args.steps or args.minutes or args.full:
        trained["splade"] = train_splade(args, "splade", [])
        names.append("splade")
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        trained[f"splade-{name}"] = train_splade(
            args, f"splade-{name}", [o for o in overrides.split(";") if o]
        )
        names.append(f"splade-{name}")
    steps = trained_steps(args, "splade") if "splade" in trained else 0
    if not args.no_peer and steps:
        trained[PEER] = train_peer(args, steps)
    models = {name: export(args, name, path) for name, path in trained.items()}
    corpora = ["own", "merged"] if args.corpus == "both" else [args.corpus]
    results = {corpus: evaluate(args, models, merged=corpus == "merged") for corpus in corpora}
    budget = (
        "full v23 schedule"
        if args.full
        else (f"{args.minutes:g} minutes" if args.minutes else f"{args.steps} steps")
        + f" of batch {args.batch}"
    )
    print_table(args, results, f"{budget}, {steps} steps run")
    print_curves(args, names)
    if args.json:
        args.json.write_text(json.dumps(figures(results), indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
