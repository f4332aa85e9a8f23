"""Max-pooling of the vocabulary projection over a text's kept positions: one maths, four implementations.

    pooled[b, v] = max over positions s with mask[b, s] = 1 of (hidden[b, s] . weight[v] + bias[v])

They give the same values and gradients (tests check it) and differ in cost:

- `plain`: materialises the `[batch, seq, vocab]` logits and lets autograd do the rest. The reference,
  and fast on a GPU, where two large matmuls are cheap and memory is plentiful.
- `dense`: vocabulary blocks in forward, keeping only `[batch, vocab]` maxima and their positions;
  backward scatters the gradient into a dense `[batch, seq, block]` tensor and runs two matmuls per
  block. The plain path's arithmetic with a fraction of its memory.
- `sparse`: one text and one cache-sized vocabulary block at a time in forward (no padded position is
  computed); backward touches only the active (text, term) pairs, since `log(1 + ReLU)` passes no
  gradient to the others. Fast on a CPU, and the sparser the model the faster.
- `export`: a graph ONNX and TorchScript trace well (one MatMul over hidden states extended by a mask
  column, one ReduceMax); inference only.

Training picks with `default_pooling`, serving with `serving_pooling` (both measured, per device).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

POOLINGS = ("plain", "dense", "sparse", "export")
DENSE_BLOCK_ELEMENTS = 1 << 27  # elements of a `[batch, seq, block]` logits block (dense path)
CACHE_BLOCK_ELEMENTS = 1 << 18  # elements of a `[seq, block]` logits block (sparse path: stays in cache)
SPARSE_BACKWARD_ELEMENTS = 1 << 24  # (text, term) pairs x hidden width handled at once in sparse backward
MASK_OFFSET = 1.0e4  # pushes padded positions below every real logit; exact in fp16 too (< 65504)


def _projection(hidden: Tensor, weight: Tensor, bias: Tensor | None, start: int, end: int) -> Tensor:
    logits = hidden @ weight[start:end].to(hidden.dtype).T
    return logits + bias[start:end].to(hidden.dtype) if bias is not None else logits


def _block(elements: int, rows: int) -> int:
    return max(1, elements // max(1, rows))


def plain_pool(hidden: Tensor, mask: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """The reference: full logits, masked, max over positions. `weight=None`: `hidden` are the logits."""
    logits = (
        hidden
        if weight is None
        else torch.nn.functional.linear(
            hidden, weight.to(hidden.dtype), None if bias is None else bias.to(hidden.dtype)
        )
    )
    masked = logits.masked_fill(mask.unsqueeze(-1) == 0, torch.finfo(logits.dtype).min)
    return masked.max(dim=1).values


def _max_by_vocab_blocks(
    hidden: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Whole-batch vocabulary blocks: maxima and argmax positions, `[batch, vocab]` each."""
    batch, seq, _ = hidden.shape
    block = _block(DENSE_BLOCK_ELEMENTS, batch * seq)
    dropped = (mask == 0).unsqueeze(-1)
    values, positions = [], []
    for start in range(0, weight.shape[0], block):
        logits = _projection(hidden, weight, bias, start, start + block)
        best = logits.masked_fill(dropped, torch.finfo(logits.dtype).min).max(dim=1)
        values.append(best.values)
        positions.append(best.indices)
    return torch.cat(values, dim=1), torch.cat(positions, dim=1)


def _max_per_text(hidden: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """One text's kept positions at a time, in cache-sized vocabulary blocks."""
    batch, vocab = hidden.shape[0], weight.shape[0]
    values = torch.empty(batch, vocab, dtype=hidden.dtype, device=hidden.device)
    positions = torch.empty(batch, vocab, dtype=torch.long, device=hidden.device)
    for row in range(batch):
        kept = mask[row].nonzero().squeeze(1)
        states = hidden[row].index_select(0, kept)
        block = _block(CACHE_BLOCK_ELEMENTS, len(kept))
        for start in range(0, vocab, block):
            end = min(vocab, start + block)
            best = _projection(states, weight, bias, start, end).max(dim=0)
            values[row, start:end] = best.values
            positions[row, start:end] = kept[best.indices]
    return values, positions


def _dense_backward(grad: Tensor, hidden: Tensor, weight: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of hidden states and weight: the gradient scattered into a dense block, two matmuls."""
    batch, seq, width = hidden.shape
    dtype = hidden.dtype
    grad_hidden = torch.zeros(batch, seq, width, dtype=torch.float32, device=hidden.device)
    grad_weight = torch.empty(weight.shape, dtype=torch.float32, device=weight.device)
    flat_hidden = hidden.reshape(batch * seq, width)
    block = _block(DENSE_BLOCK_ELEMENTS, batch * seq)
    for start in range(0, weight.shape[0], block):
        end = min(weight.shape[0], start + block)
        spread = torch.zeros(batch, seq, end - start, dtype=dtype, device=hidden.device)
        spread.scatter_(1, positions[:, None, start:end], grad[:, None, start:end].to(dtype))
        grad_hidden += (spread @ weight[start:end].to(dtype)).float()
        grad_weight[start:end] = (spread.reshape(batch * seq, -1).T @ flat_hidden).float()
    return grad_hidden, grad_weight


def _sparse_backward(
    grad: Tensor, hidden: Tensor, weight: Tensor, positions: Tensor
) -> tuple[Tensor, Tensor]:
    """Gradients of hidden states and weight over the active (text, term) pairs only."""
    batch, seq, width = hidden.shape
    grad = grad.float()
    grad_hidden = torch.zeros(batch, seq, width, dtype=torch.float32, device=hidden.device)
    grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
    rows, cols = grad.nonzero(as_tuple=True)
    step = _block(SPARSE_BACKWARD_ELEMENTS, width)
    for start in range(0, rows.numel(), step):
        r, c = rows[start : start + step], cols[start : start + step]
        g = grad[r, c].unsqueeze(1)
        pos = positions[r, c]
        grad_weight.index_add_(0, c, g * hidden[r, pos].float())
        grad_hidden.index_put_((r, pos), g * weight[c].float(), accumulate=True)
    return grad_hidden, grad_weight


# kind -> (forward: maxima and their positions, backward: gradients of hidden states and weight)
_STRATEGIES = {"dense": (_max_by_vocab_blocks, _dense_backward), "sparse": (_max_per_text, _sparse_backward)}


class _PooledProjection(torch.autograd.Function):
    """The max-pooled projection with a custom forward and backward (`kind`: dense or sparse)."""

    @staticmethod
    def forward(ctx, hidden: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None, kind: str) -> Tensor:  # noqa: ANN001
        values, positions = _STRATEGIES[kind][0](hidden, mask, weight, bias)
        ctx.save_for_backward(hidden, weight, positions)
        ctx.has_bias, ctx.kind = bias is not None, kind
        return values

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: ANN001, ANN205
        hidden, weight, positions = ctx.saved_tensors
        grad_hidden, grad_weight = _STRATEGIES[ctx.kind][1](grad, hidden, weight, positions)
        grad_bias = grad.sum(0).to(weight.dtype) if ctx.has_bias else None
        return grad_hidden.to(hidden.dtype), None, grad_weight.to(weight.dtype), grad_bias, None


def dense_pool(hidden: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return _PooledProjection.apply(hidden, mask, weight, bias, "dense")


def sparse_pool(hidden: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return _PooledProjection.apply(hidden, mask, weight, bias, "sparse")


def export_pool(hidden: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """One MatMul and one ReduceMax: a column `(mask - 1) * MASK_OFFSET` appended to the hidden states
    and a row of ones appended to `weight^T` push padded scores below every kept one; the bias is added
    after the max (it is constant over positions). Equal to `plain_pool` wherever the result is positive,
    which is all `log(1 + ReLU)` keeps."""
    offset = (mask.unsqueeze(-1).to(hidden.dtype) - 1.0) * MASK_OFFSET
    ones = torch.ones(1, weight.shape[0], dtype=hidden.dtype, device=hidden.device)
    extended = torch.cat([weight.to(hidden.dtype).t(), ones])
    pooled = torch.matmul(torch.cat([hidden, offset], dim=-1), extended).max(dim=1).values
    return pooled + bias.to(hidden.dtype) if bias is not None else pooled


POOL_FUNCTIONS: dict[str, Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]] = {
    "plain": plain_pool,
    "dense": dense_pool,
    "sparse": sparse_pool,
    "export": export_pool,
}


def default_pooling(device: torch.device) -> str:
    """The training pooling for a device when none is configured: `sparse` on a CPU (measured with
    `benchmarks/bench_train.py`), `plain` on a GPU (measured 4.8x faster than `sparse` on an H200)."""
    return "plain" if device.type == "cuda" else "sparse"


SHORT_BATCH = 128  # padded length up to which `plain` serves fastest on a CPU (64: plain; 512: sparse)


def serving_pooling(device: torch.device, length: int) -> str:
    """The pooling an encoder serves a batch padded to `length` with (no gradients), measured with
    `benchmarks/bench_encode.py --poolings-only` on me5-small-koen, 2 CPU threads: at 64 tokens `plain`
    13.1 docs/s, `sparse` 9.7; at 512 (ragged passages) `sparse` 8.3, `plain` 6.2, since `sparse` computes
    no padded position. A GPU serves with `plain`."""
    if device.type == "cuda" or length <= SHORT_BATCH:
        return "plain"
    return "sparse"
