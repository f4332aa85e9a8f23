"""Encoders: texts -> sparse vectors through PyTorch or ONNX Runtime, behind one interface."""

from __future__ import annotations

from pathlib import Path

from splade.encoders.base import Encoder
from splade.errors import at_option

__all__ = ["Encoder", "load_encoder"]


def load_encoder(path: str | Path, backend: str = "auto", device: str | None = None,
                 max_length: int | None = None) -> Encoder:
    """Load an encoder from a checkpoint folder (torch) or an exported ONNX folder (onnx).

    `backend="auto"` picks ONNX Runtime when the folder holds `model.onnx` (or `path` is a `.onnx`
    file), PyTorch otherwise. The ONNX backend runs fp16 on a GPU when exported (see `OnnxEncoder`).
    """
    path = Path(path)
    if backend == "auto":
        backend = "onnx" if path.suffix == ".onnx" or (path / "model.onnx").is_file() else "torch"
    if backend == "torch":
        from splade.encoders.torch_backend import TorchEncoder

        return TorchEncoder(path, device=device, max_length=max_length)
    if backend == "onnx":
        from splade.encoders.onnx_backend import OnnxEncoder

        return OnnxEncoder(path, device=device, max_length=max_length)
    raise at_option("--backend", f"unknown encoder backend {backend!r} (choose auto, torch or onnx)")
