"""The loss terms: the guide's six (section 3), distillation and the document FLOPS term, each one small
function registered by name.

Every term reads the batch's representations from one `LossInputs` and returns a scalar, or None where it
does not apply (no teacher scores; the query side of an inference-free model, whose cost is fixed by its
weight table). `SpladeLoss` computes each term with a weight above zero once per batch, weighs it by the
`LossWeights` the schedule gives for the step (it holds no lambda of its own), and returns the terms
unweighted so each can be logged on its own (the guide's terms are computed at weight 0 too).

A new term is one decorated function here (or in any imported module) plus its weight in the YAML:

    @loss_term("l1_doc")
    def l1_doc(x: LossInputs) -> Tensor:
        return x.docs.sum(1).mean()

    loss: {terms: {l1_doc: {weight: 0.01}}}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splade.config import LossConfig
from splade.errors import SpladeError

LossTerm = Callable[["LossInputs"], Tensor | None]
TERMS: dict[str, LossTerm] = {}
# the guide's terms are cheap: computed (and logged) every step, also at weight 0 or in a warm-up
LOGGED = ("infonce", "self", "positive", "margin", "flops", "flops_doc", "min_act")


def loss_term(name: str) -> Callable[[LossTerm], LossTerm]:
    """Register a loss term under `name` (its weight: `loss.lambda_<name>` or `loss.terms.<name>`)."""

    def register(function: LossTerm) -> LossTerm:
        TERMS[name] = function
        return function

    return register


def similarity(a: Tensor, b: Tensor, kind: str) -> Tensor:
    """`[len(a), len(b)]` pairwise scores: `dot` (what an inverted index scores) or `cosine`."""
    if kind == "cosine":
        return F.normalize(a, dim=-1, eps=1e-8) @ F.normalize(b, dim=-1, eps=1e-8).T
    return a @ b.T


@dataclass
class LossInputs:
    """One batch as every term sees it. `docs` = positives (row i belongs to query i) then hard negatives;
    `teacher_scores` and `false_negatives` are `[batch, 2*batch]` over `docs`."""

    q: Tensor
    p: Tensor
    n: Tensor
    query_bag: Tensor
    positive_bag: Tensor
    config: LossConfig
    temperature: float
    flops_weights: Tensor | None = None
    teacher_scores: Tensor | None = None
    false_negatives: Tensor | None = None
    queries_by_table: bool = False  # inference-free: queries are a weight table's entries
    # `[batch, vocab]` / `[2*batch, vocab]` what the model multiplied each term of the queries / `docs` by
    # after the activation (the expansion weight, BM25's term weighting); None: nothing
    query_scales: Tensor | None = None
    doc_scales: Tensor | None = None
    # `[batch, vocab]` / `[2*batch, vocab]` what the model added to each term after scaling it (a lexical
    # floor on own tokens); None: nothing
    query_offsets: Tensor | None = None
    doc_offsets: Tensor | None = None

    @property
    def docs(self) -> Tensor:
        return torch.cat([self.p, self.n], dim=0)

    def activations(self, reps: Tensor, scales: Tensor | None, offsets: Tensor | None = None) -> Tensor:
        """What the FLOPS terms price (`loss.flops_on`): `reps` as served, or the encoder's activations
        behind them, before the model's term scales multiplied them and its lexical floor was added (an
        expansion term at weight 0.5 then pays for its activation in full, and the floor, fixed, costs
        the encoder nothing)."""
        if self.config.flops_on == "served":
            return reps
        if offsets is not None:
            reps = reps - offsets
        return reps if scales is None else reps / scales.clamp_min(1e-6)  # a term scaled by 0 stays 0

    def scores(self) -> Tensor:
        """`[batch, 2*batch]` query x document scores as the model is served."""
        return similarity(self.q, self.docs, self.config.similarity).float()


def infonce_loss(
    q: Tensor, docs: Tensor, temperature: float, kind: str, false_negatives: Tensor | None = None
) -> Tensor:
    """`-log(exp(sim(q,p+)/τ) / Σ exp(sim(q,d)/τ))`; `docs` = positives (row i belongs to query i) then hard
    negatives, so every query sees its positive, all hard negatives and the other positives.
    `false_negatives` `[B, 2B]` marks documents that also answer the query; they leave the denominator."""
    scores = similarity(q, docs, kind).float() / temperature
    if false_negatives is not None:
        scores = scores.masked_fill(false_negatives, float("-inf"))
    labels = torch.arange(scores.shape[0], device=scores.device)
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
    """KL(teacher || student) between score rows: the teacher's scores (already on [0, 1] per query) over
    `temperature`, the student's raw scores. Its gradient, `softmax(student) - softmax(teacher / τ)`, has
    InfoNCE's form and scale, so the two terms weigh what their lambdas say."""
    log_student = F.log_softmax(student.float(), dim=-1)
    log_teacher = F.log_softmax(teacher.float() / temperature, dim=-1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)


@loss_term("infonce")
def _infonce(x: LossInputs) -> Tensor:
    return infonce_loss(x.q, x.docs, x.temperature, x.config.similarity, x.false_negatives)


@loss_term("self")
def _self(x: LossInputs) -> Tensor | None:
    return None if x.queries_by_table else token_activation_loss(x.q, x.query_bag, x.config.activation_target)


@loss_term("positive")
def _positive(x: LossInputs) -> Tensor:
    return token_activation_loss(x.q, x.positive_bag, x.config.activation_target)


@loss_term("margin")
def _margin(x: LossInputs) -> Tensor:
    return triplet_margin_loss(x.q, x.p, x.n, x.config.margin)


@loss_term("flops")
def _flops(x: LossInputs) -> Tensor | None:
    return None if x.queries_by_table else flops_loss(
        x.activations(x.q, x.query_scales, x.query_offsets), x.flops_weights
    )


@loss_term("flops_doc")
def _flops_doc(x: LossInputs) -> Tensor:
    return flops_loss(x.activations(x.docs, x.doc_scales, x.doc_offsets), x.flops_weights)


@loss_term("min_act")
def _min_act(x: LossInputs) -> Tensor | None:
    if x.queries_by_table:
        return None
    return min_activation_loss(x.q, x.config.min_act_k, x.config.min_act_threshold)


@loss_term("kd")
def _kd(x: LossInputs) -> Tensor | None:
    if x.teacher_scores is None:
        return None
    temperature = x.config.teacher.temperature if x.config.teacher else 1.0
    # the student's scores at the InfoNCE temperature of the step, as InfoNCE sees them
    return distillation_loss(x.scores() / x.temperature, x.teacher_scores.to(x.q.device), temperature)


@dataclass(frozen=True)
class LossWeights:
    """The weight of every term and the InfoNCE temperature for one step (from the schedule)."""

    temperature: float
    terms: dict[str, float]

    def of(self, name: str) -> float:
        return float(self.terms.get(name, 0.0))

    def active(self) -> list[str]:
        """Terms with a weight above zero, in registry order."""
        return [name for name in TERMS if self.of(name) > 0]


@dataclass
class LossOutput:
    """The weighted total and every computed term (unweighted) by name."""

    total: Tensor
    components: dict[str, Tensor]
    weights: LossWeights


class SpladeLoss(nn.Module):
    """The weighted sum of the registered terms that have a weight this step."""

    def __init__(self, config: LossConfig, flops_weights: Tensor | None = None) -> None:
        super().__init__()
        unknown = sorted(set(config.terms) - set(TERMS))
        if unknown:
            raise SpladeError(
                f"loss.terms: no loss term is registered as {', '.join(unknown)} (known: {', '.join(TERMS)})"
            )
        self.config = config
        self.register_buffer("flops_weights", flops_weights, persistent=False)

    def inputs(
        self,
        q: Tensor,
        p: Tensor,
        n: Tensor,
        query_bag: Tensor,
        positive_bag: Tensor,
        weights: LossWeights,
        teacher_scores: Tensor | None = None,
        false_negatives: Tensor | None = None,
        queries_by_table: bool = False,
        query_scales: Tensor | None = None,
        doc_scales: Tensor | None = None,
        query_offsets: Tensor | None = None,
        doc_offsets: Tensor | None = None,
    ) -> LossInputs:
        return LossInputs(
            q,
            p,
            n,
            query_bag,
            positive_bag,
            self.config,
            weights.temperature,
            self.flops_weights,
            teacher_scores,
            false_negatives,
            queries_by_table,
            query_scales,
            doc_scales,
            query_offsets,
            doc_offsets,
        )

    def forward(self, x: LossInputs, weights: LossWeights) -> LossOutput:
        parts: dict[str, Tensor] = {}
        for name in dict.fromkeys([*LOGGED, *weights.active()]):
            value = TERMS[name](x)
            if value is not None:
                parts[name] = value.float()
        total = sum(weights.of(name) * value for name, value in parts.items())
        return LossOutput(total, parts, weights)


def gradient_shares(x: LossInputs, out: LossOutput) -> dict[str, float]:
    """Each weighted term's share of the gradient reaching the representations (norms, summing to 1)."""
    leaves = [t for t in (x.q, x.p, x.n) if t.requires_grad]
    if not leaves:
        return {}
    norms = {}
    for name, value in out.components.items():
        weight = out.weights.of(name)
        if weight <= 0 or not value.requires_grad:
            continue
        grads = torch.autograd.grad(weight * value, leaves, retain_graph=True, allow_unused=True)
        norms[name] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
    total = sum(norms.values()) or 1.0
    return {name: norm / total for name, norm in norms.items()}
