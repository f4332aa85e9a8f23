"""The PyTorch backend of `Encoder`: a `SpladeModel` in eager mode, on a GPU when there is one.

Built from a saved folder (serving) or from a live model (`from_model`: dev selection while training), so
what training selects is encoded exactly as what is served.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from splade.encoders.base import Encoder
from splade.model import SpladeModel, model_identity
from splade.model.pooling import serving_pooling


class TorchEncoder(Encoder):
    """PyTorch eager backend over a `SpladeModel`."""

    backend = "torch"

    def __init__(
        self, model_dir: str | Path, device: str | None = None, max_length: int | None = None
    ) -> None:
        model = SpladeModel.from_pretrained(model_dir)
        device_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._attach(model.to(device_).eval(), model_identity(model_dir), max_length)

    @classmethod
    def from_model(cls, model: SpladeModel, name: str = "training") -> TorchEncoder:
        """An encoder over a live model (left in the mode it is in: the caller sets eval / train)."""
        encoder = cls.__new__(cls)
        encoder._attach(model, name, None)
        return encoder

    def _attach(self, model: SpladeModel, name: str, max_length: int | None) -> None:
        table = None if model.query_weights is None else model.query_weights.detach().float().cpu().numpy()
        super().__init__(
            model.tokenizer,
            max_length or model.max_length,
            name,
            model.similarity,
            model.query_max_length,
            table,
            model.document_expansion_ratio,
        )
        self.model = model
        self.device = model.vocab_keep.device
        self.pooling: str | None = None  # None: per batch, the fastest exact forward (`serving_pooling`)

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
        pooling = self.pooling or serving_pooling(self.device, ids.shape[1])
        return self.model(ids, mask, pooling=pooling).float().cpu().numpy()
