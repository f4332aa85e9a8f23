"""Token strings for vocabulary ids, named exactly as OpenSearch ML Commons names them.

ML Commons' sparse translator turns each non-zero output id into `tokenizer.decode([id], skip special)`
with the Hugging Face tokenizers library, so `▁치료` (SentencePiece) is `치료` and `Ġhello` (byte-level
BPE) is ` hello`. An index written by `splade index`, an ML Commons ingest pipeline, a `query_tokens`
query and an `idf.json` must all use that one naming. Several ids can decode to the same string (`▁치료`
and `치료`); their weights are merged by taking the largest, here and inside the ML Commons package.
Special tokens and ids past the tokenizer (a vocabulary padded for speed) are named `""`: never indexed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def token_names(tokenizer: PreTrainedTokenizerBase, width: int) -> list[str]:
    """The ML Commons string of each id in `range(width)`; `""` for special and out-of-tokenizer ids."""
    known = min(width, len(tokenizer))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    singles = [[i] for i in range(known)]
    if backend is not None:
        names = backend.decode_batch(singles, skip_special_tokens=True)
    else:
        names = [tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
                 for ids in singles]
    special = set(tokenizer.all_special_ids)
    names = ["" if i in special else name for i, name in enumerate(names)]
    return names + [""] * (width - known)


def carrier_ids(names: Sequence[str]) -> np.ndarray:
    """For every id, the id that carries its name's weight (the first id with that name; itself if unique)."""
    first: dict[str, int] = {}
    carriers = np.arange(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        carriers[i] = first.setdefault(name, i)
    return carriers


def has_duplicates(names: Sequence[str]) -> bool:
    """Whether two named ids share a string (then their weights must be merged)."""
    named = [name for name in names if name]
    return len(set(named)) != len(named)


def named_weights(ids: Iterable[int], weights: Iterable[float], names: Sequence[str],
                  key: Callable[[str], str] = str) -> dict[str, float]:
    """`{key(name): weight}` of one sparse row: ids sharing a name keep the largest weight, unnamed ids
    (special tokens, `""`) are left out."""
    out: dict[str, float] = {}
    for i, w in zip(ids, weights, strict=True):
        if names[i]:
            name = key(names[i])
            out[name] = max(out.get(name, 0.0), float(w))
    return out


def merge_by_name(dense: np.ndarray, carriers: np.ndarray) -> np.ndarray:
    """`[batch, vocab]` weights with each name's largest weight moved onto its carrier id, others zero."""
    merged = np.zeros_like(dense)
    for row, out in zip(dense, merged, strict=True):
        np.maximum.at(out, carriers, row)
    return merged
