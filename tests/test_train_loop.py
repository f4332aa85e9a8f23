"""The training loop end to end on tiny models and data built inside the test."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from splade.config import load_config
from splade.data.triplets import load_triplets
from splade.errors import SpladeError
from splade.trainer.loop import train

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_triplets_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = json.dumps({"query": "q", "positive": "p", "negative": "n"})
    cases = {
        "{not json": "invalid JSON",
        json.dumps({"query": "q", "positive": "p"}): "missing field 'negative'",
        json.dumps({"query": "q", "positive": "  ", "negative": "n"}): "field 'positive' is empty",
        json.dumps(["q", "p", "n"]): "expected a JSON object",
    }
    for bad, message in cases.items():
        path.write_text(f"{good}\n\n{bad}\n{good}\n", encoding="utf-8")
        with pytest.raises(SpladeError) as info:
            load_triplets([path])
        assert str(info.value).startswith(f"{path}:3: ") and message in str(info.value)
        data = load_triplets([path], skip_invalid=True)
        assert len(data) == 2 and data.skipped == 1 and data[0].pair_type == "unknown"


def test_train_writes_the_guide_outputs(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "training.num_epochs=3",
        "training.save_steps=4",
        "training.logging_steps=1",
        "training.learning_rate=3e-3",
        "training.save_total_limit=2",
        "curriculum_phases.1.temperature=0.8",
        "curriculum_phases.2.temperature=0.6",
    )
    result = train(cfg)
    out = result.output_dir
    assert result.global_step == 18 and len(result.history) == 3
    assert [h["phase"] for h in result.history] == [1, 2, 3]
    assert [h["temperature"] for h in result.history] == [1.0, 0.8, 0.6]
    history = json.loads((out / "training_history.json").read_text())
    assert len(history["epochs"]) == 3 and history["best_epoch"] in (1, 2, 3)
    first, last = result.history[0], result.history[-1]
    assert last["val"]["loss_infonce"] < first["val"]["loss_infonce"]  # it learned something
    assert {"mrr", "accuracy", "active_terms_query", "active_terms_doc", "flops"} <= set(last["val"])
    # checkpoints: rotated to the newest two, each complete
    names = sorted(p.name for p in out.glob("checkpoint_*"))
    assert names == ["checkpoint_16", "checkpoint_18"]
    for name in ("model/model.safetensors", "optimizer.pt", "scheduler.pt", "checkpoint_info.json"):
        assert (out / "checkpoint_18" / name).is_file()
    assert json.loads((out / "checkpoint_18" / "checkpoint_info.json").read_text())["global_step"] == 18
    # best_model loads by path in the model class and in the encoder
    from splade.encoders import load_encoder
    from splade.model import SpladeModel

    assert SpladeModel.from_pretrained(result.best_model_dir).max_length == 16
    encoded = load_encoder(result.best_model_dir, backend="torch").encode(["당뇨병 치료"])
    assert encoded.active_counts()[0] > 0
    # tensorboard: the guide's metrics plus every component and the sparsity stats
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "train/loss",
        "train/loss_infonce",
        "train/loss_flops",
        "train/learning_rate",
        "train/gradient_norm",
        "val/loss",
        "train/loss_self",
        "train/loss_positive",
        "train/lambda_flops",
        "train/grad_share_infonce",
        "train/grad_share_flops_doc",
        "train/loss_min_act",
        "train/active_terms_query",
        "train/active_terms_doc",
        "train/flops",
    }
    assert expected <= tags
    lrs = [e.value for e in events.Scalars("train/learning_rate")]
    assert max(lrs) <= 3e-3 + 1e-9 and lrs[-1] < max(lrs)


def test_idf_weighting_kd_and_no_expansion(tiny_model_dir: Path, tmp_path: Path, me5_dir: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "training.num_epochs=1",
        "training.max_steps=2",
        "model.expansion_weight=0",
        "loss.use_idf_weighting=true",
        "loss.lambda_kd=1.0",
        f"loss.teacher={{name: {me5_dir}}}",
        "output.tensorboard=false",
    )
    result = train(cfg)
    assert result.global_step == 2
    train_stats = result.history[0]["train"]
    assert "loss_kd" in train_stats and train_stats["loss_kd"] >= 0
    # without expansion a text only activates its own tokens

    assert result.history[0]["val"]["active_terms_query"] <= 16


def test_non_finite_loss_stops_with_a_clear_message(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "training.learning_rate=1e30",
        "training.warmup_ratio=0",
        "training.save_steps=1",
        "training.max_grad_norm=1e30",
        "output.tensorboard=false",
    )
    with pytest.raises(SpladeError, match="non-finite") as info:
        train(cfg)
    message = str(info.value)
    assert "checkpoint_" in message and "\n" not in message
    kept = cfg.output.dir / "checkpoint_1"
    assert (kept / "checkpoint_info.json").is_file() and (kept / "model" / "model.safetensors").is_file()


def test_skip_invalid_counts_lines(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "training.num_epochs=1",
        "training.max_steps=1",
        "data.skip_invalid=true",
        "output.tensorboard=false",
    )
    with cfg.data.train_files[0].open("a", encoding="utf-8") as handle:
        handle.write('{"query": "", "positive": "p", "negative": "n"}\nnot json\n')
    assert train(cfg).skipped_lines == 2


def test_splade_tiny_on_real_triplets(splade_tiny_dir: Path, tmp_path: Path) -> None:
    """A few steps of the real English SPLADE checkpoint on triplets from the MS MARCO-Korean train split."""
    from conftest import shared_path

    from splade.data.beir import load_beir

    data = load_beir(shared_path("data", "beir", "msmarco-ko"), split="train")
    rnd = random.Random(0)
    doc_ids = sorted(data.corpus)
    path = tmp_path / "real.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for qid in sorted(data.qrels)[:16]:
            pos = next(d for d, s in data.qrels[qid].items() if s > 0)
            neg = rnd.choice([d for d in doc_ids if d not in data.qrels[qid]])
            handle.write(
                json.dumps(
                    {
                        "query": data.queries[qid],
                        "positive": data.corpus[pos].full_text,
                        "negative": data.corpus[neg].full_text,
                        "pair_type": "monolingual",
                        "difficulty": "random",
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    cfg = load_config(
        CONFIGS / "train_v22.yaml",
        [
            f"model.name={splade_tiny_dir}",
            f"data.train_files=[{path}]",
            "data.val_files=[]",
            "data.batch_size=4",
            "data.max_length=48",
            "training.num_epochs=1",
            "training.learning_rate=2e-5",
            "training.mixed_precision=no",
            f"output.dir={tmp_path / 'out'}",
            "output.tensorboard=false",
        ],
    )
    result = train(cfg)
    assert result.global_step == 4
    stats = result.history[0]["train"]
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert 0 < stats["loss_infonce"] < 10
    from splade.model import SpladeModel

    trained = SpladeModel.from_pretrained(result.best_model_dir)
    original = SpladeModel.from_pretrained(splade_tiny_dir)
    diff = sum(
        (a - b).abs().sum().item() for a, b in zip(trained.parameters(), original.parameters(), strict=True)
    )
    assert diff > 0
    rep = trained.encode(["what is diabetes"])
    assert (rep > 0).sum() > 0


def test_gradient_accumulation_counts_optimizer_steps(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "training.num_epochs=1",
        "training.gradient_accumulation_steps=4",
        "data.val_files=[]",
        "output.tensorboard=false",
    )
    result = train(cfg)  # 24 triplets / batch 4 = 6 micro-batches -> steps after 4 and after the last 2
    assert result.global_step == 2
    assert result.history[0]["val"] == {} and result.history[0]["best"]


def test_non_utf8_line_is_a_one_line_error_or_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = json.dumps({"query": "당뇨병", "positive": "p", "negative": "n"}, ensure_ascii=False).encode()
    latin1 = b'{"query": "caf\xe9", "positive": "p", "negative": "n"}'
    path.write_bytes(b"\n".join([good, latin1, good]) + b"\n")
    with pytest.raises(SpladeError) as info:
        load_triplets([path])
    message = str(info.value)
    assert message.startswith(f"{path}:2: not valid UTF-8") and "\n" not in message
    data = load_triplets([path], skip_invalid=True)
    assert len(data) == 2 and data.skipped == 1 and data[0].query == "당뇨병"
    assert data.skipped_examples[0].startswith(f"{path}:2: not valid UTF-8")


def test_last_short_accumulation_group_is_averaged_over_its_own_size(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 micro-batches with accumulation 4 give the same gradient as one full group of 2."""
    real_clip = torch.nn.utils.clip_grad_norm_
    norms: list[float] = []

    def recording_clip(params, max_norm, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        norm = real_clip(params, max_norm, *args, **kwargs)
        norms.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    for steps in (4, 2):
        cfg = tiny_config(
            tmp_path,
            tiny_model_dir,
            "training.num_epochs=1",
            f"training.gradient_accumulation_steps={steps}",
            "data.val_files=[]",
            f"output.dir={tmp_path / f'acc{steps}'}",
            "output.tensorboard=false",
            n_train=8,
        )
        assert train(cfg).global_step == 1
    assert norms[0] == pytest.approx(norms[1], rel=1e-5)


def test_training_loss_monitor_restarts_at_each_phase(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without validation files the loss is monitored; it changes scale with each phase, so a new phase
    restarts the best value and the patience count (epoch 4 continues phase 3 and does count)."""
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "training.num_epochs=5",
        "training.early_stopping_patience=1",
        "training.early_stopping_min_delta=1e9",  # no improvement is ever large enough within a phase
        "data.val_files=[]",
        "output.tensorboard=false",
        n_train=8,
    )
    with caplog.at_level("INFO", logger="splade.trainer"):
        result = train(cfg)
    assert [(h["phase"], h["best"]) for h in result.history] == [(1, True), (2, True), (3, True), (3, False)]
    assert result.stopped_early and result.summary["best_epoch"] == 3
    assert sum("restart" in r.getMessage() for r in caplog.records) == 2
