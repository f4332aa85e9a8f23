"""The ONNX Runtime backend of `Encoder`: CUDA (TensorRT when present) with IO binding on a GPU, else CPU.

When the CUDA provider is installed but cannot start (no GPU, driver or CUDA libraries), the encoder
falls back to the CPU provider and the fp32 graph with a one-line warning; `device="cuda"` makes that
an error instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from splade.encoders.base import Encoder
from splade.encoders.providers import CPU, CUDA, ProviderSpec, provider_names, select_providers, uses_gpu
from splade.errors import SpladeError, at_option, first_line
from splade.model.artifact import ONNX_INPUT_NAMES, ONNX_OUTPUT_NAME, ONNX_VARIANT_FILES, SpladeArtifact
from splade.model.query_weights import read_query_weights

log = logging.getLogger(__name__)
# The exported graph materialises `[batch, seq, vocab]` logits before its max-pool, and ONNX Runtime's CPU
# arena keeps its peak allocation for the session's life. On a CPU a padded batch runs in slices of at most
# this many logits (512 MB in fp32): measured on me5-small-koen at 512 tokens, 2 threads, slices of 4
# passages encode 3.1 docs/s at 1.4 GB peak RSS against 2.1 docs/s at 7.1 GB for whole batches of 32.
CPU_LOGITS_PER_RUN = 1 << 27


def make_session(path: str | Path, providers: Sequence[ProviderSpec], threads: int | None = None):
    """An `InferenceSession` with every graph optimization on; `threads` caps intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) share no base but Exception
        model_file = Path(path)
        raise SpladeError(f"{model_file.parent}: {model_file.name} is damaged or unreadable "
                          f"({first_line(exc)})") from None


def pick_variant(folder: Path, variant: str, gpu: bool) -> Path:
    """`auto`: fp16 on a GPU when exported, fp32 otherwise; int8 only when asked for."""
    if variant == "auto":
        variant = "fp16" if gpu and (folder / ONNX_VARIANT_FILES["fp16"]).is_file() else "fp32"
    if variant not in ONNX_VARIANT_FILES:
        choices = ", ".join(ONNX_VARIANT_FILES)
        raise at_option("--variant", f"unknown variant {variant!r} (choose auto, {choices})")
    path = folder / ONNX_VARIANT_FILES[variant]
    if not path.is_file():
        raise SpladeError(f"{path}: not found (export with --{variant} to create it)")
    return path


class OnnxEncoder(Encoder):
    """Encode with an exported SPLADE graph; the tokenizer and `splade_config.json` lie beside it."""

    backend = "onnx"

    def __init__(self, path: str | Path, device: str | None = None, max_length: int | None = None,
                 variant: str = "auto", threads: int | None = None,
                 available_providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        folder = path.parent if path.suffix == ".onnx" else path
        if not folder.is_dir():
            raise SpladeError(f"{folder}: no exported model folder")
        available = ort.get_available_providers() if available_providers is None else available_providers
        wanted = select_providers(available, device, trt_cache_dir=folder / ".trt_cache")
        if device in (None, "auto") and CUDA not in available and _torch_sees_gpu():
            log.warning("a GPU is present but this onnxruntime has no CUDA provider "
                        "(pip install onnxruntime-gpu); encoding on the CPU")
        artifact = SpladeArtifact.read(folder) or SpladeArtifact()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise SpladeError(f"{folder}: cannot load the tokenizer ({first_line(exc)})") from None
        model_id = artifact.model_id or str(folder)  # the source checkpoint's identity (see export)
        table = None
        if artifact.query_encoder == "idf":
            width = artifact.vocab_size or len(tokenizer)
            table = read_query_weights(folder, tokenizer, width).numpy()
        super().__init__(tokenizer, max_length or artifact.doc_length, model_id, artifact.similarity,
                         artifact.query_length, table, artifact.document_expansion_ratio)
        threads = threads or _default_threads()
        self._open(path, folder, variant, wanted, threads)
        if uses_gpu(provider_names(wanted)) and not self.use_io_binding:
            if device not in (None, "auto"):
                raise at_option("--device", f"{device} asked for, but onnxruntime's CUDA provider could not "
                                            "start (check the GPU driver and the CUDA and cuDNN libraries)")
            log.warning("onnxruntime's CUDA provider could not start (no usable GPU, driver or CUDA "
                        "libraries); encoding on the CPU")
            self._open(path, folder, variant, [CPU], threads)
        self._device_id = _device_id(wanted)

    def _open(self, path: Path, folder: Path, variant: str, providers: Sequence[ProviderSpec],
              threads: int | None) -> None:
        """Start a session on `providers` with the graph variant that suits them."""
        gpu = uses_gpu(provider_names(providers))
        self.model_path = path if path.suffix == ".onnx" else pick_variant(folder, variant, gpu)
        self.session = make_session(self.model_path, providers, threads)
        self.providers: list[str] = self.session.get_providers()
        self.use_io_binding = uses_gpu(self.providers)

    @property
    def device_description(self) -> str:
        main = self.providers[0].removesuffix("ExecutionProvider") if self.providers else "?"
        binding = ", IO binding" if self.use_io_binding else ""
        return f"onnxruntime {main} ({self.model_path.name}{binding})"

    @property
    def vocab_size(self) -> int:
        width = self.session.get_outputs()[0].shape[-1]
        return width if isinstance(width, int) else len(self.tokenizer)

    def _encode_batch(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if self.use_io_binding:
            return self._run_bound(input_ids, attention_mask)
        rows = max(1, CPU_LOGITS_PER_RUN // (input_ids.shape[1] * self.vocab_size))
        starts = range(0, len(input_ids), rows)
        return np.concatenate([self._run_cpu(input_ids[s:s + rows], attention_mask[s:s + rows])
                               for s in starts])

    def _run_cpu(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = dict(zip(ONNX_INPUT_NAMES, (input_ids, attention_mask), strict=True))
        return self.session.run([ONNX_OUTPUT_NAME], feeds)[0]

    def _run_bound(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """GPU path: inputs copied to the device once, output allocated there, one copy back."""
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, array in zip(ONNX_INPUT_NAMES, (input_ids, attention_mask), strict=True):
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), "cuda", self._device_id)
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(ONNX_OUTPUT_NAME, "cuda", self._device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def _device_id(providers: Sequence[ProviderSpec]) -> int:
    for spec in providers:
        if not isinstance(spec, str):
            return int(spec[1].get("device_id", 0))
    return 0


def _torch_sees_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _default_threads() -> int | None:
    """Physical-ish core count (ORT's own default also counts hyper-threads); None lets ORT decide."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return count or None
