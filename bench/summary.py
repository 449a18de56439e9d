"""The README's benchmark table: mean and spread over seeds of ``results/<DS>-seed<N>.json``.

Usage::

    python -m bench.summary [--results results] [--tag TAG]
    python -m bench.summary --arms       # screening arms (bench.arm), paired by seed
    python -m bench.summary --samplers   # the negative-sampler comparison (bench.samplers)

Rows: one per dataset and model (pretrain, uniform, dhns). Realistic-tie MRR and Hits@1/3/10
as ``mean ± std`` over the seeds found (``± std`` is omitted with one seed; std is the sample
standard deviation), the optimistic-tie MRR beside them, the seeds used and the mean wall time
of a whole run (marked when a run's JSON carries a note, e.g. a resumed run). Files with a
tag (``<DS>-seed<N>-<TAG>.json``, ablations) are left out unless
``--tag`` names it.

A second table answers the benchmark's DHNS target (beat the equal-budget uniform run by more
than the seed spread): per dataset the per-seed difference ``MRR(dhns) - MRR(uniform)``, its
mean, and the seed spread (sample std) of the uniform MRR.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from dhns.records import merge_records

MODELS = ("pretrain", "uniform", "dhns")
METRICS = ("mrr", "hits@1", "hits@3", "hits@10")
_NAME = re.compile(r"^(?P<dataset>.+)-seed(?P<seed>\d+)(?:-(?P<tag>.+))?$")


def stage_record(run: dict, stage: str) -> dict:
    """The whole record of ``stage`` in a ``bench.collect`` result: its metrics merged with its
    report. Results collected before the split hold everything under ``metrics`` and have no
    ``reports``, so they read the same."""
    return merge_records(run.get("metrics", {}).get(stage, {}),
                         run.get("reports", {}).get(stage, {}))


def load_runs(results: Path, tag: str | None = None) -> dict[str, list[dict]]:
    """``{dataset: [run, ...]}`` for the files whose name matches ``<DS>-seed<N>[-tag]``."""
    runs: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(results.glob("*-seed*.json")):
        match = _NAME.match(path.stem)
        if match is None or match["tag"] != tag:
            continue
        run = json.loads(path.read_text())
        if "evaluate" not in run.get("metrics", {}):
            continue
        run["seed"] = int(match["seed"])
        runs[match["dataset"]].append(run)
    return dict(runs)


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(runs: dict[str, list[dict]]) -> str:
    lines = ["| dataset | model | MRR | H@1 | H@3 | H@10 | MRR (optimistic) | seeds | "
             "wall per run |", "|---|---|---|---|---|---|---|---|---|"]
    for dataset, dataset_runs in runs.items():
        seeds = ",".join(str(r["seed"]) for r in sorted(dataset_runs, key=lambda r: r["seed"]))
        walls = [r["wall_seconds"] for r in dataset_runs if r.get("wall_seconds")]
        wall = f"{statistics.mean(walls) / 60:.0f} min" if walls else "-"
        if any(r.get("note") for r in dataset_runs):  # e.g. a resumed run: see its note
            wall += " (see note)"
        for model in MODELS:
            evals = [stage_record(r, "evaluate")[model] for r in dataset_runs]
            cells = [_cell([e[m] for e in evals]) for m in METRICS]
            optimistic = _cell([e["optimistic"]["mrr"] for e in evals])
            lines.append(f"| {dataset} | {model} | {' | '.join(cells)} | {optimistic} | "
                         f"{seeds} | {wall} |")
    return "\n".join(lines)


def dhns_vs_uniform(runs: dict[str, list[dict]]) -> str:
    """Per dataset: paired MRR differences dhns - uniform by seed, their mean, uniform's spread,
    and whether the mean gain exceeds that spread."""
    lines = ["| dataset | dhns - uniform by seed | mean | uniform seed std | beats spread |",
             "|---|---|---|---|---|"]
    for dataset, dataset_runs in runs.items():
        ordered = sorted(dataset_runs, key=lambda r: r["seed"])
        evals = [stage_record(r, "evaluate") for r in ordered]
        diffs = [e["dhns"]["mrr"] - e["uniform"]["mrr"] for e in evals]
        by_seed = ", ".join(f"{r['seed']}: {d:+.4f}" for r, d in zip(ordered, diffs, strict=True))
        mean = statistics.mean(diffs)
        if len(evals) > 1:
            spread = statistics.stdev(e["uniform"]["mrr"] for e in evals)
            spread_cell, verdict = f"{spread:.4f}", "yes" if mean > spread else "no"
        else:
            spread_cell, verdict = "- (one seed)", "-"
        lines.append(f"| {dataset} | {by_seed} | {mean:+.4f} | {spread_cell} | {verdict} |")
    return "\n".join(lines)


def load_arms(folder: Path) -> dict[str, dict[str, dict[int, dict]]]:
    """``{dataset: {arm: {seed: result}}}`` from ``bench.arm``'s ``<DS>-<arm>-seed<N>.json``."""
    arms: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for path in sorted(folder.glob("*-seed*.json")):
        result = json.loads(path.read_text())
        arms[result["dataset"]][result["arm"]][int(result["seed"])] = result
    return arms


def arms_table(arms: dict[str, dict[str, dict[int, dict]]], baseline: str = "uniform") -> str:
    """Per dataset and arm: valid and test MRR (realistic), each paired against the baseline
    arm of the same seed (mean difference and, with 2+ seeds, its std), and epoch time
    relative to the baseline's."""
    lines = [f"| dataset | arm | seeds | valid MRR | test MRR | valid - {baseline} | "
             f"held-out valid - {baseline} | test - {baseline} (by seed) | "
             f"s/epoch vs {baseline} |",
             "|---|---|---|---|---|---|---|---|---|"]
    for dataset, by_arm in arms.items():
        base = by_arm.get(baseline, {})
        for arm, by_seed in by_arm.items():
            seeds = sorted(by_seed)
            valid = [by_seed[s]["valid"]["mrr"] for s in seeds]
            test = [by_seed[s]["test"]["mrr"] for s in seeds]
            paired = [s for s in seeds if s in base]
            if arm != baseline and paired:
                dv = [by_seed[s]["valid"]["mrr"] - base[s]["valid"]["mrr"] for s in paired]
                dt = [by_seed[s]["test"]["mrr"] - base[s]["test"]["mrr"] for s in paired]
                dv_cell = _signed(dv)
                # valid minus the triples that chose the checkpoint (bench.arm writes it)
                held = [s for s in paired if "valid_held_out" in by_seed[s]
                        and "valid_held_out" in base[s]]
                dh_cell = _signed([by_seed[s]["valid_held_out"]["mrr"]
                                   - base[s]["valid_held_out"]["mrr"] for s in held]
                                  ) if held else "-"
                dt_cell = _signed(dt) + " (" + ", ".join(f"{d:+.4f}" for d in dt) + ")"
                ratio = statistics.mean(
                    by_seed[s]["training"]["seconds_per_epoch"]
                    / base[s]["training"]["seconds_per_epoch"] for s in paired)
                ratio_cell = f"{ratio:.2f}x"
            else:
                dv_cell = dh_cell = dt_cell = ratio_cell = "-"
            lines.append(f"| {dataset} | {arm} | {','.join(map(str, seeds))} | {_cell(valid)} | "
                         f"{_cell(test)} | {dv_cell} | {dh_cell} | {dt_cell} | {ratio_cell} |")
    return "\n".join(lines)


def samplers_table(results: Path) -> str:
    """The sampler comparison (``bench.samplers``): per dataset and sampler, test MRR and
    Hits@k and valid MRR, mean over the seeds found; the paired held-out valid and test
    differences against ``uniform``; and epoch time against uniform's."""
    lines = ["| dataset | sampler | seeds | test MRR | H@1 | H@3 | H@10 | valid MRR | "
             "held-out valid - uniform | test - uniform | s/epoch (x uniform) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    by_dataset: dict[str, dict[int, dict]] = defaultdict(dict)
    for path in sorted(results.glob("*-samplers-seed*.json")):
        table = json.loads(path.read_text())
        by_dataset[table["dataset"]][int(table["seed"])] = table["rows"]
    for dataset, by_seed in by_dataset.items():
        names = list(dict.fromkeys(n for rows in by_seed.values() for n in rows))
        for name in names:
            seeds = sorted(s for s, rows in by_seed.items() if name in rows)
            got = [by_seed[s][name] for s in seeds]

            def mean(key: str, rows: list[dict] = got) -> str:
                values = [r[key] for r in rows if r.get(key) is not None]
                return _cell(values) if values else "-"

            paired = [s for s in seeds if "uniform" in by_seed[s]]
            held = "-"
            if name != "uniform" and paired:
                diff = _signed([by_seed[s][name]["test_mrr"] - by_seed[s]["uniform"]["test_mrr"]
                                for s in paired])
                # The held-out triples differ by seed: only their paired difference is read.
                both = [s for s in paired if by_seed[s][name].get("valid_held_out_mrr")
                        is not None and by_seed[s]["uniform"].get("valid_held_out_mrr")
                        is not None]
                if both:
                    held = _signed([by_seed[s][name]["valid_held_out_mrr"]
                                    - by_seed[s]["uniform"]["valid_held_out_mrr"] for s in both])
                ratio = statistics.mean(by_seed[s][name]["seconds_per_epoch"]
                                        / by_seed[s]["uniform"]["seconds_per_epoch"]
                                        for s in paired)
                speed = f"{statistics.mean(r['seconds_per_epoch'] for r in got):.1f} " \
                        f"({ratio:.2f}x)"
            else:
                diff = "-"
                speed = f"{statistics.mean(r['seconds_per_epoch'] for r in got):.1f}"
            lines.append(f"| {dataset} | {name} | {','.join(map(str, seeds))} | "
                         f"{mean('test_mrr')} | {mean('test_hits@1')} | {mean('test_hits@3')} | "
                         f"{mean('test_hits@10')} | {mean('valid_mrr')} | "
                         f"{held} | {diff} | {speed} |")
    return "\n".join(lines)


def _signed(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:+.4f}"
    return f"{statistics.mean(values):+.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--tag", default=None, help="summarise the runs with this tag instead")
    parser.add_argument("--arms", action="store_true",
                        help="the screening arms of results/arms (bench.arm) instead")
    parser.add_argument("--baseline", default="uniform",
                        help="with --arms: the arm every other one is paired with")
    parser.add_argument("--samplers", action="store_true",
                        help="the negative-sampler comparison (bench.samplers) instead")
    args = parser.parse_args()
    if args.samplers:
        if not any(args.results.glob("*-samplers-seed*.json")):
            raise SystemExit(f"no <DS>-samplers-seed<N>.json in {args.results} "
                             "(run python -m bench.samplers)")
        print(samplers_table(args.results))
        return
    if args.arms:
        arms = load_arms(args.results / "arms")
        if not arms:
            raise SystemExit(f"no bench.arm results in {args.results / 'arms'}")
        print(arms_table(arms, args.baseline))
        return
    runs = load_runs(args.results, args.tag)
    if not runs:
        raise SystemExit(f"no <DS>-seed<N>{'-' + args.tag if args.tag else ''}.json with "
                         f"evaluation metrics in {args.results}")
    print(table(runs))
    print()
    print(dhns_vs_uniform(runs))


if __name__ == "__main__":
    main()
