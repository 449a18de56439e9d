"""``dhns exps``: DVC experiments in a table that fits a terminal.

``dvc exp show`` prints every param and every metric (hundreds of columns here). This view
keeps, per commit and experiment, what people compare: the params that differ from the
commit it branched from, and the MRR of each evaluated model with DHNS's paired gain.
"""

from __future__ import annotations

from typing import Any

MODELS = ("pretrain", "uniform", "dhns")
EVALUATE = "metrics/evaluate.json"


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _params(entry: dict) -> dict[str, Any]:
    files = ((entry.get("data") or {}).get("params") or {})
    return _flat((files.get("params.yaml") or {}).get("data") or {})


def _mrrs(entry: dict) -> dict[str, float | None]:
    metrics = ((entry.get("data") or {}).get("metrics") or {}).get(EVALUATE) or {}
    data = metrics.get("data") or {}
    return {m: (data.get(m) or {}).get("mrr") for m in MODELS}


def experiment_rows(show: list[dict]) -> list[dict[str, Any]]:
    """Rows from ``dvc exp show --json``: each commit, then its experiments with the params
    that differ from that commit (``changed``: ``{"model.steps": 1000}``) and their MRRs."""
    rows = []
    for commit in show:
        if commit.get("rev") == "workspace":
            continue
        base = _params(commit)
        rows.append({"name": commit.get("name") or commit["rev"][:7], "changed": {},
                     **_mrrs(commit)})
        for group in commit.get("experiments") or []:
            for entry in group.get("revs") or []:
                params = _params(entry)
                changed = {k: v for k, v in params.items() if base.get(k) != v}
                rows.append({"name": "  " + (entry.get("name") or entry["rev"][:7]),
                             "changed": changed, **_mrrs(entry)})
    return rows


def format_rows(rows: list[dict[str, Any]], width: int = 100) -> str:
    """A plain table no wider than ``width`` (the changed params are cut to fit)."""
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    name_width = max([len("experiment")] + [len(r["name"]) for r in rows])
    fixed = name_width + 2 + 4 * 8 + 8
    params_width = max(10, width - fixed)
    header = (f"{'experiment':<{name_width}}  {'pretrain':>8}{'uniform':>8}{'dhns':>8}"
              f"{'gain':>8}  changed params")
    lines = [header, "-" * min(width, len(header) + params_width - len("changed params"))]
    for r in rows:
        gain = (None if r["dhns"] is None or r["uniform"] is None
                else r["dhns"] - r["uniform"])
        changed = " ".join(f"{k}={v}" for k, v in r["changed"].items()) or "-"
        if len(changed) > params_width:
            changed = changed[:params_width - 3] + "..."
        gain_cell = "-" if gain is None else f"{gain:+.4f}"
        lines.append(f"{r['name']:<{name_width}}  {cell(r['pretrain']):>8}"
                     f"{cell(r['uniform']):>8}{cell(r['dhns']):>8}{gain_cell:>8}  {changed}")
    return "\n".join(line[:width] for line in lines)
