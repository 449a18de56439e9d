"""The pipeline's PNG figures, drawn with matplotlib from the plot CSVs the stages write.

- :func:`training_figure`: loss and validation MRR of pretrain, uniform and dhns on one pair
  of axes, the continuations' epochs counted on from the pretrained checkpoint's epoch;
- :func:`scores_figure`: score densities of the positives, each hardness level and the
  uniform negatives (``plots/diffusion_scores.csv``);
- :func:`projection_figure`: PCA of the real entities and the generated negatives around a
  few queries (``plots/diffusion_projection.csv``, :mod:`dhns.negatives.projection`).

They are DVC image plots (``dvc.yaml``), the view of the results that needs no network.
Only matplotlib's non-interactive Agg backend is used.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dhns.io import atomic_write  # noqa: E402

#: The three trained models, in the colours every figure uses.
RUNS = {"pretrain": "tab:grey", "uniform": "tab:blue", "dhns": "tab:red"}
DPI = 110


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """A CSV file's rows as dicts of strings (empty cells stay ``""``)."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _number(cell: str) -> float:
    return float(cell) if cell not in ("", None) else math.nan


def training_figure(histories: Mapping[str, Sequence[Mapping[str, str]]],
                    start_epoch: int) -> Figure:
    """Loss (left) and validation MRR (right) per epoch of each run in ``histories``
    (``{"pretrain": rows, "uniform": rows, "dhns": rows}``, rows of ``epoch``, ``loss``,
    ``valid_mrr``). Continuation epoch ``e`` is drawn at ``start_epoch + e``: they continue
    the checkpoint of pretrain epoch ``start_epoch``."""
    fig, (loss_ax, mrr_ax) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=DPI)
    for name, rows in histories.items():
        offset = 0 if name == "pretrain" else start_epoch
        epochs = [offset + int(r["epoch"]) for r in rows]
        loss_ax.plot(epochs, [_number(r["loss"]) for r in rows], color=RUNS.get(name),
                     label=name, linewidth=1.4)
        points = [(e, _number(r["valid_mrr"])) for e, r in zip(epochs, rows, strict=True)
                  if not math.isnan(_number(r["valid_mrr"]))]
        if points:
            mrr_ax.plot(*zip(*points, strict=True), color=RUNS.get(name), marker="o",
                        markersize=3, label=name, linewidth=1.4)
    for ax, title in ((loss_ax, "training loss"), (mrr_ax, "validation MRR (selection subset)")):
        ax.axvline(start_epoch, color="black", linewidth=0.6, linestyle=":")
        ax.set_xlabel("epoch (continuations counted on from the pretrained checkpoint)")
        ax.set_title(title)
        ax.legend(frameon=False)
    loss_ax.set_yscale("log")
    fig.tight_layout()
    return fig


def scores_figure(rows: Sequence[Mapping[str, str]]) -> Figure:
    """Score densities, one line per column of ``plots/diffusion_scores.csv`` after
    ``score`` (``positive``, ``uniform``, ``level_1`` the hardest, ...)."""
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=DPI)
    x = [_number(r["score"]) for r in rows]
    groups = [k for k in rows[0] if k != "score"] if rows else []
    levels = [g for g in groups if g.startswith("level_")]
    shades = plt.get_cmap("autumn")
    for group in groups:
        if group == "positive":
            style = {"color": "tab:green", "linewidth": 2.0}
        elif group == "uniform":
            style = {"color": "tab:blue", "linewidth": 2.0}
        else:
            style = {"color": shades(levels.index(group) / max(1, len(levels))),
                     "linewidth": 1.3}
        ax.plot(x, [_number(r[group]) for r in rows], label=group.replace("_", " "), **style)
    ax.set_xlabel("score f(h, r, t) of the pretrained KGE")
    ax.set_ylabel("fraction of triples")
    ax.set_title("positives, generated negatives by hardness level, uniform negatives")
    ax.legend(frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def projection_figure(rows: Sequence[Mapping[str, str]]) -> Figure:
    """One panel per query of ``plots/diffusion_projection.csv``: the real entities nearest to
    the answer (grey; other known answers green), the answer (black star) and the generated
    tails per level (level 1, the hardest, darkest)."""
    queries = sorted({int(r["query"]) for r in rows})
    fig, axes = plt.subplots(1, max(1, len(queries)), figsize=(4.2 * max(1, len(queries)), 4),
                             dpi=DPI, squeeze=False)
    kinds = sorted({r["kind"] for r in rows if r["kind"].startswith("level_")},
                   key=lambda k: int(k.split("_")[1]))
    shades = plt.get_cmap("autumn")
    for ax, q in zip(axes[0], queries, strict=False):
        mine = [r for r in rows if int(r["query"]) == q]

        def scatter(kind: str, mine=mine, ax=ax, **style) -> None:
            points = [(float(r["x"]), float(r["y"])) for r in mine if r["kind"] == kind]
            if points:
                ax.scatter(*zip(*points, strict=True), label=kind.replace("_", " "), **style)

        scatter("entity", s=8, color="lightgrey")
        scatter("known answer", s=16, color="tab:green")
        for i, kind in enumerate(kinds):
            scatter(kind, s=14, color=shades(i / max(1, len(kinds))), alpha=0.8)
        scatter("answer", s=120, marker="*", color="black")
        ax.set_title(f"query {q + 1}: nearest real entities and generated tails",
                     fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(frameon=False, fontsize="x-small", loc="best")
    fig.tight_layout()
    return fig


def save_png(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` to ``path`` atomically, then close it."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
