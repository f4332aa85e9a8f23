"""Token weight tables saved as JSON ({token: weight}): an inference-free model's query side (`idf.json`)
and a lexical floor (`lexical_floor.json`).

The same file serves sentence-transformers' `SparseStaticEmbedding` and OpenSearch's `SPARSE_TOKENIZE`
models, so every tool weighs a query's tokens alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from splade.atomic import write_json
from splade.errors import SpladeError
from splade.model.artifact import QUERY_WEIGHTS_NAME


def write_token_weights(
    folder: str | Path, name: str, tokenizer: PreTrainedTokenizerBase, weights: Tensor
) -> None:
    """`folder/name`: a JSON object of every token with a positive weight."""
    names = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    values = weights.detach().float().cpu().numpy()
    table = {name: float(values[i]) for i, name in enumerate(names) if i < len(values) and values[i] > 0}
    write_json(Path(folder) / name, table)


def read_token_weights(
    folder: str | Path, name: str, tokenizer: PreTrainedTokenizerBase, width: int
) -> Tensor:
    """The `[width]` weight table of `folder/name` (tokens absent from it weigh 0)."""
    path = Path(folder) / name
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpladeError(f"{path}: missing (splade_config.json names this token weight table)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpladeError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(table, dict):
        raise SpladeError(f"{path}: expected a JSON object of token -> weight")
    ids = tokenizer.convert_tokens_to_ids(list(table))
    weights = np.zeros(width, dtype=np.float32)
    for (token, value), token_id in zip(table.items(), ids, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpladeError(f"{path}: the weight of {token!r} is not a number")
        if token_id is not None and 0 <= token_id < width:
            weights[token_id] = float(value)
    return torch.from_numpy(weights)


def write_query_weights(folder: str | Path, tokenizer: PreTrainedTokenizerBase, weights: Tensor) -> None:
    """`idf.json`: an inference-free model's query weights."""
    write_token_weights(folder, QUERY_WEIGHTS_NAME, tokenizer, weights)


def read_query_weights(folder: str | Path, tokenizer: PreTrainedTokenizerBase, width: int) -> Tensor:
    """The `[width]` query weight table of `folder/idf.json`."""
    return read_token_weights(folder, QUERY_WEIGHTS_NAME, tokenizer, width)


def read_static_weights(folder: str | Path, width: int) -> Tensor:
    """The `[width]` table of a sentence-transformers `SparseStaticEmbedding` folder (its `weight`)."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise SpladeError(f"{folder}: no model.safetensors or pytorch_model.bin (the query weight table)")
    weight = state.get("weight") if isinstance(state, dict) else None
    if weight is None or weight.ndim != 1:
        raise SpladeError(f"{folder}: expected one [vocab] tensor named 'weight' (SparseStaticEmbedding)")
    if weight.shape[0] > width:
        raise SpladeError(f"{folder}: the query table has {weight.shape[0]} weights, the model {width} terms")
    table = torch.zeros(width)
    table[: weight.shape[0]] = weight.float()
    return table


def query_length(tokens: int | None, tokenizer: PreTrainedTokenizerBase) -> int | None:
    """splade's query length (special tokens included) for a table that keeps `tokens` tokens without."""
    return None if tokens is None else tokens + tokenizer.num_special_tokens_to_add(pair=False)


def load_query_table(folder: str | Path) -> tuple[PreTrainedTokenizerBase, np.ndarray, int] | None:
    """An inference-free folder's tokenizer, query weight table and query length (None: a siamese model),
    without loading the masked LM: a splade folder's `idf.json`, or a sentence-transformers router's
    `SparseStaticEmbedding`."""
    from transformers import AutoTokenizer

    from splade.model.artifact import SpladeArtifact, backbone_dir
    from splade.model.st_format import read_module_files

    folder = Path(folder)
    artifact = SpladeArtifact.read(folder)
    st_model = read_module_files(folder) if artifact is None else None
    own_table = artifact.query_encoder == "idf" if artifact else st_model is not None and st_model.query_table
    if not own_table:
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(backbone_dir(folder)))
    except (OSError, ValueError) as exc:
        raise SpladeError(f"{folder}: cannot load the tokenizer ({exc})") from None
    if artifact is not None:
        width = artifact.vocab_size or len(tokenizer)
        return tokenizer, read_query_weights(folder, tokenizer, width).numpy(), artifact.query_length
    table = read_static_weights(st_model.query_table, len(tokenizer)).clamp_min(0.0)
    table[[i for i in tokenizer.all_special_ids if 0 <= i < len(table)]] = 0.0
    length = query_length(st_model.query_tokens, tokenizer) or st_model.max_length
    return tokenizer, table.numpy(), int(length or min(tokenizer.model_max_length, 512))
