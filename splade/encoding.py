"""One `Encoder` interface that turns texts into sparse vectors; backends: PyTorch and ONNX Runtime.

Every backend shares the batching (sorted by length), pruning (top-k / threshold) and the
token-id -> token-string table; a backend only implements `_encode_batch`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from splade.errors import at_option
from splade.sparse import SparseBatch
from splade.tokens import token_names


def vocabulary_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short hash of the vocabulary: indexes refuse queries encoded with another vocabulary."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    digest = hashlib.sha256("\n".join(token for token, _ in vocab).encode("utf-8"))
    return digest.hexdigest()[:16]


class Encoder(ABC):
    """Texts -> `SparseBatch`. Subclasses implement `_encode_batch` for one padded batch."""

    backend: str = "abstract"

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, model_name: str) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.model_name = model_name
        self._id_to_token: list[str] | None = None

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Width of the output vectors (the model's output layer, which may exceed the tokenizer)."""

    @property
    def id_to_token(self) -> list[str]:
        """Token string of every output id as OpenSearch ML Commons names it (`""`: never indexed)."""
        if self._id_to_token is None:
            self._id_to_token = token_names(self.tokenizer, self.vocab_size)
        return self._id_to_token

    @property
    def vocab_hash(self) -> str:
        return vocabulary_hash(self.tokenizer)

    @property
    def device_description(self) -> str:
        """Which device / execution provider does the work, in words."""
        return self.backend

    @abstractmethod
    def _encode_batch(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Return the dense `[batch, vocab]` float32 representation of one padded batch."""

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        top_k: int | None = None,
        threshold: float = 0.0,
        max_length: int | None = None,
        show_progress: bool = False,
        desc: str = "encoding",
    ) -> SparseBatch:
        """Encode `texts` in length-sorted batches; keep weights above `threshold`, at most `top_k` a row."""
        texts = list(texts)
        if not texts:
            return SparseBatch(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32),
                               self.vocab_size)
        limit = max_length or self.max_length
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]]
        order = np.argsort(lengths, kind="stable")[::-1]
        parts: list[SparseBatch] = []
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc=desc, disable=not show_progress, unit="batch"):
            chunk = [texts[i] for i in order[start:start + batch_size]]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=limit,
                                 return_tensors="np", return_token_type_ids=False)
            ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
            dense = self._encode_batch(ids, mask)
            parts.append(SparseBatch.from_dense(dense, top_k=top_k, threshold=threshold))
        merged = SparseBatch.concat(parts)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return merged.select(inverse)


class TorchEncoder(Encoder):
    """PyTorch eager backend over a `SpladeModel` checkpoint."""

    backend = "torch"

    def __init__(self, model_dir: str | Path, device: str | None = None,
                 max_length: int | None = None) -> None:
        from splade.modeling import SpladeModel, model_identity

        model = SpladeModel.from_pretrained(model_dir)
        super().__init__(model.tokenizer, max_length or model.max_length, model_identity(model_dir))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    @property
    def device_description(self) -> str:
        return f"torch ({self.device})"

    @torch.inference_mode()
    def _encode_batch(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        ids = torch.from_numpy(input_ids).to(self.device)
        mask = torch.from_numpy(attention_mask).to(self.device)
        return self.model(ids, mask).float().cpu().numpy()


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
        return TorchEncoder(path, device=device, max_length=max_length)
    if backend == "onnx":
        from splade.export.onnx_encoder import OnnxEncoder

        return OnnxEncoder(path, device=device, max_length=max_length)
    raise at_option("--backend", f"unknown encoder backend {backend!r} (choose auto, torch or onnx)")
