"""The SPLADE model: an MLM backbone, `log(1 + ReLU(logits))`, max-pooled over the kept positions."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers import logging as hf_logging

from splade.errors import SpladeError

SPLADE_CONFIG_NAME = "splade_config.json"
log = logging.getLogger(__name__)


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of every special token (CLS, SEP, PAD, MASK, UNK, ...): these are never active."""
    ids = set(tokenizer.all_special_ids)
    return sorted(i for i in ids if i is not None and i >= 0)


def _init_missing_head(mlm: nn.Module, missing: list[str]) -> None:
    """Start a freshly built MLM transform as identity, so the tied decoder first sees raw hidden states."""
    head_names = ("transform.dense", "head.dense")  # BERT; XLM-R (`lm_head.dense`) and ModernBERT
    if not any(key.removesuffix(".weight").removesuffix(".bias").endswith(head_names) for key in missing):
        return
    for name, module in mlm.named_modules():
        if name.endswith(head_names) and isinstance(module, nn.Linear):
            with torch.no_grad():
                if module.weight.shape[0] == module.weight.shape[1]:
                    module.weight.copy_(torch.eye(module.weight.shape[0]))
                if module.bias is not None:
                    module.bias.zero_()
    log.info("backbone has no MLM head: built one with the decoder tied to the input embeddings")


def weights_fingerprint(directory: str | Path) -> str:
    """A quick fingerprint of a checkpoint's weight files (names, sizes, first and last MiB)."""
    digest = hashlib.sha256()
    files = sorted(Path(directory).glob("*.safetensors")) + sorted(Path(directory).glob("*.bin"))
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


def model_identity(name_or_path: str | Path) -> str:
    """What an index records as "the model": the same for a checkpoint and its ONNX export.

    `splade_config.json`'s `model_id` when present, else a weights fingerprint; a hub id is its own name.
    """
    directory = Path(name_or_path)
    if not directory.is_dir():
        return str(name_or_path)
    saved = directory / SPLADE_CONFIG_NAME
    if saved.is_file():
        model_id = json.loads(saved.read_text()).get("model_id")
        if model_id:
            return str(model_id)
    return f"{directory.resolve().name}@{weights_fingerprint(directory)}"


class SpladeModel(nn.Module):
    """`SPLADE(x) = max_i log(1 + ReLU(MLM(Encoder(x))_i))` over the positions the attention mask keeps."""

    def __init__(self, mlm: nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int = 128) -> None:
        super().__init__()
        self.mlm = mlm
        self.tokenizer = tokenizer
        self.max_length = max_length
        vocab_size = int(mlm.get_output_embeddings().weight.shape[0])
        keep = torch.ones(vocab_size)
        keep[[i for i in special_token_ids(tokenizer) if i < vocab_size]] = 0.0
        keep[len(tokenizer):] = 0.0  # a vocabulary padded past the tokenizer: those ids name no token
        self.register_buffer("vocab_keep", keep, persistent=False)

    @property
    def vocab_size(self) -> int:
        return int(self.vocab_keep.shape[0])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Return `[batch, vocab]` non-negative term weights."""
        logits = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits
        # log(1 + ReLU(.)) is monotone, so max-pooling the logits first gives the same values and
        # gradients while applying the activation to [batch, vocab] instead of [batch, seq, vocab].
        masked = logits.masked_fill(attention_mask.unsqueeze(-1) == 0, torch.finfo(logits.dtype).min)
        pooled = masked.max(dim=1).values
        return torch.log1p(torch.relu(pooled)) * self.vocab_keep.to(pooled.dtype)

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenize texts into padded `input_ids` / `attention_mask` tensors."""
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_length or self.max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )

    @torch.no_grad()
    def encode(self, texts: list[str], max_length: int | None = None) -> torch.Tensor:
        """Dense `[batch, vocab]` representation of `texts` (inference helper)."""
        batch = self.tokenize(texts, max_length)
        device = self.vocab_keep.device
        return self(batch["input_ids"].to(device), batch["attention_mask"].to(device))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        max_length: int = 128,
        dropout: float | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> SpladeModel:
        """Load any masked-LM backbone (BERT, XLM-R, ModernBERT, ...) by hub id or path.

        Backbones saved without an MLM head get one whose decoder is tied to the input embeddings.
        """
        name = str(name_or_path)
        try:
            config = AutoConfig.from_pretrained(name)
            tokenizer = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as exc:
            raise SpladeError(f"model {name!r}: cannot load config/tokenizer ({exc})") from exc
        if dropout is not None:
            for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "embedding_dropout",
                        "mlp_dropout", "attention_dropout"):
                if hasattr(config, key):
                    setattr(config, key, dropout)
        config.tie_word_embeddings = True
        hf_logging.set_verbosity_error()  # a backbone without an MLM head is expected, not an error
        mlm, info = AutoModelForMaskedLM.from_pretrained(
            name, config=config, dtype=dtype, output_loading_info=True
        )
        _init_missing_head(mlm, list(info.get("missing_keys", [])))
        saved = Path(name) / SPLADE_CONFIG_NAME
        if saved.is_file():
            max_length = int(json.loads(saved.read_text()).get("max_length", max_length))
        return cls(mlm, tokenizer, max_length=max_length)

    def save_pretrained(self, directory: str | Path) -> None:
        """Save backbone, tokenizer and `splade_config.json` so any stage can load it by path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.mlm.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        meta = {
            "format": "splade",
            "model_id": f"splade-{weights_fingerprint(directory)}",
            "pooling": "max",
            "activation": "log1p_relu",
            "max_length": self.max_length,
            "vocab_size": self.vocab_size,
            "special_token_ids": special_token_ids(self.tokenizer),
        }
        (directory / SPLADE_CONFIG_NAME).write_text(json.dumps(meta, indent=2))
