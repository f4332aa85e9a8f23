"""Loading a masked-LM backbone for SPLADE: any Hugging Face MLM (BERT, XLM-R, ModernBERT, ...).

A backbone saved without an MLM head (an encoder such as multilingual-e5) gets one whose decoder is
tied to the input embeddings and whose transform starts as the identity.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch
import transformers
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers import logging as hf_logging

from splade.atomic import write_json
from splade.errors import SpladeError
from splade.model.folder import check_model_folder

log = logging.getLogger(__name__)
DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "embedding_dropout",
    "mlp_dropout",
    "attention_dropout",
)
HEAD_TRANSFORMS = ("transform.dense", "head.dense")  # BERT; XLM-R (`lm_head.dense`) and ModernBERT
SILENT_BIAS = -1.0e4  # a saved decoder bias that keeps an id inactive whatever the text (exact in fp16)
# transformers 5 names a plain fast tokenizer's class `TokenizersBackend`, which transformers 4 lacks;
# both load the name transformers 4 wrote
PORTABLE_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of every special token (CLS, SEP, PAD, MASK, UNK, ...): these are never active."""
    ids = set(tokenizer.all_special_ids)
    return sorted(i for i in ids if i is not None and i >= 0)


def _init_missing_head(mlm: nn.Module, missing: list[str]) -> bool:
    """Start a freshly built MLM transform as identity, so the tied decoder first sees raw hidden states.
    True when the backbone had no MLM head (one was built)."""
    names = (key.removesuffix(".weight").removesuffix(".bias") for key in missing)
    if not any(name.endswith(HEAD_TRANSFORMS) for name in names):
        return False
    for name, module in mlm.named_modules():
        if name.endswith(HEAD_TRANSFORMS) and isinstance(module, nn.Linear):
            with torch.no_grad():
                if module.weight.shape[0] == module.weight.shape[1]:
                    module.weight.copy_(torch.eye(module.weight.shape[0]))
                if module.bias is not None:
                    module.bias.zero_()
    log.info("backbone has no MLM head: built one with the decoder tied to the input embeddings")
    return True


def dtype_argument(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """The `from_pretrained` keyword that sets the weights' dtype: `dtype` from transformers 4.56 on,
    `torch_dtype` before (transformers 5 warns about the old name)."""
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def quiet_transformers() -> None:
    """Loading or saving a model prints neither transformers' per-weight progress bars nor its load
    report (each stage shows one bar of its own); the hub's download bars stay as they are."""
    from huggingface_hub import utils as hub_utils

    downloads_shown = not hub_utils.are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if downloads_shown:
        hub_utils.enable_progress_bars()


class Backbone(NamedTuple):
    """A loaded masked LM, its tokenizer, and whether its MLM head was built here (not trained)."""

    mlm: nn.Module
    tokenizer: PreTrainedTokenizerBase
    head_built: bool


def load_backbone(
    name_or_path: str | Path, dropout: float | None = None, dtype: torch.dtype = torch.float32
) -> Backbone:
    """The masked LM and its tokenizer, by hub id or path."""
    name = str(name_or_path)
    if Path(name).is_dir():
        check_model_folder(name)
    try:
        config = AutoConfig.from_pretrained(name)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise SpladeError(f"model {name!r}: cannot load config/tokenizer ({exc})") from exc
    if dropout is not None:
        for key in DROPOUT_KEYS:
            if hasattr(config, key):
                setattr(config, key, dropout)
    # a SPLADE start rescales each vocabulary row (see `lexical_start`), so a saved splade model may carry
    # its own decoder; every other backbone's head is tied to its input embeddings
    untied = _saved_by_splade(Path(name)) and config.tie_word_embeddings is False
    config.tie_word_embeddings = not untied
    quiet_transformers()  # and a backbone without an MLM head is expected, not an error
    mlm, info = AutoModelForMaskedLM.from_pretrained(
        name, config=config, output_loading_info=True, **dtype_argument(dtype)
    )
    return Backbone(mlm, tokenizer, _init_missing_head(mlm, list(info.get("missing_keys", []))))


def _saved_by_splade(folder: Path) -> bool:
    """A folder splade saved: it holds `splade_config.json`, or it is the masked-LM subfolder that an
    inference-free model's `splade_config.json` names."""
    if (folder / "splade_config.json").is_file():
        return True
    parent = folder.parent / "splade_config.json"
    if not parent.is_file():
        return False
    try:
        return json.loads(parent.read_text(encoding="utf-8")).get("backbone_path") == folder.name
    except (OSError, ValueError, AttributeError):
        return False


def _parent_of(root: nn.Module, target: nn.Module) -> tuple[nn.Module, str] | None:
    for module in root.modules():
        for child_name, child in module.named_children():
            if child is target:
                return module, child_name
    return None


def detach_decoder(mlm: nn.Module) -> nn.Linear | None:
    """Take the vocabulary projection out of the MLM (an identity stands in its place) and return it, so
    the MLM returns the head's hidden states and SPLADE pools the projection itself. None (and the MLM
    left whole) when the projection is not a `Linear` over the last axis."""
    decoder = mlm.get_output_embeddings()
    found = _parent_of(mlm, decoder) if isinstance(decoder, nn.Linear) else None
    if found is None:
        return None
    parent, name = found
    # BERT keeps the decoder's bias on the head (`predictions.bias`), where an untied head loads it: one
    # parameter again
    head_bias = getattr(parent, "bias", None)
    bias = decoder.bias
    if isinstance(head_bias, nn.Parameter) and bias is not None and head_bias is not bias and (
        head_bias.shape == bias.shape
    ):
        decoder.bias = head_bias
    setattr(parent, name, nn.Identity())
    mlm._splade_decoder_slot = (parent, name)  # noqa: SLF001 - where `attached_decoder` puts it back
    return decoder


@contextlib.contextmanager
def attached_decoder(mlm: nn.Module, decoder: nn.Linear | None) -> Iterator[nn.Module]:
    """The MLM with its vocabulary projection back in place (for saving it as a Hugging Face model)."""
    slot = getattr(mlm, "_splade_decoder_slot", None)
    if decoder is None or slot is None:
        yield mlm
        return
    parent, name = slot
    setattr(parent, name, decoder)
    try:
        yield mlm
    finally:
        setattr(parent, name, nn.Identity())


def token_limit(tokenizer: PreTrainedTokenizerBase, mlm: nn.Module) -> int:
    """The longest input a backbone takes: its tokenizer's `model_max_length` when it sets one that
    fits the position embeddings, else at most 512."""
    positions = int(getattr(mlm.config, "max_position_embeddings", None) or 512)
    limit = tokenizer.model_max_length
    return int(limit) if limit and limit <= positions else min(positions, 512)


@contextlib.contextmanager
def silenced_ids(decoder: nn.Linear | None, ids: Tensor) -> Iterator[bool]:
    """The decoder's bias at `ids` pushed to `SILENT_BIAS` for the duration (for saving): the saved model
    never activates them, also where splade's vocabulary mask is not applied (sentence-transformers).
    Yields False, changing nothing, when the decoder has no bias to carry it."""
    if decoder is None or decoder.bias is None:
        yield False
        return
    bias = decoder.bias
    kept = bias.detach()[ids].clone()
    with torch.no_grad():
        bias[ids] = SILENT_BIAS
    try:
        yield True
    finally:
        with torch.no_grad():
            bias[ids] = kept


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> None:
    """Save the tokenizer so that every transformers version splade supports loads it."""
    tokenizer.save_pretrained(str(directory))
    path = Path(directory) / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    portable = PORTABLE_TOKENIZER_CLASSES.get(config.get("tokenizer_class"))
    if portable:
        write_json(path, {**config, "tokenizer_class": portable})
