"""Resume after a kill: a pretraining killed anywhere and rerun ends bit-identical to an
uninterrupted one; a stop request saves and exits cleanly; a bad resume file starts fresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dhns.config import SyntheticConfig, params_from_dict
from dhns.data import generate_synthetic, load_dataset
from dhns.errors import STOPPED_EXIT
from dhns.training.pretrain import pretrain_kge
from dhns.training.resume import ResumeFile, fingerprint

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"seed": 3, "kge": {"dim": 8, "modalities": ["structure"], "num_negatives": 8,
                             "negative_sampler": "nscaching", "compile": False},
          "pretrain": {"epochs": 6, "batch_size": 16, "eval_every": 2, "patience": 0,
                       "max_valid": 50}}

# The run a subprocess makes: pretraining with a resume file, one checkpoint per epoch; FAULT
# (from the environment) kills it at a chosen point; the final weights and history land in OUT.
SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    import dhns.io, dhns.training.pretrain as pretrain
    from dhns.config import params_from_dict
    from dhns.data import load_dataset
    from dhns.errors import TrainingStopped
    from dhns.training.resume import ResumeFile

    dataset, resume_path, out, params_json = sys.argv[1:5]
    kind, _, count = os.environ.get("FAULT", "none:0").partition(":")
    calls = {"n": 0}

    def hit():
        calls["n"] += 1
        return calls["n"] == int(count)

    if kind in ("step", "term"):  # the n-th training step
        build = pretrain.kgc_loss
        def kgc_loss(*args, **kwargs):
            inner = build(*args, **kwargs)
            def loss(model, batch, step):
                if hit():
                    os.kill(os.getpid(), signal.SIGKILL if kind == "step" else signal.SIGTERM)
                return inner(model, batch, step)
            return loss
        pretrain.kgc_loss = kgc_loss
    elif kind == "validate":  # the n-th validation
        build_validator = pretrain.selection_validator
        def selection_validator(*args):
            inner = build_validator(*args)
            def validate(model):
                if hit():
                    os.kill(os.getpid(), signal.SIGKILL)
                return inner(model)
            return validate
        pretrain.selection_validator = selection_validator
    elif kind == "write":  # the n-th resume write, after the data, before the rename
        replace = os.replace
        def dying_replace(src, dst):
            if str(dst).endswith(".pt") and hit():
                os.kill(os.getpid(), signal.SIGKILL)
            replace(src, dst)
        dhns.io.os.replace = dying_replace

    kg, _ = load_dataset(dataset)
    params = params_from_dict(json.loads(params_json))
    resume = ResumeFile(resume_path, "run-1", log=lambda m: print(m, flush=True))
    try:
        done = pretrain.pretrain_kge(params, kg, {}, log=lambda m: print(m, flush=True),
                                     resume=resume, checkpoint_every=1)
    except TrainingStopped as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        sys.exit(130)
    torch.save({"state": done.model.state_dict(),
                "history": [{k: v for k, v in r.items() if k != "seconds"}
                            for r in done.result.history],
                "best_epoch": done.result.best_epoch}, out)
""")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "synthetic"
    generate_synthetic(SyntheticConfig(num_entities=60, num_types=3, num_relations=3,
                                       triples_per_relation=80, image_size=8), out)
    return out


def _run(dataset: Path, work: Path, fault: str = "none:0") -> subprocess.CompletedProcess:
    script = work / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "FAULT": fault, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), str(dataset), str(work / "resume.pt"),
                           str(work / "out.pt"), json.dumps(PARAMS)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("uninterrupted")
    done = _run(dataset, work)
    assert done.returncode == 0, done.stderr
    assert not (work / "resume.pt").exists()  # a finished run removes its resume state
    return torch.load(work / "out.pt")


def _assert_same(a: dict, b: dict) -> None:
    assert a["history"] == b["history"] and a["best_epoch"] == b["best_epoch"]
    for key, value in a["state"].items():
        assert torch.equal(value, b["state"][key]), key


# 12 steps per epoch (192 triples): step 23 is mid epoch 2, validation 2 is epoch 4's,
# write 3 is epoch 3's.
@pytest.mark.parametrize("fault", ["step:23", "validate:2", "write:3"])
def test_killed_anywhere_then_rerun_is_bit_identical(dataset: Path, uninterrupted: dict,
                                                       tmp_path: Path, fault: str) -> None:
    killed = _run(dataset, tmp_path, fault)
    assert killed.returncode == -9, (killed.stdout, killed.stderr)
    assert (tmp_path / "resume.pt").exists() and not (tmp_path / "out.pt").exists()
    rerun = _run(dataset, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming from" in rerun.stdout
    _assert_same(torch.load(tmp_path / "out.pt"), uninterrupted)
    assert not (tmp_path / "resume.pt").exists()


def test_sigterm_saves_then_stops_and_the_rerun_finishes(dataset: Path, uninterrupted: dict,
                                                         tmp_path: Path) -> None:
    stopped = _run(dataset, tmp_path, "term:20")
    assert stopped.returncode == STOPPED_EXIT
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stopped: pretrain: stopped at epoch 2")
    assert not (tmp_path / "out.pt").exists()
    saved = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert (saved["epoch"], saved["position"]) == (2, 8)  # mid-epoch, after step 20
    rerun = _run(dataset, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    _assert_same(torch.load(tmp_path / "out.pt"), uninterrupted)


def test_a_corrupt_or_foreign_resume_file_starts_fresh(dataset: Path, tmp_path: Path) -> None:
    kg, _ = load_dataset(dataset)
    params = params_from_dict({**PARAMS, "pretrain": {**PARAMS["pretrain"], "epochs": 2}})
    logs: list[str] = []
    path = tmp_path / "resume.pt"
    path.write_bytes(b"not a checkpoint")
    fresh = pretrain_kge(params, kg, {}, log=logs.append,
                         resume=ResumeFile(path, "run-1", logs.append), checkpoint_every=1)
    assert any("is unreadable" in m and "starting fresh" in m for m in logs)
    assert not path.exists()
    plain = pretrain_kge(params, kg, {}, log=lambda _m: None)
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, fresh.model.state_dict()[key])
    ResumeFile(path, "other-run").save({"epoch": 2})
    logs.clear()
    pretrain_kge(params, kg, {}, log=logs.append,
                 resume=ResumeFile(path, "run-1", logs.append), checkpoint_every=1)
    assert any("from other params or inputs" in m for m in logs)


def test_fingerprint_covers_params_and_input_bytes(tmp_path: Path) -> None:
    data = tmp_path / "x.bin"
    data.write_bytes(b"a")
    first = fingerprint({"lr": 1}, [data])
    assert fingerprint({"lr": 1}, [data]) == first
    assert fingerprint({"lr": 2}, [data]) != first
    data.write_bytes(b"b")
    assert fingerprint({"lr": 1}, [data]) != first


def test_a_stopped_stage_exits_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    from dhns.errors import TrainingStopped
    from stages.common import run_stage

    (tmp_path / "params.yaml").write_text("seed: 0\n")
    monkeypatch.chdir(tmp_path)

    def stage(params):
        raise TrainingStopped("pretrain: stopped at epoch 3, step 40; rerun to resume")

    with pytest.raises(SystemExit) as exit_info:
        run_stage(stage)
    assert exit_info.value.code == STOPPED_EXIT
    assert capsys.readouterr().err == ("stopped: pretrain: stopped at epoch 3, step 40; rerun "
                                       "to resume\n")
