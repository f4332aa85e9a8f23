"""The Docker stack as far as a machine without a Docker engine can check it: the compose file parses and
names build contexts and Dockerfiles that exist, the images are pinned, the Makefile's targets expand to the
intended commands, and the application image's entrypoint runs (here, from this checkout's install)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
APP_DOCKERFILE = REPO_ROOT / "docker" / "app" / "Dockerfile"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile line, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(row.split(None, 1)[0].upper(), row.split(None, 1)[1] if " " in row else "") for row in rows]


def test_compose_services_name_files_that_exist() -> None:
    services = compose()["services"]
    assert {"opensearch", "app"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            assert ":" in service["image"] and not service["image"].endswith(":latest"), name
            continue
        context = REPO_ROOT / build["context"]
        assert context.is_dir(), name
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
    app = services["app"]
    assert REPO_ROOT / app["build"]["context"] / app["build"]["dockerfile"] == APP_DOCKERFILE
    for volume in app["volumes"]:
        assert (REPO_ROOT / volume.split(":")[0]).is_dir()


def test_app_service_reserves_the_gpus_and_reaches_opensearch() -> None:
    app = compose()["services"]["app"]
    [device] = app["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    env = dict(item.split("=", 1) for item in app["environment"])
    assert env["OPENSEARCH_HOSTS"] == "https://opensearch:9200"  # the service name on the compose network
    assert app["depends_on"]["opensearch"]["condition"] == "service_healthy"
    assert "healthcheck" in compose()["services"]["opensearch"]


def test_app_image_is_pinned_and_copies_what_exists() -> None:
    steps = instructions(APP_DOCKERFILE)
    args = dict(value.split("=", 1) for kind, value in steps if kind == "ARG" and "=" in value)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", args["CUDA_IMAGE"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCH_VERSION"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["ONNXRUNTIME_GPU_VERSION"])
    context = REPO_ROOT  # compose builds it from the repository root
    for kind, value in steps:
        if kind == "COPY":
            *sources, _ = value.split()
            assert all((context / source).exists() for source in sources), value
    installs = " ".join(value for kind, value in steps if kind == "RUN")
    assert "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" in installs and "torch==${TORCH_VERSION}" in installs
    ignored = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", "data", "outputs"} <= set(ignored)


def test_the_image_entrypoint_runs() -> None:
    """ENTRYPOINT + CMD of the image, run with this environment's `splade` (the same console script)."""
    import json

    steps = dict(instructions(APP_DOCKERFILE))
    command = json.loads(steps["ENTRYPOINT"]) + json.loads(steps["CMD"])
    assert command == ["splade", "--help"]
    executable = Path(sys.executable).with_name(command[0])
    if not executable.exists():
        pytest.skip("the splade console script is not installed beside this Python")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "120"}
    proc = subprocess.run([str(executable), *command[1:]], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and "index" in proc.stdout and "eval" in proc.stdout


def make_dry_run(*targets: str, **variables: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    assignments = [f"{key}={value}" for key, value in variables.items()]
    # Under an outer make (CI runs `make test`), MAKEFLAGS/MAKELEVEL would add "Entering directory" lines.
    env = {key: value for key, value in os.environ.items() if key not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
    proc = subprocess.run(["make", "--no-print-directory", "-n", *targets, *assignments],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()


def test_make_up_and_down_drive_the_compose_stack() -> None:
    assert make_dry_run("up") == ["docker compose --profile app build",
                                  "docker compose up -d --wait opensearch"]
    assert make_dry_run("down") == ["docker compose --profile app down"]


def test_make_index_and_eval_run_torchrun_in_the_app_service() -> None:
    [index] = make_dry_run("index", GPUS="4", MODEL="models/m", CORPUS="data/c", INDEX="c-idx")
    assert index == ("docker compose --profile app run --rm --entrypoint torchrun app --standalone "
                     "--nproc_per_node 4 -m splade index --model models/m --corpus data/c --index c-idx "
                     "--backend opensearch")
    [evaluate] = make_dry_run("eval", MODEL="models/m", DATASET="data/d", REPORT="out/r")
    assert evaluate.endswith("--nproc_per_node 1 -m splade eval --dataset data/d --splade models/m "
                             "--backend opensearch --out out/r")


def test_the_torchrun_command_make_index_runs_starts_here() -> None:
    """The part of `make index` that runs inside the container, on this machine's CPU (asking for help)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    [line] = make_dry_run("index", GPUS="1")
    args = shlex.split(line)
    inside = args[args.index("--entrypoint") + 3:]  # after "--entrypoint torchrun app"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200"}
    proc = subprocess.run([str(torchrun), *inside, "--help"], capture_output=True, text=True, timeout=180,
                          env=env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--shard" in proc.stdout and "--backend" in proc.stdout
