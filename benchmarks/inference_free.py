"""Query encoding of an inference-free model on 1 CPU thread (the query part of `bench_encode.py`).

An inference-free folder is built from the backbone (me5-small-koen by default): `SpladeModel` with a
query table of BM25 idf over msmarco-ko passages, saved as splade saves it (a sentence-transformers
`Router`). Its queries are timed three ways, on the same real Korean queries:

- splade's table path (`Encoder.encode_queries`: tokenize, then each own token's table weight),
- sentence-transformers' `SparseEncoder.encode_query` of the same folder (its `SparseStaticEmbedding`),
- the siamese ONNX encoder of the same backbone (a full forward per query, fp32, 1 intra-op thread),

in batches of 256 and one query per call (serving latency). Targets: the table path at most 0.1 ms a
query and at least 100x faster than the siamese ONNX encoder.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import print_table

BATCH = 256  # queries per call in batch mode (below the size at which splade lets the tokenizer fan out)
TARGET_MS = 0.1
TARGET_SPEEDUP = 100.0


def read_jsonl_texts(path: Path, n: int) -> list[str]:
    """The first `n` texts (`title` + `text`) of a BEIR jsonl file."""
    texts: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts.append(f"{row.get('title') or ''} {row['text']}".strip())
            if len(texts) == n:
                break
    return texts


def build_doc_only(backbone: Path, passages: list[str], out: Path) -> Path:
    """`backbone` as an inference-free model whose query table is BM25 idf over `passages`."""
    import torch

    from splade.model import SpladeModel
    from splade.model.tokenization import TextTokenizer
    from splade.trainer.idf import bm25_idf

    model = SpladeModel.from_pretrained(backbone)
    df = np.zeros(model.vocab_size, dtype=np.int64)
    for ids in TextTokenizer(model.tokenizer).encode(passages, model.max_length):
        df[np.unique(ids)] += 1
    model.set_query_weights(torch.from_numpy(bm25_idf(df, len(passages))))
    model.query_max_length = 64
    model.save_pretrained(out)
    return out


def ms_per_query(encode: Callable[[list[str]], object], queries: list[str], batch: int,
                 repeats: int = 3) -> float:
    """Best-of-`repeats` milliseconds a query, `batch` queries a call, after one warm-up call."""
    encode(queries[:batch])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for lo in range(0, len(queries), batch):
            encode(queries[lo:lo + batch])
        best = min(best, (time.perf_counter() - start) * 1000.0 / len(queries))
    return best


def max_difference(table, peer, queries: list[str]) -> float:  # noqa: ANN001 - splade's, ST's encoders
    """The largest |splade - sentence-transformers| query weight, a batch at a time (dense rows are big)."""
    worst = 0.0
    for lo in range(0, len(queries), BATCH):
        chunk = queries[lo:lo + BATCH]
        ours = table.encode_queries(chunk).to_dense()
        theirs = peer.encode_query(chunk, batch_size=BATCH, convert_to_tensor=True).to_dense().float().numpy()
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst


def query_benchmark(args) -> None:  # noqa: ANN001 - bench_encode's parsed arguments
    """Print the side-by-side table of ms per query, with ratios against splade's table path."""
    backbone: Path = args.query_model
    data = backbone.parent.parent / "data" / "beir" / "msmarco-ko"
    missing = [str(p) for p in (backbone, data / "queries.jsonl", data / "corpus.jsonl") if not p.exists()]
    if missing:
        print(f"inference-free query encoding: skipped, needs {', '.join(missing)} (the ../shared models and "
              "data are not present here)")
        return
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the tokenizer on the calling thread, as torch and ORT
    import torch
    from sentence_transformers import SparseEncoder

    from splade.config.export import ExportConfig
    from splade.encoders.onnx_backend import OnnxEncoder
    from splade.encoders.torch_backend import TorchEncoder
    from splade.export.onnx_export import export_onnx

    torch.set_num_threads(1)
    queries = read_jsonl_texts(data / "queries.jsonl", args.n_queries)
    with tempfile.TemporaryDirectory(prefix="bench-queries-") as tmp:
        scratch = Path(tmp)
        folder = build_doc_only(backbone, read_jsonl_texts(data / "corpus.jsonl", 5000), scratch / "doc-only")
        table = TorchEncoder(folder, device="cpu")  # queries never reach its model
        export_onnx(ExportConfig(checkpoint=backbone, out=scratch / "siamese-onnx", max_length=64))
        siamese = OnnxEncoder(scratch / "siamese-onnx", device="cpu", variant="fp32", threads=1)
        peer = SparseEncoder(str(folder), device="cpu")
        diff = max_difference(table, peer, queries)
        some = queries[: args.n_onnx_queries]
        rows = []
        for mode, batch in (("batch", BATCH), ("one query", 1)):
            n = len(queries) if batch > 1 else min(len(queries), 500)
            rows.append((mode, "splade table (Encoder.encode_queries)",
                         ms_per_query(lambda q: table.encode_queries(q), queries[:n], batch)))
            rows.append((mode, "sentence-transformers encode_query",
                         ms_per_query(lambda q: peer.encode_query(q, batch_size=BATCH), queries[:n], batch)))
            rows.append((mode, "siamese ONNX fp32 (1 thread)",
                         ms_per_query(lambda q: siamese.encode_queries(q, batch_size=32), some, batch, 1)))
    print(f"inference-free query encoding, 1 CPU thread: {len(queries)} msmarco-ko queries "
          f"({len(some)} on the siamese ONNX), {backbone.name}, queries cut at 64 tokens")
    header = f"{'mode':<10} {'encoder':<40} {'ms/query':>9} {'vs table':>9}"
    base = {m: value for m, n, value in rows if n.startswith("splade table")}
    print_table(header, (f"{mode:<10} {name:<40} {ms:9.4f} {ms / base[mode]:8.1f}x"
                         for mode, name, ms in rows))
    for mode in ("batch", "one query"):
        mine = base[mode]
        onnx = next(ms for m, n, ms in rows if m == mode and n.startswith("siamese"))
        verdict = "met" if mine <= TARGET_MS and onnx / mine >= TARGET_SPEEDUP else "MISSED"
        print(f"{mode}: table {mine:.4f} ms/query (target <= {TARGET_MS}), {onnx / mine:.0f}x faster than "
              f"the siamese ONNX (target >= {TARGET_SPEEDUP:.0f}x): {verdict}")
    print(f"table vs sentence-transformers vectors: max |diff| {diff:.1e} over {len(queries)} queries")
