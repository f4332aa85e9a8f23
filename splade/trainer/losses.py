"""The six loss components of the guide's section 3 (plus knowledge distillation), each returned by name.

All take `[batch, vocab]` SPLADE representations: `q` (anchor / query), `p` (positive), `n` (hard negative).
`SpladeLoss` computes every component once per batch and weights it by its lambda; the per-component
values are returned unweighted so each can be logged on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splade.config import LossConfig

COMPONENTS = ("infonce", "self", "positive", "margin", "flops", "min_act", "kd")


def similarity(a: Tensor, b: Tensor, kind: str) -> Tensor:
    """`[len(a), len(b)]` pairwise scores: `cosine` or `dot`."""
    if kind == "cosine":
        return F.normalize(a, dim=-1, eps=1e-8) @ F.normalize(b, dim=-1, eps=1e-8).T
    return a @ b.T


def bag_of_tokens(input_ids: Tensor, attention_mask: Tensor, vocab_keep: Tensor) -> Tensor:
    """`[batch, vocab]` 0/1 indicator of the (non-special) tokens each text contains."""
    bag = torch.zeros(
        input_ids.shape[0], vocab_keep.shape[0], device=input_ids.device, dtype=vocab_keep.dtype
    )
    bag.scatter_reduce_(1, input_ids, attention_mask.to(bag.dtype), reduce="amax")
    return bag * vocab_keep


def infonce_loss(q: Tensor, docs: Tensor, temperature: float, kind: str) -> Tensor:
    """`-log(exp(sim(q,p+)/τ) / Σ exp(sim(q,d)/τ))`; `docs` = positives (row i belongs to query i) then
    hard negatives, so every query sees its positive, all hard negatives and the other positives."""
    scores = similarity(q, docs, kind) / temperature
    labels = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(scores.float(), labels)


def token_activation_loss(q: Tensor, bag: Tensor) -> Tensor:
    """`-mean(q[token_ids])` over the tokens in `bag` (self-reconstruction with the query's own tokens,
    positive activation with the positive's tokens)."""
    return -(q * bag).sum() / bag.sum().clamp_min(1.0)


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


@dataclass
class LossOutput:
    """The weighted total and every component (unweighted, detached-friendly) by name."""

    total: Tensor
    components: dict[str, Tensor]
    weights: dict[str, float]


class SpladeLoss(nn.Module):
    """Weighted sum of InfoNCE, self-reconstruction, positive activation, triplet margin, FLOPS,
    min-activation and (when `lambda_kd > 0`) distillation."""

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
        temperature: float,
        lambda_infonce: float,
        flops_scale: float = 1.0,
        teacher_scores: Tensor | None = None,
    ) -> LossOutput:
        """`flops_scale` in [0, 1] anneals both FLOPS lambdas; `teacher_scores` is `[batch, 2*batch]`."""
        cfg = self.config
        docs = torch.cat([p, n], dim=0)
        weights = {
            "infonce": lambda_infonce,
            "self": cfg.lambda_self,
            "positive": cfg.lambda_positive,
            "margin": cfg.lambda_margin,
            "flops": cfg.lambda_flops * flops_scale,
            "flops_doc": cfg.lambda_flops_doc * flops_scale,
            "min_act": cfg.lambda_min_act,
        }
        parts = {
            "infonce": infonce_loss(q, docs, temperature, cfg.similarity),
            "self": token_activation_loss(q, query_bag),
            "positive": token_activation_loss(q, positive_bag),
            "margin": triplet_margin_loss(q, p, n, cfg.margin),
            "flops": flops_loss(q, self.flops_weights),
            "flops_doc": flops_loss(docs, self.flops_weights),
            "min_act": min_activation_loss(q, cfg.min_act_k, cfg.min_act_threshold),
        }
        if teacher_scores is not None and cfg.lambda_kd > 0:
            student = similarity(q, docs, cfg.similarity)
            temp = cfg.teacher.temperature if cfg.teacher else 1.0
            parts["kd"] = distillation_loss(student, teacher_scores.to(student.device), temp)
            weights["kd"] = cfg.lambda_kd
        total = sum(weights[name] * value.float() for name, value in parts.items())
        return LossOutput(total, parts, weights)
