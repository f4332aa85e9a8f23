"""Encoding throughput: ONNX Runtime vs PyTorch eager on the same texts and batches, with parity figures.

Run: python benchmarks/bench_encode.py [--n-texts 128] [--batch-size 32] [--max-length 128]
                                      [--poolings-only] [--doc-length 512] [--queries-only]
Models: ../shared/models/splade-tiny and me5-small-koen when present, else a tiny model built here.
Texts: Korean (msmarco-ko) and English (msmarco-koen) passages from ../shared/data when present, else
built-in sentences. On a machine with CUDA (torch + onnxruntime-gpu) it adds GPU rows (fp32 and fp16).
Every ratio compares rows on the same device; parity is measured on the benchmark texts themselves.

Document encoding on the CPU by pooling (`--poolings-only` runs just this part; serving_pooling.py):
splade's PyTorch encoder with each pooling against sentence-transformers' `SparseEncoder` on the same
passages at the served document length (`--doc-length`, 512); `serving_pooling` is the pooling it picks,
target: at least 1.0x sentence-transformers.

Query encoding of an inference-free model (`--queries-only` runs just this part), on 1 CPU thread: an
inference-free folder is built from me5-small-koen (`--query-model`) with BM25 idf over msmarco-ko
passages as its query table; its queries (msmarco-ko queries) are weighed from the table, with no forward
pass, and compared with the siamese ONNX encoder of the same backbone and with sentence-transformers'
`SparseEncoder.encode_query` of the same folder. Targets: at most 0.1 ms a query, at least 100x faster
than the siamese ONNX encoder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"

from common import best_rate, print_table  # noqa: E402

from splade.config.export import ExportConfig  # noqa: E402
from splade.encoders import Encoder  # noqa: E402
from splade.encoders.onnx_backend import OnnxEncoder  # noqa: E402
from splade.encoders.torch_backend import TorchEncoder  # noqa: E402
from splade.export.onnx_export import export_onnx  # noqa: E402
from splade.export.parity import PARITY_TEXTS, topk_overlap  # noqa: E402


def bench_texts(n: int) -> tuple[list[str], str]:
    """Half Korean, half English passages (real data when ../shared is present)."""
    files = [SHARED / "data" / "beir" / "msmarco-ko" / "corpus.jsonl",
             SHARED / "data" / "beir" / "msmarco-koen" / "corpus.jsonl"]
    if not all(f.is_file() for f in files):
        return [PARITY_TEXTS[i % len(PARITY_TEXTS)] for i in range(n)], "built-in Korean/English sentences"
    texts: list[str] = []
    for path in files:
        with path.open(encoding="utf-8") as handle:
            for line, _ in zip(handle, range(n // 2), strict=False):
                row = json.loads(line)
                texts.append(f"{row.get('title', '')} {row['text']}".strip())
    return texts, "msmarco-ko (Korean) + msmarco-koen (English) passages"


def models(scratch: Path) -> list[tuple[str, Path]]:
    found = [(name, SHARED / "models" / name) for name in ("splade-tiny", "me5-small-koen")
             if (SHARED / "models" / name).is_dir()]
    if found:
        return found
    from splade.tiny import build_tiny_model

    build_tiny_model(list(PARITY_TEXTS) * 20, scratch / "tiny", vocab_size=2000)
    return [("built tiny BERT", scratch / "tiny")]


def timed(encoder: Encoder, texts: list[str], batch_size: int, repeats: int):
    """Best-of-`repeats` docs/s after one warm-up batch, and the dense output of the last run."""
    best, out = best_rate(
        lambda chunk: encoder.encode(chunk, batch_size=batch_size), texts, repeats, warmup=batch_size
    )
    return best, out.to_dense()


def gpu_available() -> bool:
    import onnxruntime as ort
    import torch

    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-dynamo", action="store_true", help="do not time the dynamo exporter's graph")
    parser.add_argument("--queries-only", action="store_true",
                        help="only the inference-free query encoding comparison")
    parser.add_argument("--query-model", type=Path, default=SHARED / "models" / "me5-small-koen")
    parser.add_argument("--n-queries", type=int, default=2000, help="queries timed on the table paths")
    parser.add_argument("--n-onnx-queries", type=int, default=200, help="queries timed on the siamese ONNX")
    parser.add_argument("--poolings-only", action="store_true",
                        help="only the CPU pooling comparison with sentence-transformers")
    parser.add_argument("--doc-length", type=int, default=512, help="document length of the pooling table")
    args = parser.parse_args()
    if args.poolings_only:
        from serving_pooling import pooling_benchmark

        pooling_benchmark(args, *bench_texts(args.n_texts))
        return
    if args.queries_only:
        from inference_free import query_benchmark

        query_benchmark(args)
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    texts, source = bench_texts(args.n_texts)
    devices = ["cpu"] + (["cuda"] if gpu_available() else [])
    note = "" if "cuda" in devices else " (no GPU here: GPU rows not measured)"
    print(f"{len(texts)} texts ({source}), batch {args.batch_size}, max length {args.max_length}, "
          f"devices: {', '.join(devices)}{note}")
    header = (f"{'model':<16} {'device':<5} {'backend':<34} {'docs/s':>8} {'vs torch':>9} "
              f"{'max|diff|':>10} {'top-32 ovl':>10}")
    print_table(header)
    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp:
        scratch = Path(tmp)
        for name, path in models(scratch):
            exports = {"legacy": scratch / f"{name}-legacy"}
            export_onnx(ExportConfig(checkpoint=path, out=exports["legacy"], fp16="cuda" in devices,
                                     int8=True, max_length=args.max_length))
            if not args.skip_dynamo:
                exports["dynamo"] = scratch / f"{name}-dynamo"
                export_onnx(ExportConfig(checkpoint=path, out=exports["dynamo"], exporter="dynamo",
                                         max_length=args.max_length))
            for device in devices:
                for half in ([False, True] if device == "cuda" else [False]):
                    torch_encoder = TorchEncoder(path, device=device, max_length=args.max_length)
                    if half:
                        torch_encoder.model.half()
                    base, reference = timed(torch_encoder, texts, args.batch_size, args.repeats)
                    label = f"torch eager {'fp16' if half else 'fp32'}"
                    print(f"{name:<16} {device:<5} {label:<34} {base:8.1f} {1.0:8.2f}x {'-':>10} {'-':>10}")
                    variants = [("legacy", "fp16" if half else "fp32")]
                    if not half and device == "cpu":
                        variants.append(("legacy", "int8"))
                        if "dynamo" in exports:
                            variants.append(("dynamo", "fp32"))
                    for exporter, variant in variants:
                        encoder = OnnxEncoder(exports[exporter], device=device, variant=variant)
                        speed, dense = timed(encoder, texts, args.batch_size, args.repeats)
                        diff = float(np.abs(dense - reference).max())
                        overlap = topk_overlap(reference, dense, 32)
                        label = f"onnxruntime {variant} ({exporter}, {encoder.providers[0][:-17]})"
                        print(f"{name:<16} {device:<5} {label:<34} {speed:8.1f} {speed / base:8.2f}x "
                              f"{diff:10.2e} {overlap:10.3f}")
    print("ratios compare with torch eager on the same device and precision; goal: onnxruntime >= 1.5x")
    print()
    from serving_pooling import pooling_benchmark

    pooling_benchmark(args, texts, source)
    print()
    from inference_free import query_benchmark

    query_benchmark(args)


if __name__ == "__main__":
    main()
