"""Choosing ONNX Runtime execution providers: TensorRT > CUDA > CPU, by what the install offers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from splade.errors import at_option

ProviderSpec = str | tuple[str, dict[str, Any]]

TRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def _device_id(device: str) -> int:
    _, _, index = device.partition(":")
    if index and not index.isdigit():
        raise at_option("--device", f"bad device {device!r} (use cpu, cuda or cuda:N)")
    return int(index or 0)


def select_providers(
    available: Sequence[str],
    device: str | None = None,
    trt_cache_dir: str | Path | None = None,
    use_tensorrt: bool = True,
) -> list[ProviderSpec]:
    """Providers for an `InferenceSession`, best first, always ending with the CPU provider.

    `device`: None or "auto" (a GPU when ONNX Runtime offers one), "cpu", "cuda" or "cuda:N".
    """
    device = (device or "auto").lower()
    if device == "cpu":
        return [CPU]
    if device not in ("auto", "gpu") and not device.startswith("cuda"):
        raise at_option("--device", f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)")
    if CUDA not in available:
        if device == "auto":
            return [CPU]
        raise at_option("--device", f"{device} asked for, but this onnxruntime has no CUDA provider "
                                    "(install onnxruntime-gpu: pip install 'splade[gpu]')")
    index = 0 if device in ("auto", "gpu") else _device_id(device)
    chosen: list[ProviderSpec] = []
    if use_tensorrt and TRT in available:
        trt_options: dict[str, Any] = {"device_id": index}
        if trt_cache_dir is not None:
            trt_options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache_dir))
        chosen.append((TRT, trt_options))
    chosen.append((CUDA, {"device_id": index}))
    chosen.append(CPU)
    return chosen


def provider_names(providers: Sequence[ProviderSpec]) -> list[str]:
    return [p if isinstance(p, str) else p[0] for p in providers]


def uses_gpu(active: Sequence[str]) -> bool:
    """True when the session's first (main) provider runs on a GPU."""
    return bool(active) and active[0] in (TRT, CUDA)
