"""I/O faults: an unwritable output folder fails before the work, a full disk mid-write keeps
the old file, and both are one ``error: <path>: <reason>`` line, no traceback. So is every
:class:`~dhns.errors.UserError`; a plain ``ValueError`` (a bug) keeps its traceback."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from tiny_project import ROOT, copy_code, make_project
from typer.testing import CliRunner

import dhns.io
from dhns.cli import app
from dhns.config import ConfigError
from dhns.data.errors import DataError
from dhns.data.vocabulary import VocabularyError
from dhns.errors import USER_ERRORS, UserError
from dhns.features.weights import WeightMappingError
from dhns.io import atomic_torch_save, atomic_write_json
from dhns.training.checkpoint import CheckpointError
from stages.common import run_stage

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("faults") / "project")


@pytest.fixture
def project(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the prepared project, as the current directory."""
    work = tmp_path / "project"
    shutil.copytree(prepared, work)
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the pretrain stage gets as far as training."""
    from dhns.training.trainer import Trainer

    def fit(self) -> None:
        raise AssertionError("training started before the output folders were checked")

    monkeypatch.setattr(Trainer, "fit", fit)


def run_pretrain(capsys: pytest.CaptureFixture[str]) -> str:
    """Run the pretrain stage as ``python -m stages.pretrain`` does; return its stderr."""
    from stages import pretrain

    with pytest.raises(SystemExit) as info:
        run_stage(pretrain.run, report="pretrain")
    assert info.value.code == 1
    return capsys.readouterr().err


def test_output_folder_that_is_a_file_fails_before_training(
        project: Path, no_training: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Works as root too, where permission bits do not stop writes.
    (project / "plots").write_text("not a folder")
    assert run_pretrain(capsys) == "error: plots: not writable (Not a directory)\n"
    assert not (project / "artifacts" / "pretrain" / "model.pt").exists()


def test_read_only_file_system_fails_before_training(
        project: Path, no_training: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if Path(dir) == Path("artifacts/pretrain"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(Path(dir) / ".x.tmp"))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(dhns.io.tempfile, "mkstemp", mkstemp)
    assert run_pretrain(capsys) == (
        "error: artifacts/pretrain: not writable (Read-only file system)\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits; the tests above "
                    "cover the check with a file in the folder's place and with EROFS")
def test_read_only_folder_fails_before_training(
        project: Path, no_training: None, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "metrics").chmod(0o555)
    try:
        assert run_pretrain(capsys) == "error: metrics: not writable (Permission denied)\n"
    finally:
        (project / "metrics").chmod(0o755)


def test_cli_stage_checks_its_outputs_first(project: Path) -> None:
    """``dhns pretrain`` runs the stage in a process of its own: its one ``error:`` line and
    exit status are the command's."""
    copy_code(project)  # a checkout of its own, whose stages the command runs
    (project / "metrics").rename(project / "metrics.old")
    (project / "metrics").write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "dhns", "pretrain"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == ["error: metrics: not writable (Not a directory)"]
    assert not (project / "artifacts" / "pretrain" / "model.pt").exists()


def _fill_disk_on(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """Every write of ``target``'s temp file writes a few bytes, then hits a full disk."""
    real = Path.write_text

    def write_text(self: Path, text: str, *args, **kwargs) -> int:
        if self.name.startswith(f".{target}.") and self.name.endswith(".tmp"):
            real(self, text[:5])
            raise ENOSPC
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_full_disk_keeps_the_old_json_and_names_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics" / "pretrain.json"
    path.parent.mkdir()
    path.write_text('{"mrr": 0.3}\n')
    _fill_disk_on(monkeypatch, "pretrain.json")
    with pytest.raises(OSError) as info:
        atomic_write_json(path, {"mrr": 0.4})
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(path))
    assert path.read_text() == '{"mrr": 0.3}\n'
    assert [p.name for p in path.parent.iterdir()] == ["pretrain.json"]  # no temp file left


def test_full_disk_keeps_the_old_checkpoint(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.pt"
    atomic_torch_save(path, {"w": torch.ones(3)})
    before = path.read_bytes()

    def save(obj, f, *args, **kwargs) -> None:
        f.write(b"PK\x03\x04 half an archive")
        raise ENOSPC

    monkeypatch.setattr(dhns.io.torch, "save", save)
    with pytest.raises(OSError) as info:
        atomic_torch_save(path, {"w": torch.zeros(3)})
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(path))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_full_disk_in_a_stage_is_one_line_and_keeps_the_old_metrics(
        project: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from stages import prepare

    old = (project / "metrics" / "prepare.json").read_text()
    _fill_disk_on(monkeypatch, "prepare.json")
    with pytest.raises(SystemExit) as info:
        run_stage(prepare.run, report="prepare")
    assert info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "error: metrics/prepare.json: No space left on device"
    assert all(line.startswith(("prepared ", "warning: ")) for line in err[:-1]), err
    assert (project / "metrics" / "prepare.json").read_text() == old


# --------------------------------------------------------------------------- user errors, bugs


@pytest.mark.parametrize("cls", [ConfigError, DataError, CheckpointError, VocabularyError,
                                 WeightMappingError])
def test_error_classes_are_user_errors(cls: type[Exception]) -> None:
    assert issubclass(cls, UserError) and issubclass(cls, USER_ERRORS)
    assert issubclass(UserError, ValueError)  # `except ValueError` still catches them all


def test_a_plain_value_error_is_no_user_error() -> None:
    assert not issubclass(ValueError, USER_ERRORS)


def _raise(exc: Exception):
    def fn(*args, **kwargs):
        raise exc
    return fn


def test_stage_user_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "params.yaml").write_text("{}\n")
    with pytest.raises(SystemExit) as info:
        run_stage(_raise(UserError("bad input")), params_path=str(tmp_path / "params.yaml"))
    assert info.value.code == 1
    assert capsys.readouterr().err == "error: bad input\n"


def test_stage_bug_keeps_its_traceback(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "params.yaml").write_text("{}\n")
    with pytest.raises(ValueError, match="^bug$") as info:  # not SystemExit: it propagates
        run_stage(_raise(ValueError("bug")), params_path=str(tmp_path / "params.yaml"))
    assert not isinstance(info.value, UserError)
    assert "error:" not in capsys.readouterr().err


# `dhns results` imports no torch, so a real process (with Python's own traceback printing)
# costs well under a second; results_table stands for any library function with a bug.
RESULTS_WITH_A_BUG = ("import dhns.cli.results as results\n"
                      "def bug(results):\n"
                      "    raise ValueError('bug in the table code')\n"
                      "results.results_table = bug\n"
                      "from dhns.cli import app\n"
                      "app(prog_name='dhns')\n")


def _results(tmp_path: Path, metrics: str, code: str) -> subprocess.CompletedProcess:
    (tmp_path / "evaluate.json").write_text(metrics)
    # This checkout's library, whichever checkout the environment has installed.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, "results", "--metrics", "evaluate.json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_cli_bug_keeps_its_traceback(tmp_path: Path) -> None:
    done = _results(tmp_path, '{"dhns": {"mrr": 0.5}}', RESULTS_WITH_A_BUG)
    assert done.returncode != 0
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip().endswith("ValueError: bug in the table code")
    assert "error:" not in done.stderr


def test_cli_user_error_is_one_line_in_a_real_process(tmp_path: Path) -> None:
    done = _results(tmp_path, "{not json", RESULTS_WITH_A_BUG)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: evaluate.json: not valid JSON")
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_bug_is_not_reported_as_a_user_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import dhns.cli.results as results

    (tmp_path / "evaluate.json").write_text('{"dhns": {"mrr": 0.5}}')
    monkeypatch.setattr(results, "results_table", _raise(ValueError("bug")))
    result = CliRunner().invoke(app, ["results", "--metrics", str(tmp_path / "evaluate.json")])
    assert type(result.exception) is ValueError and str(result.exception) == "bug"
    assert "error:" not in result.stderr
