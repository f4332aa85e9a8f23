"""The six loss components of the guide's section 3 (plus knowledge distillation), each returned by name.

All take `[batch, vocab]` SPLADE representations: `q` (queries), `p` (positives), `n` (hard negatives).
`SpladeLoss` computes every component once per batch and weighs it by the `LossWeights` the schedule
gives for the step (it holds no lambda of its own); the components are returned unweighted so each can be
logged on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splade.config import LossConfig

COMPONENTS = ("infonce", "self", "positive", "margin", "flops", "flops_doc", "min_act", "kd")


def similarity(a: Tensor, b: Tensor, kind: str) -> Tensor:
    """`[len(a), len(b)]` pairwise scores: `dot` (what an inverted index scores) or `cosine`."""
    if kind == "cosine":
        return F.normalize(a, dim=-1, eps=1e-8) @ F.normalize(b, dim=-1, eps=1e-8).T
    return a @ b.T


def infonce_loss(
    q: Tensor, docs: Tensor, temperature: float, kind: str, false_negatives: Tensor | None = None
) -> Tensor:
    """`-log(exp(sim(q,p+)/τ) / Σ exp(sim(q,d)/τ))`; `docs` = positives (row i belongs to query i) then hard
    negatives, so every query sees its positive, all hard negatives and the other positives.
    `false_negatives` `[B, 2B]` marks documents that also answer the query; they leave the denominator."""
    scores = similarity(q, docs, kind).float() / temperature
    if false_negatives is not None:
        scores = scores.masked_fill(false_negatives, float("-inf"))
    labels = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(scores, labels)


def token_activation_loss(q: Tensor, bag: Tensor, target: float | None = None) -> Tensor:
    """Mean over the tokens in `bag` of `-q` (the guide's self-reconstruction / positive activation), or,
    with a `target`, of `relu(target - q)`: pushed up to the target weight and no further."""
    gap = -q if target is None else torch.relu(target - q)
    return (gap * bag).sum() / bag.sum().clamp_min(1.0)


def triplet_margin_loss(q: Tensor, p: Tensor, n: Tensor, margin: float) -> Tensor:
    """`max(0, margin - cos(q,p) + cos(q,n))`, averaged over the batch."""
    pos = F.cosine_similarity(q, p, dim=-1, eps=1e-8)
    neg = F.cosine_similarity(q, n, dim=-1, eps=1e-8)
    return torch.relu(margin - pos + neg).mean()


def flops_loss(reps: Tensor, weights: Tensor | None = None) -> Tensor:
    """`Σ_j w_j · (mean_i reps_ij)²`: uniform (`w = 1`) or with per-token penalty weights (IDF-aware)."""
    mean_sq = reps.mean(dim=0).pow(2)
    return (mean_sq * weights).sum() if weights is not None else mean_sq.sum()


def min_activation_loss(q: Tensor, k: int, threshold: float) -> Tensor:
    """`max(0, threshold - mean(top_k(q)))` per text, averaged: keeps representations from collapsing."""
    top = torch.topk(q, k=min(k, q.shape[-1]), dim=-1).values
    return torch.relu(threshold - top.mean(dim=-1)).mean()


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(teacher || student) between softmaxed score rows, each row z-normalised first so a dense
    teacher's cosine scores and a sparse student's scores are on one scale."""

    def normalise(scores: Tensor) -> Tensor:
        return (scores - scores.mean(-1, keepdim=True)) / scores.std(-1, keepdim=True).clamp_min(1e-6)

    log_student = F.log_softmax(normalise(student.float()) / temperature, dim=-1)
    log_teacher = F.log_softmax(normalise(teacher.float()) / temperature, dim=-1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)


@dataclass(frozen=True)
class LossWeights:
    """The lambda of every component and the InfoNCE temperature for one step (from the schedule)."""

    temperature: float
    infonce: float
    self: float
    positive: float
    margin: float
    flops: float
    flops_doc: float
    min_act: float
    kd: float = 0.0

    def of(self, component: str) -> float:
        return float(getattr(self, component))


@dataclass
class LossOutput:
    """The weighted total and every component (unweighted) by name."""

    total: Tensor
    components: dict[str, Tensor]
    weights: LossWeights


class SpladeLoss(nn.Module):
    """Weighted sum of InfoNCE, self-reconstruction, positive activation, triplet margin, query and document
    FLOPS, min-activation and (with teacher scores) distillation."""

    def __init__(self, config: LossConfig, flops_weights: Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("flops_weights", flops_weights, persistent=False)

    def forward(
        self,
        q: Tensor,
        p: Tensor,
        n: Tensor,
        query_bag: Tensor,
        positive_bag: Tensor,
        weights: LossWeights,
        teacher_scores: Tensor | None = None,
        false_negatives: Tensor | None = None,
    ) -> LossOutput:
        """`teacher_scores` and `false_negatives` are `[batch, 2*batch]` over `[positives; negatives]`."""
        cfg = self.config
        docs = torch.cat([p, n], dim=0)
        target = cfg.activation_target
        parts = {
            "infonce": infonce_loss(q, docs, weights.temperature, cfg.similarity, false_negatives),
            "self": token_activation_loss(q, query_bag, target),
            "positive": token_activation_loss(q, positive_bag, target),
            "margin": triplet_margin_loss(q, p, n, cfg.margin),
            "flops": flops_loss(q, self.flops_weights),
            "flops_doc": flops_loss(docs, self.flops_weights),
            "min_act": min_activation_loss(q, cfg.min_act_k, cfg.min_act_threshold),
        }
        if teacher_scores is not None and weights.kd > 0:
            student = similarity(q, docs, cfg.similarity)
            temp = cfg.teacher.temperature if cfg.teacher else 1.0
            parts["kd"] = distillation_loss(student, teacher_scores.to(student.device), temp)
        total = sum(weights.of(name) * value.float() for name, value in parts.items())
        return LossOutput(total, parts, weights)
