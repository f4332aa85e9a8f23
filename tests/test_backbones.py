"""Backbones the trainer accepts: BERT (elsewhere), XLM-R-style encoders without an MLM head, ModernBERT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_TEXTS
from transformers import (
    ModernBertConfig,
    ModernBertForMaskedLM,
    ModernBertModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)

from splade.model import SpladeModel
from splade.tiny import train_wordpiece

TEXTS = ["당뇨병 치료 방법", "diabetes mellitus treatment"]


def _tied(model: SpladeModel) -> bool:
    decoder = model.decoder.weight
    return decoder.data_ptr() == model.mlm.get_input_embeddings().weight.data_ptr()


def _check_representation(model: SpladeModel) -> torch.Tensor:
    reps = model.encode(TEXTS)
    assert reps.shape == (2, model.vocab_size)
    assert torch.isfinite(reps).all() and (reps >= 0).all()
    assert (reps[:, model.tokenizer.all_special_ids] == 0).all()
    assert (reps > 0).sum(dim=1).min() > 0
    return reps


def _one_step_changes_the_head(model: SpladeModel) -> None:
    """A gradient step reaches the (built) head: the representation moves."""
    model.train()
    before = model.encode(TEXTS).clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = model.tokenize(TEXTS)
    model(batch["input_ids"], batch["attention_mask"]).sum().backward()
    optimizer.step()
    model.eval()
    assert not torch.allclose(before, model.encode(TEXTS))


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece(TINY_TEXTS, vocab_size=300)


def test_xlmr_encoder_without_mlm_head_gets_a_tied_head(tokenizer, tmp_path: Path) -> None:
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, pad_token_id=tokenizer.pad_token_id, max_position_embeddings=160,
    )
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    model = SpladeModel.from_pretrained(tmp_path).eval()
    assert type(model.mlm).__name__ == "XLMRobertaForMaskedLM"
    assert _tied(model)
    dense = model.mlm.lm_head.dense
    assert torch.equal(dense.weight, torch.eye(dense.weight.shape[0]))  # built head starts as identity
    _check_representation(model)
    _one_step_changes_the_head(model)


def test_modernbert_masked_lm_loads_and_encodes(tokenizer, tmp_path: Path) -> None:
    config = ModernBertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, pad_token_id=tokenizer.pad_token_id, cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id, max_position_embeddings=256,
    )
    torch.manual_seed(0)
    ModernBertForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    model = SpladeModel.from_pretrained(tmp_path / "mlm").eval()
    assert type(model.mlm).__name__ == "ModernBertForMaskedLM"
    reps = _check_representation(model)
    # padding a text next to a longer one leaves its representation unchanged
    alone = model.encode(TEXTS[:1])
    assert torch.allclose(alone[0], reps[0], atol=1e-4)

    ModernBertModel(config).save_pretrained(tmp_path / "bare")
    tokenizer.save_pretrained(tmp_path / "bare")
    bare = SpladeModel.from_pretrained(tmp_path / "bare").eval()
    assert _tied(bare)
    dense = bare.mlm.head.dense
    assert torch.equal(dense.weight, torch.eye(dense.weight.shape[0]))
    _check_representation(bare)


def test_real_me5_small_koen_gets_a_tied_head_and_trains(me5_dir: Path) -> None:
    """The shared multilingual e5 (a `BertModel`, no MLM head) loads as a SPLADE model that can learn."""
    model = SpladeModel.from_pretrained(me5_dir, max_length=32).eval()
    assert type(model.mlm).__name__ == "BertForMaskedLM" and _tied(model)
    dense = model.mlm.cls.predictions.transform.dense
    assert torch.equal(dense.weight, torch.eye(dense.weight.shape[0]))
    _check_representation(model)
    _one_step_changes_the_head(model)
