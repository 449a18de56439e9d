"""The PNG figures: what each draws, and the PCA behind the projection."""

from __future__ import annotations

from pathlib import Path

import torch

from dhns.figures import (
    projection_figure,
    read_rows,
    save_png,
    scores_figure,
    training_figure,
)
from dhns.negatives.projection import pca_2d


def history(epochs: int, evaluated: set[int]) -> list[dict[str, str]]:
    return [{"epoch": str(e), "loss": str(1.0 / e),
             "valid_mrr": str(0.1 + 0.01 * e) if e in evaluated else ""}
            for e in range(1, epochs + 1)]


def test_training_figure_continues_the_epochs_from_the_checkpoint(tmp_path: Path) -> None:
    fig = training_figure({"pretrain": history(10, {5, 10}), "uniform": history(4, {2, 4}),
                           "dhns": history(4, {2, 4})}, start_epoch=5)
    loss_ax, mrr_ax = fig.axes
    lines = {line.get_label(): line for line in loss_ax.get_lines() if line.get_label()[0] != "_"}
    assert list(lines) == ["pretrain", "uniform", "dhns"]
    assert list(lines["pretrain"].get_xdata()) == list(range(1, 11))
    assert list(lines["dhns"].get_xdata()) == [6, 7, 8, 9]  # after pretrain epoch 5
    mrr = {line.get_label(): line for line in mrr_ax.get_lines() if line.get_label()[0] != "_"}
    assert list(mrr["uniform"].get_xdata()) == [7, 9]  # evaluated epochs only
    save_png(fig, tmp_path / "training.png")
    assert (tmp_path / "training.png").read_bytes().startswith(b"\x89PNG")


def test_scores_and_projection_figures_draw_every_group(tmp_path: Path) -> None:
    (tmp_path / "scores.csv").write_text(
        "score,positive,uniform,level_1,level_2\n-2,0,0.5,0.1,0.2\n0,0.2,0.5,0.9,0.8\n"
        "2,0.8,0,0,0\n")
    fig = scores_figure(read_rows(tmp_path / "scores.csv"))
    assert [line.get_label() for line in fig.axes[0].get_lines()] == [
        "positive", "uniform", "level 1", "level 2"]
    rows = [{"query": str(q), "kind": kind, "entity": "0", "x": str(i), "y": str(-i)}
            for q in range(2) for i, kind in enumerate(
                ["answer", "entity", "entity", "known answer", "level_1", "level_2"])]
    fig = projection_figure(rows)
    assert len(fig.axes) == 2
    labels = [c.get_label() for c in fig.axes[0].collections]
    assert labels == ["entity", "known answer", "level 1", "level 2", "answer"]


def test_pca_keeps_the_two_widest_directions() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(200, 3, generator=g) * torch.tensor([5.0, 2.0, 0.1])
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    points = torch.cat([base, torch.zeros(200, 3)], 1) @ rotation + 7.0
    coords = pca_2d(points)
    assert coords.shape == (200, 2)
    assert torch.allclose(coords.mean(0), torch.zeros(2), atol=1e-4)
    spread = coords.std(0)
    assert 4.5 < spread[0] < 5.5 and 1.7 < spread[1] < 2.3  # the 0.1-wide axis is dropped
