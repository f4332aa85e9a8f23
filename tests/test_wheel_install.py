"""The wheel alone: built with `pip wheel --no-deps`, installed into a fresh virtual environment (the
libraries come from the current environment, nothing is downloaded), and run from an empty folder:
`splade quickstart`, then `splade train quickstart --max-steps 2`."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def test_the_wheel_runs_quickstart_and_train_quickstart_from_an_empty_folder(tmp_path: Path) -> None:
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", COLUMNS="120")
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "splade", source / "splade", ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist"), str(source)], tmp_path, env)
    [wheel] = (tmp_path / "dist").glob("splade-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    venv_site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         tmp_path, env).strip())
    # the libraries of this environment, after the venv's own packages (a .pth line appends a folder)
    (venv_site / "libraries.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path, env)

    empty = tmp_path / "empty"
    empty.mkdir()
    located = run([str(python), "-c", "import splade; print(splade.__file__)"], empty, env)
    assert located.strip().startswith(str(venv_site)), located
    splade = str(venv / "bin" / "splade")
    output = run([splade, "quickstart", "--set", "data.epoch_size=32"], empty, env)
    assert "[6/6] eval" in output and (empty / "outputs" / "quickstart" / "report" / "report.html").is_file()
    # the quickstart trained into the same folder: a new run replaces it (without --overwrite: one line)
    output = run([splade, "train", "quickstart", "--max-steps", "2", "--overwrite"], empty, env)
    assert "trained 2 steps" in output
    assert (empty / "outputs" / "quickstart" / "train" / "best_model" / "README.md").is_file()
    print(f"wheel, venv, quickstart and train quickstart: {time.perf_counter() - started:.0f} s")


# about 75 s on two busy cores: marked slow, but in the default suite (`-m "not slow"` leaves it out)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
