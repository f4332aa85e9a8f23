"""A memory- and compute-lean SPLADE forward for training: the vocabulary projection fused with max-pooling.

`SpladeModel.forward` materialises `[batch, seq, vocab]` logits and keeps them for backward, where two
more `[batch*seq, hidden] x [hidden, vocab]` matmuls run. Only one position per (text, token) survives
the max-pool, and `log1p(relu(.))` passes gradient only to active terms, so backward needs just the
hidden state at the argmax position of each active term: this module computes the logits block by block,
keeps the argmax positions, and in backward scatters the gradient of the active terms only
(`O(active_terms * hidden)` instead of two `O(batch * seq * vocab * hidden)` matmuls).
Values and gradients equal `SpladeModel.forward` (a test checks it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

CHUNK_ELEMENTS = 1 << 24  # elements of a `[batch, seq, chunk]` logits block held at once (GPU path)
CACHE_ELEMENTS = 1 << 18  # elements of a `[seq, chunk]` logits block (CPU path: stays in cache)


def _pool_batched(hidden: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Whole-batch blocks over the vocabulary (few large kernels: the GPU path)."""
    batch, seq, _ = hidden.shape
    chunk = max(1, CHUNK_ELEMENTS // max(1, batch * seq))
    dropped = (mask == 0).unsqueeze(-1)
    values, positions = [], []
    for start in range(0, weight.shape[0], chunk):
        logits = hidden @ weight[start : start + chunk].T
        if bias is not None:
            logits = logits + bias[start : start + chunk]
        best = logits.masked_fill(dropped, torch.finfo(logits.dtype).min).max(dim=1)
        values.append(best.values)
        positions.append(best.indices)
    return torch.cat(values, dim=1), torch.cat(positions, dim=1)


def _pool_per_text(
    hidden: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor]:
    """One text's kept positions at a time, in cache-sized vocabulary blocks (the CPU path): no padded
    positions are computed and the logits never leave the cache."""
    batch, _, _ = hidden.shape
    vocab = weight.shape[0]
    values = torch.empty(batch, vocab, dtype=hidden.dtype, device=hidden.device)
    idx = torch.empty(batch, vocab, dtype=torch.long, device=hidden.device)
    for n in range(batch):
        kept = mask[n].nonzero().squeeze(1)
        h = hidden[n].index_select(0, kept)
        chunk = max(1, CACHE_ELEMENTS // max(1, len(kept)))
        for start in range(0, vocab, chunk):
            end = min(vocab, start + chunk)
            w = weight[start:end].T
            logits = torch.addmm(bias[start:end], h, w) if bias is not None else h @ w
            best = logits.max(dim=0)
            values[n, start:end] = best.values
            idx[n, start:end] = kept[best.indices]
    return values, idx


class _MaxPooledProjection(torch.autograd.Function):
    """`max_over_kept_positions(hidden @ weight.T + bias)` -> `[batch, vocab]`."""

    @staticmethod
    def forward(ctx, hidden: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # noqa: ANN001
        if hidden.is_cuda:
            values, idx = _pool_batched(hidden, mask, weight, bias)
        else:
            values, idx = _pool_per_text(hidden, mask, weight, bias)
        ctx.save_for_backward(hidden, weight, idx)
        ctx.has_bias = bias is not None
        return values

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: ANN001, ANN205
        hidden, weight, idx = ctx.saved_tensors
        batch, seq, width = hidden.shape
        grad = grad.float()
        grad_hidden = torch.zeros(batch, seq, width, dtype=torch.float32, device=hidden.device)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        # log1p(relu(.)) passes no gradient to inactive terms, so only the active (text, token) pairs work
        rows, cols = grad.nonzero(as_tuple=True)
        step = max(1, CHUNK_ELEMENTS // max(1, width))
        for start in range(0, rows.numel(), step):
            r, c = rows[start : start + step], cols[start : start + step]
            g = grad[r, c].unsqueeze(1)
            pos = idx[r, c]
            grad_weight.index_add_(0, c, g * hidden[r, pos].float())
            grad_hidden.index_put_((r, pos), g * weight[c].float(), accumulate=True)
        grad_bias = grad.sum(0).to(weight.dtype) if ctx.has_bias else None
        return grad_hidden.to(hidden.dtype), None, grad_weight.to(weight.dtype), grad_bias


class _Identity(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


def fused_splade_forward(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """`model(input_ids, attention_mask)` for a `SpladeModel`, with the fused projection + max-pool.

    The MLM head runs up to (not including) its output projection, found via `get_output_embeddings()`;
    heads that do anything after that projection should use the plain forward (`training.fused_pooling`).
    """
    mlm = model.mlm
    decoder = mlm.get_output_embeddings()
    owner, name = _find_parent(mlm, decoder)
    setattr(owner, name, _Identity())
    try:
        hidden = mlm(input_ids=input_ids, attention_mask=attention_mask).logits  # the head's transform output
    finally:
        setattr(owner, name, decoder)
    if hidden.shape[:2] != input_ids.shape or hidden.shape[-1] != decoder.weight.shape[1]:
        return model(input_ids, attention_mask)  # a head that reshapes: use the plain forward
    pooled = _MaxPooledProjection.apply(hidden, attention_mask, decoder.weight, decoder.bias)
    return torch.log1p(torch.relu(pooled)) * model.vocab_keep.to(pooled.dtype)


def _find_parent(root: nn.Module, target: nn.Module) -> tuple[nn.Module, str]:
    for module in root.modules():
        for child_name, child in module.named_children():
            if child is target:
                return module, child_name
    raise ValueError("output projection not found in the model")
