"""The negative-sampler comparison on one finished run (issue "negative-sampling suite").

Every row continues ``--base``'s pretrained checkpoint for the same budget (``retrain.epochs``
of the base params, the ``uniform`` stage's), with one registered sampler as
``kge.negative_sampler`` and everything else as the uniform arm has it; the DHNS row is the
``retrain`` stage of the base params (NTAT over the base's trained diffusion model, the
paper's design). Each row is a :mod:`bench.arm` run, recorded with its command in
``results/arms/<DS>-sampler-<name>-seed<N>.json``; the table lands in
``results/<DS>-samplers-seed<N>.json``::

    python -m bench.samplers --base ../base-mkgy0 --seed 0
    python -m bench.samplers --base ../base-mkgy0 --seed 0 --only nscaching,sans
    python -m bench.samplers --base ../base-db15k0 --seed 0 --results results/db15k-base-epyc
    python -m bench.summary --samplers          # the table over every dataset and seed

``--base`` is a folder where the pipeline ran at least to ``diffusion`` (for instance
``bench/row.sh MKG-Y 0 diffusion`` in a clone). Rows already in ``results/arms`` are reused
unless ``--rerun``. Run it with ``OMP_NUM_THREADS=1``; two at once at most on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from dhns.io import atomic_write_json
from dhns.samplers import known_samplers

REPO = Path(__file__).resolve().parents[1]
#: The DHNS paper's comparison order; samplers registered later follow.
PAPER_ORDER = ("uniform", "bernoulli", "nscaching", "kbgan", "sans", "mans", "mmrns")
DHNS_ROW = "dhns-ntat"


def sampler_names(only: str | None) -> list[str]:
    names = [n for n in PAPER_ORDER if n in known_samplers()]
    names += [n for n in known_samplers() if n not in names]
    names.append(DHNS_ROW)
    if only:
        wanted = [n.strip() for n in only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise SystemExit(f"--only: unknown {', '.join(unknown)} (known: {', '.join(names)})")
        names = [n for n in names if n in wanted]
    return names


def arm_command(base: Path, name: str, seed: int, out: Path) -> list[str]:
    """The ``bench.arm`` call of one row, writing its file into ``out``."""
    command = [sys.executable, "-m", "bench.arm", "--base", str(base), "--name",
               f"sampler-{name}", "--seed", str(seed), "--out", str(out)]
    if name == DHNS_ROW:
        return command + ["--stage", "retrain"]
    return command + ["--stage", "uniform", "-S", f"kge.negative_sampler={name}"]


def row(result: dict, name: str) -> dict:
    """One table row from a ``bench.arm`` result."""
    test = result["test"]
    return {"sampler": name, "command": result["command"],
            "valid_mrr": result["valid"]["mrr"],
            "valid_held_out_mrr": result.get("valid_held_out", {}).get("mrr"),
            **{f"test_{k}": test[k] for k in ("mrr", "hits@1", "hits@3", "hits@10")},
            "best_epoch": result["best_epoch"],
            "seconds_per_epoch": result["training"]["seconds_per_epoch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="folder of a finished run")
    parser.add_argument("--seed", type=int, default=0, help="the continuations' seed")
    parser.add_argument("--only", help="comma-separated rows to run (default: all)")
    parser.add_argument("--rerun", action="store_true", help="rerun rows already recorded")
    parser.add_argument("--results", type=Path, default=REPO / "results",
                        help="where the table goes; its arms/ holds the rows (another machine's "
                             "rows belong in a folder of their own)")
    args = parser.parse_args()
    if not (args.base / "params.yaml").is_file():
        raise SystemExit(f"{args.base}: no params.yaml (not a finished run)")
    dataset = yaml.safe_load((args.base / "params.yaml").read_text())["data"]["name"]
    names = sampler_names(args.only)

    def arm_file(name: str) -> Path:
        return args.results / "arms" / f"{dataset}-sampler-{name}-seed{args.seed}.json"

    out = args.results / f"{dataset}-samplers-seed{args.seed}.json"
    for i, name in enumerate(names, 1):
        if args.rerun or not arm_file(name).is_file():
            print(f"[{i}/{len(names)}] {name}", flush=True)
            subprocess.run(arm_command(args.base, name, args.seed, arm_file(name).parent),
                           check=True, cwd=REPO,
                           env={**os.environ, "OMP_NUM_THREADS":
                                os.environ.get("OMP_NUM_THREADS", "1")})
        # Rebuilt from every recorded row after each one: a killed comparison keeps the rest,
        # and two comparisons of the same dataset and seed (split by --only) cannot lose rows.
        rows = {n: row(json.loads(arm_file(n).read_text()), n)
                for n in sampler_names(None) if arm_file(n).is_file()}
        atomic_write_json(out, {"dataset": dataset, "seed": args.seed, "rows": rows})
    print(f"wrote {os.path.relpath(out)}")


if __name__ == "__main__":
    main()
