"""Config: the guide's values in the YAML files, strict validation naming the key, dotted overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from splade.config import load_config
from splade.errors import SpladeError
from splade.quickstart import QUICKSTART_CONFIG

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_v22_carries_the_guide_values() -> None:
    cfg = load_config(CONFIGS / "train_v22.yaml")
    loss = cfg.loss
    assert (loss.lambda_infonce, loss.lambda_self, loss.lambda_positive) == (2.0, 4.0, 10.0)
    assert (loss.lambda_margin, loss.margin, loss.lambda_flops) == (2.5, 1.5, 0.005)
    assert (loss.lambda_min_act, loss.min_act_k) == (1.0, 5)
    assert not loss.use_idf_weighting and loss.lambda_kd == 0
    assert cfg.training.learning_rate == pytest.approx(3e-6)
    assert cfg.data.max_length == 64 and cfg.training.num_epochs == 30
    table = [
        (p.start_epoch, p.end_epoch, p.temperature, p.lambda_infonce, p.lr_multiplier)
        for p in cfg.curriculum_phases
    ]
    assert table == [(1, 10, 0.07, 1.0, 1.0), (11, 20, 0.05, 1.5, 0.5), (21, 30, 0.03, 2.0, 0.25)]
    focus = [(p.data_focus.by, p.data_focus.fractions) for p in cfg.curriculum_phases]
    assert focus == [
        ("pair_type", {"single_term": 0.5}),
        ("pair_type", "balanced"),
        ("difficulty", {"hard": 0.5}),
    ]


def test_v23_carries_the_review_values() -> None:
    cfg = load_config(CONFIGS / "train_v23.yaml")
    loss = cfg.loss
    # self / positive activation off: they push every own token to one weight, against the IDF start
    assert (loss.lambda_infonce, loss.lambda_self, loss.lambda_positive, loss.lambda_margin) == (
        2.5,
        0.0,
        0.0,
        0.0,
    )
    assert (loss.lambda_flops, loss.margin, loss.use_idf_weighting) == (0.003, 0.3, True)
    assert loss.lambda_kd > 0 and loss.teacher is not None and loss.teacher.query_prefix == "query: "
    assert loss.flops_warmup_steps > 0
    assert cfg.training.learning_rate == pytest.approx(2e-5) and cfg.training.num_epochs == 20
    assert cfg.data.max_length == 256 and cfg.data.query_max_length == 64 and cfg.model.dropout == 0.1
    assert [(p.start_epoch, p.end_epoch, p.lr_multiplier) for p in cfg.curriculum_phases] == [
        (1, 7, 1.0),
        (8, 14, 0.5),
        (15, 20, 0.25),
    ]
    # beyond the review (docs/training.md): scored by the dot product the indexes compute, so the
    # temperature is 1 in every phase (the review's 0.08 / 0.05 / 0.04 are for cosine scores)
    assert loss.similarity == "dot" and {p.temperature for p in cfg.curriculum_phases} == {10.0}
    assert loss.lambda_flops_doc > 0 and loss.activation_target == 1.0 and cfg.dev.metric == "ndcg@10"


def test_quickstart_config_is_valid() -> None:
    cfg = load_config(QUICKSTART_CONFIG)
    assert cfg.training.num_epochs <= 5 and cfg.data.max_length <= 64


def test_overrides_are_typed() -> None:
    cfg = load_config(
        CONFIGS / "train_v22.yaml",
        [
            "training.learning_rate=1e-5",
            "data.batch_size=8",
            "loss.use_idf_weighting=true",
            "curriculum_phases.0.temperature=0.1",
            "data.train_files=[a.jsonl, b.jsonl]",
            "model.name=some/model",
        ],
    )
    assert cfg.training.learning_rate == pytest.approx(1e-5) and isinstance(cfg.training.learning_rate, float)
    assert cfg.data.batch_size == 8 and cfg.loss.use_idf_weighting is True
    assert cfg.curriculum_phases[0].temperature == pytest.approx(0.1)
    assert [p.name for p in cfg.data.train_files] == ["a.jsonl", "b.jsonl"]
    assert cfg.model.name == "some/model"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("loss.lambda_foo=1", "loss.lambda_foo: Extra inputs are not permitted"),
        ("training.learning_rate=-1", "training.learning_rate"),
        ("training.learning_rate=fast", "training.learning_rate"),
        ("data.batch_size=0", "data.batch_size"),
        ("training.mixed_precision=fp8", "training.mixed_precision"),
        (
            "curriculum_phases.0.data_focus.fractions={single_term: 0.8, multi_term: 0.5}",
            "curriculum_phases.0",
        ),
        ("curriculum_phases.1.start_epoch=5", "overlap"),
        ("loss.teacher=null", "loss.lambda_kd > 0 needs loss.teacher"),
        ("loss.margin=nan", "loss.margin: Input should be a finite number"),
        ("training.learning_rate=.inf", "training.learning_rate: Input should be a finite number"),
        ("curriculum_phases.2.lr_multiplier=inf", "curriculum_phases.2.lr_multiplier"),
    ],
)
def test_bad_values_name_the_key(override: str, expected: str) -> None:
    base = "train_v23.yaml" if "teacher" in override else "train_v22.yaml"
    with pytest.raises(SpladeError) as info:
        load_config(CONFIGS / base, [override])
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_float16_weights_with_fp16_mixed_precision_are_rejected() -> None:
    with pytest.raises(SpladeError) as info:
        load_config(CONFIGS / "train_v22.yaml", ["model.dtype=float16", "training.mixed_precision=fp16"])
    message = str(info.value)
    assert "model.dtype" in message and "training.mixed_precision" in message and "\n" not in message
    for ok in (["model.dtype=float16", "training.mixed_precision=bf16"], ["training.mixed_precision=fp16"]):
        load_config(CONFIGS / "train_v22.yaml", ok)


def test_phases_may_leave_gaps_but_not_overlap() -> None:
    cfg = load_config(CONFIGS / "train_v22.yaml", ["curriculum_phases.1.start_epoch=14"])  # gap 11-13
    assert cfg.curriculum_phases[1].start_epoch == 14
    with pytest.raises(SpladeError, match="overlap at epoch 21"):
        load_config(CONFIGS / "train_v22.yaml", ["curriculum_phases.1.end_epoch=21"])


def test_malformed_override_and_yaml(tmp_path: Path) -> None:
    with pytest.raises(SpladeError, match="expected key=value"):
        load_config(CONFIGS / "train_v22.yaml", ["training.learning_rate"])
    with pytest.raises(SpladeError, match="not a valid list index"):
        load_config(CONFIGS / "train_v22.yaml", ["curriculum_phases.7.temperature=0.1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: x\n loss: [\n")
    with pytest.raises(SpladeError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_config(bad)
    with pytest.raises(SpladeError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    twice = tmp_path / "twice.yaml"
    text = (CONFIGS / "train_v23.yaml").read_text(encoding="utf-8")
    twice.write_text(text.replace("  lexical_floor: 0.75", "  lexical_floor: 0.75\n  lexical_floor: 0.5", 1))
    line = text[: text.index("  lexical_floor: 0.75")].count("\n") + 2
    repeated = rf"^{twice}:{line}: not valid YAML \(the key 'lexical_floor' is given twice\)$"
    with pytest.raises(SpladeError, match=repeated):  # PyYAML alone keeps the second, silently
        load_config(twice)


def test_cli_reports_a_bad_key_in_one_line() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "splade",
            "train",
            "v22",
            "--config",
            str(CONFIGS / "train_v22.yaml"),
            "--set",
            "training.lerning_rate=1e-5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "training.lerning_rate" in lines[0]
