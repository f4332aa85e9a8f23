"""The PyTorch backend of `Encoder`: a `SpladeModel` checkpoint in eager mode, on a GPU when there is one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from splade.encoders.base import Encoder
from splade.model import SpladeModel, model_identity
from splade.model.pooling import default_pooling


class TorchEncoder(Encoder):
    """PyTorch eager backend over a `SpladeModel` checkpoint."""

    backend = "torch"

    def __init__(self, model_dir: str | Path, device: str | None = None,
                 max_length: int | None = None) -> None:
        model = SpladeModel.from_pretrained(model_dir)
        table = None if model.query_weights is None else model.query_weights.detach().float().numpy()
        super().__init__(model.tokenizer, max_length or model.max_length, model_identity(model_dir),
                         model.similarity, model.query_max_length, table)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.pooling = default_pooling(self.device)  # the fastest exact forward on this device

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
        return self.model(ids, mask, pooling=self.pooling).float().cpu().numpy()
