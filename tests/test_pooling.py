"""The representation's pooling variants: the same values and gradients whatever the implementation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import splade.model.pooling as pooling
from splade.model import SpladeModel
from splade.model.pooling import POOL_FUNCTIONS


def _batch(model: SpladeModel) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    ids = torch.randint(5, model.vocab_size, (5, 9))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    mask[3, 2:] = 0
    return ids, mask


def _values_and_grads(model: SpladeModel, ids, mask, variant: str, weights: torch.Tensor):
    model.zero_grad()
    reps = model(ids, mask, pooling=variant)
    (reps * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return reps.detach(), grads


@pytest.mark.parametrize("blocks", [(1 << 27, 1 << 18, 1 << 24), (400, 30, 50)])  # one block; many
@pytest.mark.parametrize("variant", ["dense", "sparse"])
def test_training_poolings_match_the_plain_forward(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, blocks: tuple[int, int, int], variant: str
) -> None:
    """`dense` and `sparse` give the plain forward's representation and parameter gradients (fp32)."""
    for name, value in zip(("DENSE_BLOCK_ELEMENTS", "CACHE_BLOCK_ELEMENTS", "SPARSE_BACKWARD_ELEMENTS"),
                           blocks, strict=True):
        monkeypatch.setattr(pooling, name, value)
    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    ids, mask = _batch(model)
    weights = torch.rand(5, model.vocab_size)
    expected, expected_grads = _values_and_grads(model, ids, mask, "plain", weights)
    got, grads = _values_and_grads(model, ids, mask, variant, weights)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert grads.keys() == expected_grads.keys()
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_export_pooling_matches_plain(tiny_model_dir: Path) -> None:
    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    ids, mask = _batch(model)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask, pooling="export"), model(ids, mask), rtol=1e-5, atol=1e-5)


def test_bf16_poolings_agree_within_bf16_tolerance(tiny_model_dir: Path) -> None:
    """Under bf16 autocast (the GPU training precision) every variant stays within bf16 rounding."""
    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    ids, mask = _batch(model)
    weights = torch.rand(5, model.vocab_size)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference, reference_grads = _values_and_grads(model, ids, mask, "plain", weights)
    for variant in ("dense", "sparse"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, grads = _values_and_grads(model, ids, mask, variant, weights)
        torch.testing.assert_close(got.float(), reference.float(), rtol=2e-2, atol=2e-2)
        names = sorted(reference_grads)
        want = torch.cat([reference_grads[n].flatten().float() for n in names])
        have = torch.cat([grads[n].flatten().float() for n in names])
        assert (have - want).norm() / want.norm() < 2e-2, variant  # relative error of all gradients


def test_every_variant_is_registered() -> None:
    assert set(POOL_FUNCTIONS) == set(pooling.POOLINGS)


def test_the_torch_encoder_serves_with_the_measured_pooling(tiny_model_dir: Path, monkeypatch) -> None:
    """With no pooling given, each batch is encoded with `serving_pooling` for its padded length: `plain`
    for short batches, `sparse` for long ones on a CPU; the vectors are the same either way."""
    from splade.encoders.torch_backend import TorchEncoder

    assert pooling.serving_pooling(torch.device("cpu"), 64) == "plain"
    assert pooling.serving_pooling(torch.device("cpu"), 512) == "sparse"
    assert pooling.serving_pooling(torch.device("cuda"), 512) == "plain"
    encoder = TorchEncoder(tiny_model_dir, device="cpu")
    assert encoder.pooling is None
    used: list[str] = []
    forward = encoder.model.forward
    monkeypatch.setattr(encoder.model, "forward", lambda ids, mask, pooling: used.append(pooling) or forward(
        ids, mask, pooling=pooling))
    texts = ["짧은 질의", "a somewhat longer passage about retrieval " * 40]
    short = encoder.encode_documents(texts[:1]).to_dense()
    assert used == ["plain"]
    monkeypatch.setattr(pooling, "SHORT_BATCH", 2)  # now every batch counts as long
    both = encoder.encode_documents(texts, batch_size=1).to_dense()
    assert used[1:] == ["sparse", "sparse"]
    np.testing.assert_allclose(both[0], short[0], rtol=1e-5, atol=1e-6)
