"""One training step on the device: forward, loss, backward and the optimizer update, without a host sync.

Loss values stay on the device as running sums; the loop reads them every `logging_steps` (and at
epoch ends). A non-finite loss or gradient norm is recorded on the device too and checked at those reads
and before every checkpoint, so a diverged run stops before it saves anything diverged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from splade.model import SpladeModel, bag_of_tokens
from splade.trainer.batches import TripletBatch
from splade.trainer.distill import TeacherScores
from splade.trainer.distributed import Distributed
from splade.trainer.losses import LossOutput, LossWeights, SpladeLoss, gradient_shares


class PairForward(torch.nn.Module):
    """Queries and documents through the model in one module call (what DDP wraps), each batch padded to
    its own length."""

    def __init__(self, model: SpladeModel, pooling: str) -> None:
        super().__init__()
        self.model = model
        self.pooling = pooling

    def forward(self, query_ids: Tensor, query_mask: Tensor, doc_ids: Tensor, doc_mask: Tensor):  # noqa: ANN201
        q = self.model.encode_query_ids(query_ids, query_mask, pooling=self.pooling)
        docs = self.model(doc_ids, doc_mask, pooling=self.pooling)
        return q, docs


class RunningMeans:
    """Sums of per-micro-batch values kept on the device; `read()` is the one host sync."""

    def __init__(self, saved: dict[str, float] | None = None, device: torch.device | None = None) -> None:
        saved = dict(saved or {})
        self.count = int(saved.pop("n", 0))
        self.sums = {name: torch.tensor(value, device=device) for name, value in saved.items()}

    def add(self, values: dict[str, Tensor]) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
        self.count += 1

    def read(self) -> dict[str, float]:
        """The mean of every value."""
        names = list(self.sums)
        totals = torch.stack([self.sums[n].float() for n in names]).tolist() if names else []
        return {name: total / max(1, self.count) for name, total in zip(names, totals, strict=True)}

    def state(self) -> dict[str, float]:
        """Sums and count as plain floats (for a checkpoint)."""
        names = list(self.sums)
        totals = torch.stack([self.sums[n].float() for n in names]).tolist() if names else []
        return {"n": self.count, **dict(zip(names, totals, strict=True))}


class TrainStep:
    """Forward/backward of micro-batches and the optimizer update of each accumulation group."""

    def __init__(
        self,
        model: SpladeModel,
        loss_fn: SpladeLoss,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler | None,
        pooling: str,
        autocast_dtype: torch.dtype | None,
        max_grad_norm: float,
        teacher: TeacherScores | None = None,
        mask_false_negatives: bool = True,
        distributed: Distributed | None = None,
    ) -> None:
        self.model = model
        self.distributed = distributed or Distributed()
        self.pair = PairForward(model, pooling)
        self.wrapped: torch.nn.Module = self.pair
        if self.distributed.enabled:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [model.vocab_keep.device.index] if model.vocab_keep.is_cuda else None
            self.wrapped = DistributedDataParallel(self.pair, device_ids=device_ids)
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.autocast_dtype = autocast_dtype
        self.max_grad_norm = max_grad_norm
        self.teacher = teacher
        self.mask_false_negatives = mask_false_negatives
        self.device = model.vocab_keep.device
        self.window = RunningMeans(device=self.device)  # since the last log line
        self.epoch = RunningMeans(device=self.device)  # since the epoch began
        self.finite = torch.ones((), dtype=torch.bool, device=self.device)
        self.last: tuple[Tensor, Tensor] | None = None  # the last micro-batch's (queries, documents)
        self.grad_norm = torch.zeros((), device=self.device)
        self.measure_shares = False  # set for a step whose log line shows each term's gradient share
        self.shares: dict[str, float] = {}

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        if self.autocast_dtype is None:
            yield
        else:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                yield

    @property
    def pooling(self) -> str:
        return self.pair.pooling

    @pooling.setter
    def pooling(self, value: str) -> None:
        self.pair.pooling = value

    def forward(
        self, batch: TripletBatch, weights: LossWeights, with_teacher: bool = True, gather: bool = True
    ) -> LossOutput:
        """The loss of the global batch: this process encodes its part, the parts are gathered (with
        gradients) when training on several processes; `gather=False` (validation) stays local."""
        module = self.wrapped if gather else self.pair
        with self._precision():
            q, docs = module(batch.query_ids, batch.query_mask, batch.doc_ids, batch.doc_mask)
        q, docs = q.float(), docs.float()
        local = batch.local_size
        keep = self.model.vocab_keep
        width = self.model.vocab_size
        query_bag = bag_of_tokens(batch.query_ids, batch.query_mask, width) * keep
        positive_bag = bag_of_tokens(batch.doc_ids[:local], batch.doc_mask[:local], width) * keep
        with torch.no_grad():  # what turned the encoder's activations into the served weights (FLOPS
            # may take it out again)
            query_terms = (None, None) if self.model.inference_free else self.model.term_affine(
                batch.query_ids, batch.query_mask
            )
            doc_terms = self.model.term_affine(batch.doc_ids, batch.doc_mask)
        p, n = docs[:local], docs[local:]
        if gather and self.distributed.enabled:
            gather_all = self.distributed.gather

            def gather_docs(t: Tensor | None) -> Tensor | None:  # positives then negatives, as `p` and `n`
                return None if t is None else torch.cat([gather_all(t[:local]), gather_all(t[local:])])

            q, p, n = gather_all(q), gather_all(p), gather_all(n)
            with torch.no_grad():
                query_bag, positive_bag = gather_all(query_bag), gather_all(positive_bag)
                query_terms = tuple(None if t is None else gather_all(t) for t in query_terms)
                doc_terms = tuple(gather_docs(t) for t in doc_terms)
        teacher_scores = None
        if with_teacher and self.teacher is not None and weights.of("kd") > 0:
            documents = np.concatenate([batch.positive_rows, batch.negative_rows])
            teacher_scores = self.teacher.scores(batch.query_rows, documents)
        false_negatives = batch.false_negatives() if self.mask_false_negatives else None
        by_table = self.model.inference_free
        inputs = self.loss_fn.inputs(
            q, p, n, query_bag, positive_bag, weights, teacher_scores, false_negatives, by_table,
            query_scales=query_terms[0], doc_scales=doc_terms[0],
            query_offsets=query_terms[1], doc_offsets=doc_terms[1],
        )
        out = self.loss_fn(inputs, weights)
        if self.measure_shares:
            self.shares = gradient_shares(inputs, out)
        self.last = (q.detach(), torch.cat([p, n]).detach())
        return out

    def micro_batch(
        self, batch: TripletBatch, weights: LossWeights, group: int, last_of_group: bool = True
    ) -> None:
        """Forward and backward one micro-batch; its loss is divided by the size of its accumulation group.
        On several processes gradients are averaged once a group, after its last micro-batch."""
        sync = (
            contextlib.nullcontext()
            if last_of_group or not self.distributed.enabled
            else self.wrapped.no_sync()
        )
        with sync:
            out = self.forward(batch, weights)
            loss = out.total / group
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        total = out.total.detach()
        self.finite &= torch.isfinite(total)
        values = {"loss": total, **{f"loss_{k}": v.detach().float() for k, v in out.components.items()}}
        self.window.add(values)
        self.epoch.add(values)

    def optimizer_step(self) -> None:
        """Clip, step the optimizer and the LR schedule, clear the gradients."""
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.grad_norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        if self.scaler:  # the scaler skips steps with inf/nan gradients itself
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.finite &= torch.isfinite(self.grad_norm)
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.model.query_weights is not None and self.model.query_weights.requires_grad:
            with torch.no_grad():
                self.model.query_weights.clamp_(min=0.0)  # a query weight table stays non-negative

    def read_window(self) -> dict[str, float]:
        """Means since the last call."""
        means = self.window.read()
        self.window = RunningMeans(device=self.device)
        return means

    def is_finite(self) -> bool:
        return bool(self.finite)
