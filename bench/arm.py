"""One screening arm: a continuation stage of a finished pipeline, with param overrides.

Every arm continues the same pretrained checkpoint (and, for DHNS arms, the same trained
sampler) of ``--base``, a folder where the whole pipeline ran (``bench/row.sh``), for the
``retrain.epochs`` budget of the base params, so arms differ only in what their overrides
change and in ``--seed`` (the continuation's seed; ``seed`` never re-pretrains here). The arm
runs in ``<base>/arms/<name>-seed<N>/`` with this repository's stage code, is evaluated on the
full cleaned validation split (model selection) and on test (report), and lands in
``results/arms/<DS>-<name>-seed<N>.json``::

    python -m bench.arm --base ../exp-mkgy --name uniform --stage uniform --seed 0
    python -m bench.arm --base ../exp-mkgy --name mined-score --seed 0 \\
        -S retrain.negatives=uniform -S retrain.mined=score

``--stage pretrain`` trains a new KGE from the base's prepared data and feature tables (a
training-regime arm, e.g. ``-S kge.loss=1vsall``), evaluated the same way; with
``--own-text`` it first extracts its own text features (a text arm, e.g.
``-S 'features.text.template={name}; {relations}'``).

``python -m bench.summary --arms`` prints the paired table against the ``uniform`` arm.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from dhns.config import ConfigError, params_from_dict, parse_assignment, set_dotted, to_dict
from dhns.data.kg import KnowledgeGraph
from dhns.evaluation.categories import kg_test_categories
from dhns.evaluation.evaluator import evaluate
from dhns.evaluation.filter import FilterIndex
from dhns.io import atomic_write_json
from dhns.kge.build import compile_scoring
from dhns.records import read_record
from dhns.training.checkpoint import load_kge
from dhns.training.pretrain import selection_indices

REPO = Path(__file__).resolve().parents[1]
SHARED_ARTIFACTS = ("prepared", "pretrain", "diffusion")
#: A pretrain arm trains its own KGE: it shares only the data and the feature tables.
PRETRAIN_SHARES = ("prepared", "features")
OUTPUT = {"retrain": "retrain", "uniform": "uniform", "pretrain": "pretrain"}


def override(params: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` (value read as YAML, as ``dvc exp run -S`` does)."""
    try:
        set_dotted(params, *parse_assignment(assignment))
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None


def code_commit() -> str | None:
    """This repository's commit (``+changes`` when the work tree differs), or None outside git."""
    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short", "HEAD") + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def prepare_arm(base: Path, work: Path, params: dict, stage: str = "retrain",
                own_text: bool = False) -> None:
    """Link the base's artifacts the arm shares into ``work``; ``own_text``: every feature
    table but ``text.pt``, which the arm extracts itself."""
    for sub in ("artifacts", "metrics", "reports", "plots"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    for name in PRETRAIN_SHARES if stage == "pretrain" else SHARED_ARTIFACTS:
        link = work / "artifacts" / name
        if own_text and name == "features":
            link.mkdir(exist_ok=True)
            for table in (base / "artifacts" / name).iterdir():
                if table.name != "text.pt" and not (link / table.name).exists():
                    (link / table.name).symlink_to(table.resolve())
        elif not link.exists():
            link.symlink_to((base / "artifacts" / name).resolve())
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_stage(work: Path, stage: str, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], cwd=work, env=env,
                   check=True)
    return time.perf_counter() - start


def evaluate_arm(work: Path, stage: str, batch_size: int, compile_kernels: bool,
                 selection: torch.Tensor | None = None) -> dict:
    kg = KnowledgeGraph.load(work / "artifacts" / "prepared")
    model, meta = load_kge(work / "artifacts" / OUTPUT[stage] / "model.pt", "cpu",
                           kg.vocabulary(), work / "artifacts" / "prepared")
    compile_scoring(model, compile_kernels, torch.device("cpu"))  # the stages' fused kernels
    index = FilterIndex(kg.all_triples(), kg.num_relations)
    predictor = model.link_predictor()
    out = {"best_epoch": meta.get("best_epoch")}
    out["valid"] = evaluate(predictor, kg.valid, index, kg.num_entities,
                            batch_size=batch_size, progress=False)
    if selection is not None:  # the valid triples that did not choose the checkpoint
        held_out = torch.ones(len(kg.valid), dtype=torch.bool)
        held_out[selection] = False
        if held_out.any():
            out["valid_held_out"] = evaluate(predictor, kg.valid[held_out], index,
                                             kg.num_entities, batch_size=batch_size,
                                             progress=False)
    out["test"] = evaluate(predictor, kg.test, index, kg.num_entities,
                           categories=kg_test_categories(kg), batch_size=batch_size,
                           progress=False)
    return out


def arm_selection(work: Path, params) -> torch.Tensor:
    """The validation subset the arm's stage chose its checkpoint on (same seed, same draw)."""
    kg = KnowledgeGraph.load(work / "artifacts" / "prepared")
    return selection_indices(params, len(kg.valid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="folder of a finished run")
    parser.add_argument("--name", required=True, help="arm name, e.g. mined-score")
    parser.add_argument("--stage", choices=sorted(OUTPUT), default="retrain")
    parser.add_argument("--seed", type=int, default=0,
                        help="the continuation's seed (a pretrain arm's: its own training)")
    parser.add_argument("-S", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="param override (repeatable)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "arms")
    parser.add_argument("--own-text", action="store_true",
                        help="with --stage pretrain: extract the arm's own text features "
                             "(features.text overrides) instead of sharing the base's")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="reuse the arm folder's trained checkpoint; only evaluate")
    args = parser.parse_args()
    raw = yaml.safe_load((args.base / "params.yaml").read_text())
    raw["seed"] = args.seed
    for assignment in args.overrides:
        override(raw, assignment)
    params = params_from_dict(raw)  # validate before any work
    dataset = params.data.name
    work = args.base / "arms" / f"{args.name}-seed{args.seed}"
    if args.own_text and args.stage != "pretrain":
        raise SystemExit("--own-text needs --stage pretrain (the KGE is trained on them)")
    prepare_arm(args.base, work, raw, args.stage, args.own_text)
    if args.own_text and not args.evaluate_only:
        run_stage(work, "features", "text")
    seconds = None if args.evaluate_only else round(run_stage(work, args.stage), 1)
    # The stage's whole record (metrics and report): the arm tables read its epoch time.
    stage_metrics = read_record(work, OUTPUT[args.stage])
    result = {
        "dataset": dataset, "arm": args.name, "seed": args.seed, "stage": args.stage,
        "overrides": args.overrides,
        "command": "python -m bench.arm " + shlex.join(
            ["--base", os.path.relpath(args.base, REPO), "--name", args.name,
             "--stage", args.stage, "--seed", str(args.seed)]
            + (["--own-text"] if args.own_text else []) + [f"-S{o}" for o in args.overrides]
            + ["--out", os.path.relpath(args.out, REPO)]),
        "code_commit": code_commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "loadavg": os.getloadavg(),
                    "threads": os.environ.get("OMP_NUM_THREADS")},
        "stage_seconds": seconds,
        "training": stage_metrics,
        "params": to_dict(params),
        **evaluate_arm(work, args.stage, params.eval.batch_size, params.kge.compile,
                       arm_selection(work, params)),
    }
    path = args.out / f"{dataset}-{args.name}-seed{args.seed}.json"
    if args.evaluate_only and path.exists():  # keep how and when the training ran
        earlier = json.loads(path.read_text())
        result.update({k: earlier[k] for k in ("command", "date", "machine", "stage_seconds",
                                               "code_commit")
                       if k in earlier})
        result["evaluated"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes")
    atomic_write_json(path, result)
    print(f"{dataset} {args.name} seed {args.seed}: valid MRR {result['valid']['mrr']:.4f}, "
          f"test MRR {result['test']['mrr']:.4f}, "
          f"{stage_metrics.get('seconds_per_epoch')} s/epoch")


if __name__ == "__main__":
    main()
