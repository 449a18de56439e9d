"""Stage commands run the code of the project they stand in, or refuse and say which."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import assert_user_error
from typer.testing import CliRunner

from dhns.cli import app

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).parent / "dhns"
PARAMS = "data:\n  synthetic:\n    num_entities: 30\n    num_types: 3\n    num_relations: 3\n"


def _copy_project(dest: Path) -> Path:
    for name in ("dhns", "stages"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    (dest / "params.yaml").write_text(PARAMS)
    return dest


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
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
