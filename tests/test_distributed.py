"""Training on two processes (torchrun, gloo on the CPU) equals one process on the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_triplets
from safetensors.torch import load_file

from splade.config import load_config
from splade.quickstart import QUICKSTART_CONFIG
from splade.trainer.loop import train

pytestmark = pytest.mark.slow
TORCHRUN = Path(sys.executable).with_name("torchrun")

COMMON = [
    "data.batch_size=4",
    "data.max_length=16",
    "data.epoch_size=null",
    "data.val_files=[]",
    "model.dropout=0.0",
    "training.num_epochs=2",
    "training.num_threads=1",
    "training.learning_rate=3e-3",
    "training.warmup_ratio=0",
    "output.tensorboard=false",
]


def _overrides(tmp_path: Path, model_dir: Path, out: str, *extra: str) -> list[str]:
    data = tmp_path / "train.jsonl"
    if not data.exists():
        write_triplets(data, 16)
    return [
        f"model.name={model_dir}",
        f"data.train_files=[{data}]",
        f"output.dir={tmp_path / out}",
        *COMMON,
        *extra,
    ]


def _torchrun(tmp_path: Path, overrides: list[str], *flags: str) -> None:
    if not TORCHRUN.is_file():
        pytest.skip("torchrun is not installed beside this Python")
    args = [
        str(TORCHRUN),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "splade",
        "train",
        "quickstart",
        "--config",
        str(QUICKSTART_CONFIG),
        *flags,
    ]
    for override in overrides:
        args += ["--set", override]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _assert_same_weights(a: Path, b: Path) -> None:
    left, right = _weights(a), _weights(b)
    assert left.keys() == right.keys()
    for name in left:
        torch.testing.assert_close(left[name], right[name], rtol=1e-5, atol=1e-6, msg=name)


def _one_step(config_overrides: list[str], out: Path) -> None:
    """Forward and backward one global batch of 4; rank 0 saves the loss and the gradients."""
    from splade.trainer.batches import make_batch
    from splade.trainer.loop import Trainer

    torch.set_num_threads(1)
    trainer = Trainer(load_config(QUICKSTART_CONFIG, config_overrides), None)
    indices = np.arange(4)
    batch = make_batch(
        trainer.parts.data.table,
        trainer.parts.data.rows,
        indices,
        trainer.parts.tokenizer.pad_id,
        trainer.dist.shard(indices),
    )
    weights = trainer.parts.schedule.loss_weights(40, trainer.parts.schedule.phase(1))  # FLOPS warm-up done
    trainer.parts.step.micro_batch(batch, weights, group=1)
    if trainer.is_main:
        grads = {n: p.grad.clone() for n, p in trainer.parts.model.named_parameters() if p.grad is not None}
        torch.save({"loss": trainer.parts.step.epoch.read(), "grads": grads}, out)


def _rank(rank: int, port: int, config_overrides: list[str], out: Path) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    _one_step(config_overrides, out)
    torch.distributed.barrier()  # neither process tears the group down while the other still uses it
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("distillation", [False, True], ids=["no-kd", "kd"])
def test_two_processes_give_the_loss_and_gradients_of_one(
    tiny_model_dir: Path, tmp_path: Path, distillation: bool, request: pytest.FixtureRequest
) -> None:
    """One global batch of 4 on one process, and split 2 + 2 over two gloo processes: the same loss (every
    component, in-batch negatives and FLOPS over all 4, the teacher's scores over the global batch) and the
    same gradients (DDP's average included)."""
    import socket

    extra = []
    if distillation:  # the dense teacher scores the global batch; each process embeds lazily
        teacher = request.getfixturevalue("me5_dir")
        extra = ["loss.lambda_kd=1.0", f"loss.teacher={{name: {teacher}, max_length: 32, precompute: lazy}}"]
    overrides = _overrides(tmp_path, tiny_model_dir, "out", *extra)
    _one_step(overrides, tmp_path / "single.pt")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(_rank, args=(port, overrides, tmp_path / "double.pt"), nprocs=2)
    single, double = torch.load(tmp_path / "single.pt"), torch.load(tmp_path / "double.pt")
    assert (single["loss"].get("loss_kd", 0.0) > 0) == distillation
    for name, value in single["loss"].items():
        assert double["loss"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    assert single["grads"].keys() == double["grads"].keys()
    for name, grad in single["grads"].items():
        # float sums in another order over two processes (DDP's average, the gathered batch)
        torch.testing.assert_close(double["grads"][name], grad, rtol=1e-3, atol=1e-6, msg=name)


@pytest.mark.xfail(
    reason="known issue: a torchrun run resumed from its step-2 checkpoint under a step budget "
    "ends with weights off by more than float noise (one-process resume is exact)",
    strict=False,
)
def test_torchrun_trains_on_two_processes_and_resumes(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`torchrun -m splade train` on two processes: rank 0 alone writes; a run resumed from its checkpoint
    at step 2 ends where the uninterrupted one does; the losses follow a one-process run's."""
    torch.set_num_threads(1)
    single = train(
        load_config(QUICKSTART_CONFIG, _overrides(tmp_path, tiny_model_dir, "single", "training.max_steps=3"))
    )
    every_step = ["training.save_steps=1", "training.save_total_limit=10"]
    _torchrun(tmp_path, _overrides(tmp_path, tiny_model_dir, "double", "training.max_steps=3", *every_step))
    double = tmp_path / "double"
    assert sorted(p.name for p in double.glob("checkpoint_*")) == [f"checkpoint_{i}" for i in (1, 2, 3)]
    history = json.loads((double / "training_history.json").read_text())["epochs"][-1]
    assert history["train"]["loss"] == pytest.approx(single.history[-1]["train"]["loss"], rel=1e-3)

    resumed = tmp_path / "resumed"  # the same run, stopped after step 2
    shutil.copytree(double, resumed, ignore=shutil.ignore_patterns("checkpoint_3", "best_model"))
    _torchrun(
        tmp_path,
        _overrides(tmp_path, tiny_model_dir, "resumed", "training.max_steps=3", *every_step),
        "--resume",
    )
    _assert_same_weights(double / "best_model", resumed / "best_model")


def test_a_global_batch_that_does_not_split_evenly_is_one_line() -> None:
    from splade.errors import SpladeError
    from splade.trainer.distributed import Distributed

    with pytest.raises(SpladeError, match="must divide evenly over 2 training processes"):
        Distributed(rank=0, world=2).shard(np.arange(5))
    assert Distributed(rank=1, world=2).shard(np.arange(6)).tolist() == [3, 4, 5]
