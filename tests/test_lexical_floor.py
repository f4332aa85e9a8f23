"""`model.lexical_floor`: a text's own tokens carry a fixed share of the start's IDF weights, the encoder's
weights added on top. Saved with the model (`lexical_floor.json`), served the same by torch, ONNX and the
OpenSearch package, and set by training from its documents' IDF."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import served_alike_everywhere, tiny_config

from splade.errors import SpladeError
from splade.model import SpladeModel, TermSaturation
from splade.model.artifact import LEXICAL_FLOOR_NAME, SPLADE_CONFIG_NAME
from splade.model.card import CARD_NAME
from splade.model.term_weights import bag_of_tokens, term_scales

SHARE = 0.75
TEXTS = ["당뇨병 치료 방법 치료 치료", "diabetes treatment and prevention", "서울 커피 coffee"]


def _floor(model: SpladeModel, seed: int = 0) -> torch.Tensor:
    return torch.rand(model.vocab_size, generator=torch.Generator().manual_seed(seed)) * 3.0


@pytest.mark.parametrize("scope", ["own", "all"])
def test_own_tokens_carry_the_floor_plus_the_encoders_weight(tiny_model_dir: Path, scope: str) -> None:
    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    model.expansion_weight = 0.5
    model.term_saturation = TermSaturation(1.2, 0.75, 4.0)
    batch = model.tokenize(TEXTS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        plain = model(ids, mask)
        floor = _floor(model)
        model.set_lexical_floor(floor, SHARE, scope)  # type: ignore[arg-type]
        floored = model(ids, mask)
    own = bag_of_tokens(ids, mask, model.vocab_size) * model.vocab_keep
    scales = term_scales(ids, mask, model.vocab_keep, 0.5, model.term_saturation)
    # the encoder's weights count 1 - SHARE on own tokens, the floor is added to them, both times BM25's
    # tf part; expansion terms are the encoder's in full (scope own) or 1 - SHARE of it (scope all)
    expansion_share = 1.0 if scope == "own" else 1 - SHARE
    encoder_share = torch.where(own > 0, 1 - SHARE, expansion_share)
    torch.testing.assert_close(floored, encoder_share * plain + own * floor * scales)
    expansion = (own == 0) & (plain > 0)
    assert expansion.any()
    assert torch.allclose(floored[expansion], expansion_share * plain[expansion])
    assert (floored[own > 0] >= (floor * scales)[own > 0] - 1e-6).all()  # no own token below its floor
    specials = model.vocab_keep == 0
    assert (floored[:, specials] == 0).all()  # a special token never carries the floor


def test_a_folder_saved_without_a_floor_scope_is_served_as_it_was_trained(tiny_model_dir: Path,
                                                                          tmp_path: Path) -> None:
    """Models saved before the scope was recorded scaled every term: they load with scope `all`; a
    scope that is neither is one line naming the file."""
    model = SpladeModel.from_pretrained(tiny_model_dir)
    model.set_lexical_floor(_floor(model), SHARE, "all")
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    config_path = folder / SPLADE_CONFIG_NAME
    saved = json.loads(config_path.read_text())
    assert saved["lexical_floor_scope"] == "all"
    del saved["lexical_floor_scope"]
    config_path.write_text(json.dumps(saved))
    loaded = SpladeModel.from_pretrained(folder).eval()
    assert loaded.floor_scope == "all"
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(TEXTS), model.eval().encode(TEXTS))
    config_path.write_text(json.dumps({**saved, "lexical_floor_scope": "expansion"}))
    bad_scope = f"^{config_path}: lexical_floor_scope 'expansion' is not own or all$"
    with pytest.raises(SpladeError, match=bad_scope):
        SpladeModel.from_pretrained(folder)


def test_saved_and_served_by_torch_onnx_and_opensearch(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = SpladeModel.from_pretrained(tiny_model_dir)
    model.set_lexical_floor(_floor(model), SHARE)
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / SPLADE_CONFIG_NAME).read_text())
    assert (saved["lexical_floor"], saved["lexical_floor_scope"]) == (SHARE, "own")
    assert not (tmp_path / "model" / "modules.json").exists()  # sentence-transformers cannot compute it
    loaded = SpladeModel.from_pretrained(tmp_path / "model")
    assert loaded.lexical_floor is not None
    torch.testing.assert_close(loaded.lexical_floor, model.lexical_floor)
    assert loaded.floor_share == SHARE and loaded.floor_scope == "own"
    served = served_alike_everywhere(tmp_path / "model", tmp_path, TEXTS)
    model.set_lexical_floor(None)
    with torch.no_grad():
        without = model.encode(TEXTS).numpy()
    assert not np.allclose(served, without, atol=1e-3)


def test_a_missing_or_bad_floor_table_is_one_line_naming_the_file(tiny_model_dir: Path,
                                                                  tmp_path: Path) -> None:
    model = SpladeModel.from_pretrained(tiny_model_dir)
    model.set_lexical_floor(_floor(model), SHARE)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    table = folder / LEXICAL_FLOOR_NAME
    shutil.copy(table, tmp_path / "kept.json")
    table.write_text(json.dumps({"커피": "heavy"}), encoding="utf-8")
    with pytest.raises(SpladeError, match=f"^{table}: the weight of '커피' is not a number$"):
        SpladeModel.from_pretrained(folder)
    table.unlink()
    with pytest.raises(SpladeError, match=f"^{table}: missing"):
        SpladeModel.from_pretrained(folder)


def test_training_sets_the_floor_from_the_documents_idf_and_keeps_it(
    tiny_model_dir: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    from splade.trainer.loop import train

    config = tiny_config(tmp_path, tiny_model_dir, "model.lexical_floor=0.5", "training.max_steps=2",
                         "output.tensorboard=false")
    result = train(config)
    model = SpladeModel.from_pretrained(result.output_dir / "best_model").eval()
    floor = model.lexical_floor
    assert floor is not None and (floor > 0).any()
    # half of the start weight sqrt(idf), one per token: not a constant
    weighted = floor[floor > 0]
    assert weighted.max() > weighted.min()
    card = (result.output_dir / "best_model" / CARD_NAME).read_text(encoding="utf-8")
    assert "| lexical floor | own tokens carry at least `lexical_floor.json`'s weights, 0.5 of" in card
    assert "the encoder's weights on them count 0.5 on top" in card
    assert model.floor_share == 0.5 and model.floor_scope == "own"
    with torch.no_grad():
        batch = model.tokenize(TEXTS)
        reps = model(batch["input_ids"], batch["attention_mask"])
    own = bag_of_tokens(batch["input_ids"], batch["attention_mask"], model.vocab_size) > 0
    _, offset = model.term_affine(batch["input_ids"], batch["attention_mask"])
    assert offset is not None and (reps[own] >= offset[own] - 1e-6).all()


def test_flops_prices_the_encoders_activations_not_the_floor(tiny_model_dir: Path) -> None:
    """The floor is fixed and the encoder's weights count `1 - share`: FLOPS on `activations` (v23) takes
    both out, so an expansion term costs what its activation costs without a floor."""
    from splade.config import load_config
    from splade.quickstart import QUICKSTART_CONFIG
    from splade.trainer.losses import LossWeights, SpladeLoss, flops_loss

    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    batch = model.tokenize(TEXTS + TEXTS[:1])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        activations = model(ids, mask)
        model.set_lexical_floor(_floor(model), SHARE)
        served = model(ids, mask)
    scale, offset = model.term_affine(ids, mask)
    torch.testing.assert_close(served, activations * scale + offset)
    cfg = load_config(QUICKSTART_CONFIG).loss.model_copy(update={"flops_on": "activations"})
    weights = LossWeights(temperature=1.0, terms={"flops": 1.0, "flops_doc": 1.0})
    bags = (served > 0).float()
    loss = SpladeLoss(cfg)
    x = loss.inputs(served[:2], served[2:3], served[3:], bags[:2], bags[2:3], weights,
                    query_scales=scale[:2], doc_scales=scale[2:],
                    query_offsets=offset[:2], doc_offsets=offset[2:])
    parts = loss(x, weights).components
    assert parts["flops"].item() == pytest.approx(flops_loss(activations[:2]).item(), rel=1e-4)
    assert parts["flops_doc"].item() == pytest.approx(flops_loss(activations[2:]).item(), rel=1e-4)
    assert flops_loss(served[:2]).item() > 1.5 * parts["flops"].item()  # served, the floor would dominate
