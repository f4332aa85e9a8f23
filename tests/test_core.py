"""The shared core: SPLADE model, sparse batches, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splade.atomic import atomic_dir, atomic_file
from splade.model import SpladeModel
from splade.sparse import SparseBatch


def test_representation_is_max_of_log1p_relu_over_kept_positions(tiny_model_dir):
    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    batch = model.tokenize(["당뇨병 치료 방법", "coffee"])
    with torch.no_grad():
        got = model(batch["input_ids"], batch["attention_mask"])
        logits = model.term_logits(**batch)
    expected = torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)
    expected = expected.max(dim=1).values
    expected[:, model.tokenizer.all_special_ids] = 0
    assert torch.allclose(got, expected, atol=1e-6)
    assert (got[:, model.tokenizer.all_special_ids] == 0).all()
    # padding must not change the second row
    with torch.no_grad():
        alone = model.encode(["coffee"])
    assert torch.allclose(alone[0], got[1], atol=1e-5)


def test_save_and_load_round_trip(tiny_model_dir, tmp_path):
    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    model.save_pretrained(tmp_path / "copy")
    again = SpladeModel.from_pretrained(tmp_path / "copy").eval()
    assert (tmp_path / "copy" / "splade_config.json").is_file()
    assert torch.allclose(model.encode(["고혈압 예방"]), again.encode(["고혈압 예방"]))


def test_sparse_batch_from_dense_top_k_and_round_trip(tmp_path):
    dense = np.array([[0.0, 3.0, 1.0, 2.0], [0.5, 0.0, 0.0, 0.0], [0, 0, 0, 0]], dtype=np.float32)
    batch = SparseBatch.from_dense(dense, top_k=2)
    assert batch.active_counts().tolist() == [2, 1, 0]
    assert batch.row(0)[0].tolist() == [1, 3]
    batch.save(tmp_path / "b.npz")
    again = SparseBatch.load(tmp_path / "b.npz")
    assert np.array_equal(again.to_dense(), batch.to_dense())
    both = SparseBatch.concat([batch, batch.select([1])])
    assert len(both) == 4 and both.row(3)[1].tolist() == [0.5]


def test_atomic_writes_leave_old_content_on_failure(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("two")
        raise RuntimeError("crash while saving")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "f.json") as handle:
        handle.write("{")
        raise RuntimeError("crash")
    assert not (tmp_path / "f.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_kill_between_the_two_renames_is_recovered(tmp_path):
    """A writer killed after moving the old folder aside, before moving the new one in, loses nothing."""
    import subprocess
    import sys

    from splade.indexer.base import IndexMetadata
    from splade.indexer.local import LocalSparseIndex

    index_dir = tmp_path / "idx"
    LocalSparseIndex.create(index_dir, IndexMetadata("m", "h", 8)).close()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    aside = tmp_path / f".idx.old-{dead.stdout.strip()}"  # named after a writer that is gone
    index_dir.rename(aside)
    assert LocalSparseIndex.open(index_dir).count() == 0  # put back and opened
    assert not aside.exists()

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("one")
    (tmp_path / "out").rename(tmp_path / f".out.old-{dead.stdout.strip()}")
    with atomic_dir(tmp_path / "out") as tmp:  # the next writer restores it first, then replaces it
        assert (tmp_path / "out" / "a.txt").read_text() == "one"
        (tmp / "a.txt").write_text("two")
    assert (tmp_path / "out" / "a.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "out"]


def test_lexical_init_starts_as_a_bag_of_the_input_tokens():
    from conftest import TINY_TEXTS

    from splade.tiny import build_tiny_model

    model = build_tiny_model(TINY_TEXTS, vocab_size=300, hidden_size=128, num_layers=2, num_heads=2,
                             lexical_bias=-5.0)  # the quickstart's shape
    texts = ["당뇨병 치료 방법", "coffee is good for health", "서울은 한국의 수도이다"]
    reps = model.encode(texts)
    for text, rep in zip(texts, reps, strict=True):
        own = set(model.tokenizer(text, add_special_tokens=False)["input_ids"])
        active = set(torch.nonzero(rep).flatten().tolist())
        assert own <= active, text
        assert set(rep.topk(len(own)).indices.tolist()) == own, text
        assert len(active) <= 2 * len(own), (text, len(active))
    plain = build_tiny_model(TINY_TEXTS, vocab_size=300, hidden_size=128, num_layers=2, num_heads=2)
    assert (plain.encode(texts) > 0).sum(dim=1).min() > 50  # a random model starts with many terms


def test_written_files_and_folders_get_ordinary_modes(tiny_model_dir, tmp_path):
    """Not the private 0600 / 0700 of temporary files: outputs are meant to be read by others."""
    import os
    import stat

    from splade.config.export import ExportConfig
    from splade.export.onnx_export import export_onnx

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "folder") as tmp, atomic_file(tmp / "file.json") as handle:
            handle.write("{}")
        SpladeModel.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "model")
        export_onnx(ExportConfig(checkpoint=tiny_model_dir, out=tmp_path / "onnx"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "folder" / "file.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "onnx").stat().st_mode) == 0o755
    for path in [*(tmp_path / "model").rglob("*"), *(tmp_path / "onnx").rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path


def test_the_tiny_tokenizer_is_the_same_on_every_training():
    """The same texts give the same vocabulary (and ids) every time, so the test model is one model."""
    from conftest import TINY_TEXTS

    from splade.tiny import train_wordpiece

    vocabularies = {tuple(sorted(train_wordpiece(TINY_TEXTS, 300).get_vocab().items())) for _ in range(8)}
    assert len(vocabularies) == 1
