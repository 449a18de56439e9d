"""Stage commands run the code of the project they stand in, or refuse and say which; they
run it as ``dvc repro`` does, as ``stages/run NAME`` in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import assert_user_error
from tiny_project import ROOT, copy_code, make_project, write_params
from typer.testing import CliRunner

from dhns.cli import app
from dhns.data import load_dataset

CONSOLE_SCRIPT = Path(sys.executable).parent / "dhns"
TORCHRUN = Path(sys.executable).parent / "torchrun"
PARAMS = "data:\n  synthetic:\n    num_entities: 30\n    num_types: 3\n    num_relations: 3\n"


def _copy_project(dest: Path) -> Path:
    (copy_code(dest) / "params.yaml").write_text(PARAMS)
    return dest


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_stage_command_outside_a_project_is_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "params.yaml").write_text(PARAMS)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["synthetic"])
    assert_user_error(result, str(tmp_path.resolve()), "not a dhns project folder")
    assert not (tmp_path / "data").exists()


def test_installed_command_in_another_checkout_is_refused(tmp_path: Path) -> None:
    """This environment's ``dhns`` runs this checkout's library; in another checkout it names
    both folders and runs nothing, rather than mix the two."""
    if not CONSOLE_SCRIPT.exists():
        pytest.skip("the dhns console script is not installed in this environment")
    other = _copy_project(tmp_path / "other")
    done = _run([str(CONSOLE_SCRIPT), "synthetic"], other)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert str(other.resolve()) in lines[0] and str(ROOT / "dhns") in lines[0]
    assert not (other / "data").exists()


def test_module_form_runs_the_current_checkout(tmp_path: Path) -> None:
    """``python -m dhns`` in a checkout imports that checkout's library and stages: an edit
    there is what runs, as it is under ``dvc repro``."""
    other = _copy_project(tmp_path / "other")
    marker = "generated the synthetic dataset"
    stage = other / "stages" / "synthetic.py"
    stage.write_text(stage.read_text().replace(marker, "EDITED COPY: " + marker))
    done = _run([sys.executable, "-m", "dhns", "synthetic"], other)
    assert done.returncode == 0, done.stderr
    assert "EDITED COPY" in done.stderr
    assert (other / "data" / "synthetic" / "train.tsv").is_file()


def test_params_file_and_overrides_reach_the_stage(tmp_path: Path) -> None:
    other = _copy_project(tmp_path / "other")
    (other / "alt.yaml").write_text(PARAMS + "  dir: alt-data\n")
    done = _run([sys.executable, "-m", "dhns", "synthetic", "--params", "alt.yaml",
                 "-S", "data.synthetic.num_entities=24"], other)
    assert done.returncode == 0, done.stderr
    assert not (other / "data").exists()
    kg, _ = load_dataset(other / "alt-data" / "synthetic")
    assert kg.num_entities == 24


def test_missing_stage_module_is_a_clear_error(tmp_path: Path) -> None:
    other = _copy_project(tmp_path / "other")
    (other / "stages" / "retrain.py").unlink()
    done = _run([sys.executable, "-m", "dhns", "retrain"], other)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "error: stage module stages/retrain.py is not available in this checkout"]


def test_torchrun_runs_a_stage_command_once_per_rank(tmp_path: Path) -> None:
    """Each rank's ``dhns pretrain`` runs ``stages/run pretrain``, which joins torchrun's
    group (its environment) instead of starting torchrun again for launcher.nproc_per_node."""
    if not TORCHRUN.exists():
        pytest.skip("torchrun is not installed in this environment")
    project = copy_code(make_project(tmp_path / "project"))
    write_params(project, "launcher", nproc_per_node=2)
    done = _run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "dhns",
                 "pretrain"], project)
    assert done.returncode == 0, done.stderr[-3000:]
    # Two ranks of one group: rank 0 alone logs the epoch, and no resume file is kept.
    assert done.stderr.count("resume state is kept by single-process runs only") == 1
    assert done.stderr.count("epoch 1 ") == 1, done.stderr
    assert (project / "artifacts" / "pretrain" / "model.pt").is_file()
