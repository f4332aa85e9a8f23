"""What multiplies each term of a text's vector after the activation: the expansion weight, and BM25's
term-frequency saturation and length normalisation.

A max-pooled vocabulary projection weighs a token once, however often the text repeats it, and the same
in a short text as in a long one. BM25 gets both from its term-frequency part,
`tf · (k1 + 1) / (tf + K)` with `K = k1 · (1 - b + b · length / average_length)`. With `model.bm25`
every term of a text is multiplied by that part: an own token by its count's, an expansion term (a
token the text does not contain) by one occurrence's times the expansion weight. A text of average
length weighs a token it holds once by 1. On the query side the factor of a query's own tokens is the
same for every document, so rankings only change through its expansion terms.

Both factors are computed from the input ids alone (a scatter, exported to ONNX as ScatterElements), so
every encoder, export and index serves them as trained.

Documents may be served with expansion at a weight of their own (`doc_expansion_weight`): training scores
both sides at `expansion_weight`, and a served document's expansion terms are then multiplied by
`document_expansion_ratio`. Passages of one article share most words, so their expansion terms meeting a
query's are what a trained model ranks them by; a lower document weight keeps the text's own words first.
An inference-free model's queries do not expand, so its documents are always served as trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class TermSaturation:
    """BM25's term-frequency part: `k1` (saturation), `b` (length normalisation) and the average length
    (own tokens, specials excluded) of the training documents at the served document length."""

    k1: float
    b: float
    average_length: float

    def as_json(self) -> dict[str, float]:
        return {"k1": self.k1, "b": self.b, "average_length": self.average_length}

    @classmethod
    def from_json(cls, raw: Any) -> TermSaturation:
        """Read `splade_config.json`'s `bm25` object; ValueError names what is wrong."""
        if not isinstance(raw, dict) or set(raw) != {"k1", "b", "average_length"}:
            raise ValueError(f"bm25 {raw!r} is not an object of k1, b and average_length")
        values = {name: raw[name] for name in ("k1", "b", "average_length")}
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values.values()):
            raise ValueError(f"bm25 {raw!r} holds a value that is not a number")
        if values["k1"] <= 0 or not 0.0 <= values["b"] <= 1.0 or values["average_length"] <= 0:
            raise ValueError(f"bm25 {raw!r}: needs k1 > 0, 0 <= b <= 1 and average_length > 0")
        return cls(float(values["k1"]), float(values["b"]), float(values["average_length"]))


def bag_of_tokens(input_ids: Tensor, attention_mask: Tensor, width: int) -> Tensor:
    """`[batch, width]` 0/1 indicator of the token ids each text contains.

    A plain scatter (it exports to ONNX as ScatterElements): every kept position of one id writes 1;
    padded positions write 0, but only at the padding id, which is a special token and never active.
    """
    bag = torch.zeros(input_ids.shape[0], width, device=input_ids.device, dtype=torch.float32)
    return bag.scatter(1, input_ids, attention_mask.to(bag.dtype))


def token_counts(input_ids: Tensor, attention_mask: Tensor, width: int) -> Tensor:
    """`[batch, width]` how often each text holds each token id (padded positions add 0)."""
    counts = torch.zeros(input_ids.shape[0], width, device=input_ids.device, dtype=torch.float32)
    return counts.scatter_add(1, input_ids, attention_mask.to(counts.dtype))


def document_expansion_ratio(
    expansion_weight: float, doc_expansion_weight: float | None, inference_free: bool = False
) -> float | None:
    """What a served document's expansion terms are multiplied by (None: 1, served as trained). An
    inference-free model's queries do not expand: its documents carry all the expansion, as trained."""
    if (doc_expansion_weight is None or doc_expansion_weight == expansion_weight or expansion_weight == 0.0
            or inference_free):
        return None
    return doc_expansion_weight / expansion_weight


def scale_expansion(reps: Tensor, input_ids: Tensor, attention_mask: Tensor, ratio: float) -> Tensor:
    """`reps` with every term a text does not contain multiplied by `ratio` (its own tokens unchanged)."""
    own = bag_of_tokens(input_ids, attention_mask, reps.shape[1]).to(reps.dtype)
    return reps * (ratio + (1.0 - ratio) * own)


def term_scales(
    input_ids: Tensor,
    attention_mask: Tensor,
    keep: Tensor,
    expansion_weight: float,
    saturation: TermSaturation | None,
) -> Tensor | None:
    """`[batch, width]` factor of every term of each text (None: all 1, plain SPLADE). `keep` marks the ids
    that count (specials and padded vocabulary rows do not)."""
    width = keep.shape[0]
    if saturation is None:
        if expansion_weight >= 1.0:
            return None
        own = bag_of_tokens(input_ids, attention_mask, width)
        return expansion_weight + (1.0 - expansion_weight) * own
    counts = token_counts(input_ids, attention_mask, width) * keep.to(torch.float32)
    length = counts.sum(1, keepdim=True)
    k1, b = saturation.k1, saturation.b
    norm = k1 * (1.0 - b + b * length / saturation.average_length)
    own = counts / (counts + norm)
    return (k1 + 1.0) * torch.where(counts > 0, own, expansion_weight / (1.0 + norm))
