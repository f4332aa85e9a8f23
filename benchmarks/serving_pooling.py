"""Document encoding on the CPU: splade's PyTorch encoder per pooling vs sentence-transformers' SparseEncoder
(the pooling part of `bench_encode.py`; `--poolings-only` runs just this part).

A siamese folder is built from the backbone (me5-small-koen by default: `SpladeModel` with its MLM head,
saved as splade saves it), and the same real passages (msmarco-ko + msmarco-koen, at the served document
length) are encoded by:

- `TorchEncoder` with each pooling (`plain`, `dense`, `sparse` = the training pooling on a CPU), and as
  served (no pooling given: `serving_pooling` picks one per batch from its padded length),
- `SparseEncoder(folder).encode_document` (its MLMTransformer + SpladePooling) at the same length and batch.

Every row reports documents a second, the ratio against sentence-transformers and the largest difference
from the `plain` vectors. `serving_pooling` (splade/model/pooling.py) holds the choice this table measures;
target: the served row at least 1.0x sentence-transformers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from common import best_rate, print_table

TARGET_VS_PEER = 1.0
POOLINGS = ("plain", "dense", "sparse", None)  # None: as served


def build_siamese(backbone: Path, out: Path) -> Path:
    """`backbone` saved as a splade model (its MLM head built when it has none)."""
    from splade.model import SpladeModel

    SpladeModel.from_pretrained(backbone).save_pretrained(out)
    return out


def pooling_benchmark(args, texts: list[str], source: str) -> None:  # noqa: ANN001 - bench_encode's arguments
    """Print the side-by-side table of documents a second, with ratios against sentence-transformers."""
    backbone: Path = args.query_model
    if not backbone.exists():
        print(f"serving pooling: skipped, needs {backbone} (the ../shared models are not present here)")
        return
    import torch
    from sentence_transformers import SparseEncoder

    from splade.encoders.torch_backend import TorchEncoder
    length, batch = args.doc_length, args.batch_size
    with tempfile.TemporaryDirectory(prefix="bench-pooling-") as tmp:
        folder = build_siamese(backbone, Path(tmp) / "siamese")
        ours = TorchEncoder(folder, device="cpu", max_length=length)
        peer = SparseEncoder(str(folder), device="cpu")
        peer.max_seq_length = length

        peer_speed, peer_out = best_rate(
            lambda chunk: peer.encode_document(chunk, batch_size=batch, convert_to_tensor=True),
            texts, args.repeats, batch,
        )
        peer_vectors = peer_out.to_dense().float().numpy()
        rows, reference = [], None
        for name in POOLINGS:
            ours.pooling = name
            speed, out = best_rate(
                lambda chunk: ours.encode_documents(chunk, batch_size=batch), texts, args.repeats, batch
            )
            vectors = out.to_dense()
            reference = vectors if reference is None else reference
            label = f"splade torch, pooling {name}" if name else "splade torch, as served (served)"
            rows.append((label, speed, float(np.abs(vectors - reference).max())))
    peer_diff = float(np.abs(peer_vectors - reference).max())
    rows.append(("sentence-transformers SparseEncoder", peer_speed, peer_diff))
    print(f"document encoding on the CPU ({torch.get_num_threads()} threads): {len(texts)} texts ({source}), "
          f"{backbone.name}, batch {batch}, documents cut at {length} tokens")
    header = f"{'encoder':<40} {'docs/s':>8} {'vs ST':>7} {'max|diff| vs plain':>19}"
    print_table(header, (f"{name:<40} {speed:8.2f} {speed / peer_speed:6.2f}x {diff:19.1e}"
                         for name, speed, diff in rows))
    served = next(speed for name, speed, _ in rows if name.endswith("(served)"))
    fastest = max(rows[:-1], key=lambda row: row[1])[0]
    verdict = "met" if served / peer_speed >= TARGET_VS_PEER else "MISSED"
    print(f"served: {served / peer_speed:.2f}x sentence-transformers (target >= "
          f"{TARGET_VS_PEER:.1f}x): {verdict}; fastest here: {fastest}")
