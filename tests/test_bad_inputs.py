"""Bad inputs and full disks give one line (`error: ...`, exit 2) and leave the data intact: an append on a
full disk, export of a folder that is no masked LM, a dense model indexed as SPLADE (a warning), and
`eval --out` over a folder of user files (refused before any work)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, error_line
from test_index_local import write_beir

from splade.config.index import IndexConfig
from splade.errors import SpladeError
from splade.indexer.local import LocalSparseIndex
from splade.indexer.pipeline import build_index

pytestmark = pytest.mark.faults



def test_disk_full_on_append_is_one_line_and_keeps_the_index(tmp_path: Path, tiny_model_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "idx"
    first = write_beir(tmp_path / "first", ["당뇨병 치료", "Seoul is the capital of Korea", "coffee"])
    build_index(IndexConfig(model=tiny_model_dir, corpus=first, index=str(out)), show_progress=False)
    before = sorted(p.name for p in out.iterdir())
    more = write_beir(tmp_path / "more", [f"extra document {i}" for i in range(5)])
    real_save = np.save

    def full_disk(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if Path(file).name == "postings_weights.npy":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_save(file, *args, **kwargs)

    monkeypatch.setattr("splade.indexer.segment.np.save", full_disk)
    append = IndexConfig(model=tiny_model_dir, corpus=more, index=str(out), append=True)
    with pytest.raises(SpladeError, match="No space left on device.*published index is unchanged") as err:
        build_index(append, show_progress=False)
    assert "\n" not in str(err.value) and str(out) in str(err.value)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == before  # the unpublished segment is gone again
    with LocalSparseIndex.open(out) as index:
        assert index.count() == 3
    assert LocalSparseIndex.verify(out)["documents"] == 3
    build_index(append, show_progress=False)
    assert LocalSparseIndex.open(out).count() == 5  # doc0-doc2 replaced, doc3-doc4 added


def test_export_of_a_gpt2_folder_is_one_line(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=32,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(folder)
    line = error_line(cli("export", str(folder), "--out", str(tmp_path / "onnx")))
    assert "CHECKPOINT" in line and "masked language model" in line and "'gpt2'" in line
    assert not (tmp_path / "onnx").exists()


def test_a_dense_model_indexed_as_splade_warns_that_its_head_is_untrained(
        tmp_path: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from transformers import AutoModel

    dense = tmp_path / "dense"
    AutoModel.from_pretrained(tiny_model_dir).save_pretrained(dense)  # the encoder alone, no MLM head
    for file in tiny_model_dir.iterdir():
        if "token" in file.name or file.name == "vocab.txt":
            shutil.copy(file, dense / file.name)
    corpus = write_beir(tmp_path / "beir", ["당뇨병 치료", "coffee is good"])
    with caplog.at_level(logging.WARNING):
        build_index(IndexConfig(model=dense, corpus=corpus, index=str(tmp_path / "idx")), show_progress=False)
    warned = [r.getMessage() for r in caplog.records if "no trained MLM head" in r.getMessage()]
    assert len(warned) == 1 and str(dense) in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_index(IndexConfig(model=tiny_model_dir, corpus=corpus, index=str(tmp_path / "idx2")),
                    show_progress=False)
    assert not [r for r in caplog.records if "no trained MLM head" in r.getMessage()]


def test_eval_out_over_user_files_is_refused_before_any_work(tmp_path: Path, tiny_model_dir: Path) -> None:
    from splade.data.sample import sample_beir_dir

    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    started = time.perf_counter()
    line = error_line(cli("eval", "--dataset", str(sample_beir_dir()), "--splade", str(tiny_model_dir),
                          "--out", str(user)))
    assert "--out" in line and "not an earlier evaluation report" in line
    assert time.perf_counter() - started < 60 and (user / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no shards, no index, nothing
