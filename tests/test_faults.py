"""I/O faults: an unwritable output folder fails before the work, a full disk mid-write keeps
the old file, and both are one ``error: <path>: <reason>`` line, no traceback."""

from __future__ import annotations

import errno
import importlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from cli_checks import assert_user_error
from tiny_project import make_project
from typer.testing import CliRunner

import dhns.io
from dhns.cli import app
from dhns.io import atomic_torch_save, atomic_write_json
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
        run_stage(pretrain.run, metrics="pretrain")
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


def test_cli_stage_checks_its_outputs_first(project: Path, no_training: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import dhns.cli as cli

    # This checkout's stages, run in the scratch project (which is no checkout of its own).
    monkeypatch.setattr(cli, "_import_stages",
                        lambda module: importlib.import_module(f"stages.{module}"))
    (project / "metrics").rename(project / "metrics.old")
    (project / "metrics").write_text("not a folder")
    result = CliRunner().invoke(app, ["pretrain"])
    assert_user_error(result, "metrics: not writable (Not a directory)")


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
        run_stage(prepare.run, metrics="prepare")
    assert info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "error: metrics/prepare.json: No space left on device"
    assert all(line.startswith(("prepared ", "warning: ")) for line in err[:-1]), err
    assert (project / "metrics" / "prepare.json").read_text() == old
