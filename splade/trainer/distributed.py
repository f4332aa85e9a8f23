"""Training on several processes (torchrun): one global batch split across them, one exact loss.

Every process encodes its share of the global batch; the representations are gathered with gradients
(`torch.distributed.nn.all_gather`), so each process computes the loss of the whole global batch: in-batch
negatives, the FLOPS terms and distillation see every triplet, exactly as a single process would. Each
process's backward then holds `world` times its share of the gradient, and DDP's average over processes
gives the single-process gradient. Checkpoints, logs and the best model are written by rank 0.

Launch: `torchrun --nproc_per_node N -m splade train v23 ...` (`data.batch_size` is the global batch).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from splade.errors import SpladeError


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Distributed:
        """Rank and world size from torchrun's variables; joins the process group when there are several."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend=backend)
        return cls(rank, world, local_rank)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, configured: torch.device) -> torch.device:
        """One GPU per process (`cuda:LOCAL_RANK`); CPUs are shared."""
        if self.enabled and configured.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return configured

    def shard(self, indices: np.ndarray) -> np.ndarray:
        """This process's share of a global batch's triplet indices."""
        if len(indices) % self.world:
            raise SpladeError(
                f"data.batch_size {len(indices)} must divide evenly over {self.world} training processes"
            )
        size = len(indices) // self.world
        return indices[self.rank * size : (self.rank + 1) * size]

    def gather(self, tensor: Tensor) -> Tensor:
        """Every process's `tensor` concatenated in rank order; gradients flow back to each process's part."""
        if not self.enabled:
            return tensor
        return _GatherWithGradient.apply(tensor.contiguous(), self.rank, self.world)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_flag(self, value: bool) -> bool:
        """Rank 0's `value` on every process."""
        return bool(self.broadcast_int(int(value)))

    def broadcast_int(self, value: int) -> int:
        """Rank 0's `value` on every process."""
        if not self.enabled:
            return value
        number = torch.tensor([value], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            number = number.cuda()
        dist.broadcast(number, src=0)
        return int(number.item())

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (and fills the caches); the others run it after."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


class _GatherWithGradient(torch.autograd.Function):
    """All-gather along the first axis; backward sums the gradient over processes (each computed the same
    global loss) and hands every process the rows it contributed."""

    @staticmethod
    def forward(ctx, tensor: Tensor, rank: int, world: int) -> Tensor:  # noqa: ANN001
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor)
        ctx.rank, ctx.rows = rank, tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: ANN001, ANN205
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows], None, None
