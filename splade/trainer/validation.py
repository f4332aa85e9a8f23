"""An evaluation's measurements: the validation triplets (loss, in-batch ranking, sparsity) and then the
dev sets' retrieval metric (`DevEvaluator`), each batch behind a short-lived progress bar."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from splade.trainer.batches import TripletBatch
from splade.trainer.curriculum import PhaseSettings
from splade.trainer.dev_eval import DevEvaluator
from splade.trainer.losses import similarity
from splade.trainer.metrics import ranking_stats, sparsity_stats
from splade.trainer.schedule import Schedule
from splade.trainer.step import RunningMeans, TrainStep


class Validator:
    """Measures the model `step` trains on `batches` and on the dev sets of `dev`."""

    def __init__(
        self,
        step: TrainStep,
        schedule: Schedule,
        batches: list[TripletBatch],
        dev: DevEvaluator,
        similarity_name: str,
        device: torch.device,
    ) -> None:
        self.step = step
        self.schedule = schedule
        self.batches = batches
        self.dev = dev
        self.similarity = similarity_name
        self.device = device

    @torch.no_grad()
    def __call__(self, global_step: int, phase: PhaseSettings, with_dev: bool = True) -> dict[str, float]:
        """Validation means (`loss`, `mrr`, ...), then the dev metrics (`dev/...`) when `with_dev`."""
        results: dict[str, float] = {}
        if self.batches:
            results.update(self._validate(global_step, phase))
        if self.dev and with_dev:
            results.update(self.dev.evaluate(self.step.model))
        return results

    def _validate(self, global_step: int, phase: PhaseSettings) -> dict[str, float]:
        model = self.step.model
        model.eval()
        means = RunningMeans(device=self.device)
        weights = self.schedule.loss_weights(global_step, phase)
        for batch in tqdm(self.batches, desc="validate", unit="batch", leave=False, dynamic_ncols=True):
            batch = batch.to(self.device)
            out = self.step.forward(batch, weights, with_teacher=False, gather=False)
            q, docs = self.step.last
            stats = {
                "loss": out.total.detach(),
                **{f"loss_{k}": v.detach() for k, v in out.components.items()},
            }
            ranking = ranking_stats(similarity(q, docs, self.similarity), len(batch))
            extra = {**ranking, **sparsity_stats(q, docs)}
            means.add({**stats, **{k: torch.tensor(v) for k, v in extra.items()}})
        model.train()
        return means.read()
