"""``dhns.pipeline()``: the whole DVC pipeline from Python, in a run folder of its own.

(The module is ``runs``, not ``pipeline``: a submodule named ``pipeline`` would shadow the
function ``dhns.pipeline`` once imported.)

>>> import dhns                                                          # doctest: +SKIP
>>> result = dhns.pipeline(dataset="synthetic", retrain__epochs=5)       # doctest: +SKIP
>>> result.metrics["dhns"]["mrr"]                                        # doctest: +SKIP
0.16...
>>> result.model.predict_tails("blue cone 262", "located near", k=3)     # doctest: +SKIP
>>> result.save("my-run")                                                # doctest: +SKIP

It runs the stage commands of the project's ``dvc.yaml``, in their order, as ``dvc repro``
would (the same ``stages/run`` programs, so the same code paths and outputs), in a fresh
folder holding the run's ``params.yaml``: the project's params with the dataset and the
overrides applied, validated before anything runs. DVC itself is not involved: nothing is
cached, and the project's own artifacts are left alone. ``tests/test_pipeline_api.py`` runs it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dhns.config import Params, params_from_dict, set_dotted
from dhns.errors import UserError
from dhns.project import project_root
from dhns.records import read_record

#: Which checkpoint each evaluated model of ``metrics/evaluate.json`` comes from.
CHECKPOINTS = {"pretrain": "artifacts/pretrain/model.pt", "uniform": "artifacts/uniform/model.pt",
               "dhns": "artifacts/retrain/model.pt"}
#: What :meth:`PipelineResult.save` keeps of a run folder.
KEPT = ("params.yaml", "metrics", "reports", "plots", "logs", *CHECKPOINTS.values())


class StageFailed(RuntimeError):
    """A stage of :func:`pipeline` exited with an error; the message holds its log's tail."""


@dataclass
class PipelineResult:
    """A finished :func:`pipeline` run.

    Attributes:
        workdir: the run folder (``params.yaml``, ``artifacts/``, ``metrics/``, ``reports/``,
            ``plots/``, ``logs/<stage>.log``).
        params: the validated params the run used.
        metrics: the evaluate stage's whole record, ``metrics/evaluate.json`` with the detail
            of ``reports/evaluate.json`` merged in: per model (``pretrain``, ``uniform``,
            ``dhns``) the filtered MRR, MR and Hits@1/3/10 on the evaluated split, optimistic,
            per side and per category, and the stage's ``resources``.
        seconds: wall time of each stage.
    """

    workdir: Path
    params: Params
    metrics: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    _models: dict[str, Any] = field(default_factory=dict, repr=False)

    def load_model(self, name: str = "dhns"):  # -> dhns.api.TrainedModel (lazy import)
        """The trained model ``name`` (``pretrain``, ``uniform`` or ``dhns``) with its graph,
        for ``predict_tails`` / ``predict_heads`` (:class:`dhns.api.TrainedModel`)."""
        if name not in CHECKPOINTS:
            raise KeyError(f"no model {name!r}; choose from {list(CHECKPOINTS)}")
        if name not in self._models:
            from dhns.api import load

            self._models[name] = load(self.workdir / CHECKPOINTS[name],
                                      self.workdir / "artifacts" / "prepared")
        return self._models[name]

    @property
    def model(self):
        """The DHNS-retrained model (:meth:`load_model` ``("dhns")``)."""
        return self.load_model("dhns")

    def save(self, directory: str | Path) -> Path:
        """Copy the run's params, metrics, reports, plots, logs and the three checkpoints to
        ``directory`` (created; must not exist yet) and return it."""
        out = Path(directory)
        if out.exists():
            raise FileExistsError(f"{out}: already exists; save into a new folder")
        for rel in KEPT:
            source = self.workdir / rel
            if source.is_dir():
                shutil.copytree(source, out / rel)
            elif source.is_file():
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, out / rel)
        return out


def stage_commands(project: Path) -> list[tuple[str, list[str]]]:
    """``(stage name, argv after stages/run)`` of every stage of ``dvc.yaml``, in order."""
    spec = yaml.safe_load((project / "dvc.yaml").read_text()) or {}
    commands = []
    for name, stage in (spec.get("stages") or {}).items():
        argv = shlex.split(stage["cmd"])
        if argv[:1] != ["stages/run"]:
            raise UserError(f"{project / 'dvc.yaml'}: stage {name} does not run stages/run: "
                            f"{stage['cmd']}")
        commands.append((name, argv[1:]))
    return commands


def pipeline(dataset: str = "synthetic", *, overrides: Mapping[str, Any] | None = None,
             workdir: str | Path | None = None, project: str | Path | None = None,
             verbose: bool = False, **params: Any) -> PipelineResult:
    """Run the whole pipeline on ``dataset`` and return its result.

    Args:
        dataset: ``data.name``: ``synthetic`` (generated in the run folder) or a dataset in
            the project's ``data.dir`` (``dhns data import`` / ``download`` put them there).
        overrides: params by dotted key, as ``dvc exp run -S`` takes them
            (``{"kge.dim": 32, "model.steps": 100}``).
        workdir: the run folder; default a new temporary folder. Must be empty or absent.
        project: the project checkout whose ``dvc.yaml``, ``stages/`` and ``params.yaml``
            are used; default the current folder.
        verbose: stream the stages' logs; otherwise one line per stage (logs are kept in
            ``workdir/logs``).
        **params: more overrides, ``__`` for the dots: ``retrain__epochs=5``.

    Raises:
        ConfigError: a bad override (before anything runs).
        StageFailed: a stage exited with an error.
    """
    root = project_root(project)
    raw = yaml.safe_load((root / "params.yaml").read_text()) or {}
    assignments = {"data.name": dataset, **dict(overrides or {}),
                   **{key.replace("__", "."): value for key, value in params.items()}}
    for key, value in assignments.items():
        set_dotted(raw, key, value)
    data_dir = Path(raw.get("data", {}).get("dir", "data"))
    if dataset != "synthetic" and not data_dir.is_absolute():
        set_dotted(raw, "data.dir", str(root / data_dir))  # the project's imported datasets
    checked = params_from_dict(raw)
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="dhns-run-"))
    if work.exists() and any(work.iterdir()):
        raise FileExistsError(f"{work}: not empty; give pipeline() a new or empty workdir")
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    seconds: dict[str, float] = {}
    for name, argv in stage_commands(root):
        if name == "synthetic" and dataset != "synthetic":
            continue
        seconds[name] = _run(root, work, name, argv, verbose)
    metrics = read_record(work, "evaluate")
    return PipelineResult(work.resolve(), checked, metrics, seconds)


def start_stage(root: Path, argv: Sequence[str], cwd: Path, **popen: Any) -> subprocess.Popen:
    """``stages/run ARGV`` of the project ``root``, started in ``cwd`` (``popen``: more
    :class:`subprocess.Popen` arguments), with this interpreter (``stages/run`` reads
    ``DHNS_PYTHON``) and ``root`` first on the module path: ``root``'s stages and library run,
    whatever ``cwd`` is."""
    env = {**os.environ, "DHNS_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([str(root / "stages" / "run"), *argv], cwd=cwd, env=env, **popen)


def _run(root: Path, work: Path, name: str, argv: list[str], verbose: bool) -> float:
    """One stage in ``work``; its output goes to ``work/logs/<name>.log`` (and the terminal
    when ``verbose``). Returns its wall time."""
    log = work / "logs" / f"{name}.log"
    start = time.perf_counter()
    with log.open("w") as sink:
        process = start_stage(root, argv, work, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            sink.write(line)
            if verbose:
                sys.stderr.write(line)
        status = process.wait()
    took = time.perf_counter() - start
    if status != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise StageFailed(f"stage {name} failed (exit {status}) in {work}; log {log}:\n{tail}")
    print(f"pipeline: {name} done in {took:.1f}s", file=sys.stderr, flush=True)
    return round(took, 2)
