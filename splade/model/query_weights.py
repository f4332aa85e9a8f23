"""An inference-free model's query side: one weight per token, saved as `idf.json` ({token: weight}).

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


def write_query_weights(folder: str | Path, tokenizer: PreTrainedTokenizerBase, weights: Tensor) -> None:
    """`idf.json` of every token with a positive weight."""
    names = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    values = weights.detach().float().cpu().numpy()
    table = {name: float(values[i]) for i, name in enumerate(names) if i < len(values) and values[i] > 0}
    write_json(Path(folder) / QUERY_WEIGHTS_NAME, table)


def read_query_weights(folder: str | Path, tokenizer: PreTrainedTokenizerBase, width: int) -> Tensor:
    """The `[width]` weight table of `folder/idf.json` (tokens absent from it weigh 0)."""
    path = Path(folder) / QUERY_WEIGHTS_NAME
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpladeError(f"{path}: missing (an inference-free model's query weights)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpladeError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(table, dict):
        raise SpladeError(f"{path}: expected a JSON object of token -> weight")
    ids = tokenizer.convert_tokens_to_ids(list(table))
    weights = np.zeros(width, dtype=np.float32)
    for token_id, value in zip(ids, table.values(), strict=True):
        if token_id is not None and 0 <= token_id < width:
            weights[token_id] = float(value)
    return torch.from_numpy(weights)
