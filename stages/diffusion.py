"""Stage ``diffusion``: train the DiffHEG model on the pretrained embeddings, diagnose it."""

from __future__ import annotations

import sys
import time

import torch

from dhns.config import Params, to_dict
from dhns.device import resolve_device
from dhns.diffusion.model import L1_OF_ZERO_PREDICTOR, DiffusionModel
from dhns.distributed import rank_and_world
from dhns.errors import UserError
from dhns.io import atomic_write_text
from dhns.negatives import HierarchicalLevels, diffusion_pairs
from dhns.negatives.diagnostics import (
    histogram_rows,
    level_dispersion,
    level_scores,
    real_entity_diagnostics,
    summarise,
)
from dhns.negatives.pairs import new_diffusion_model
from dhns.negatives.projection import COLUMNS, projection_rows
from dhns.training.checkpoint import load_kge, save_diffusion
from stages.common import (
    DIFFUSION_CKPT,
    METRICS,
    PLOTS,
    PREPARED,
    PRETRAIN_CKPT,
    REPORTS,
    check_outputs,
    generator,
    log,
    run_stage,
    write_record,
)
from stages.inputs import filter_index, load_prepared
from stages.reporting import write_csv

DIAGNOSTIC_TRIPLES = 1000
PROJECTION_QUERIES = 3  # panels of plots/figures/projection.png
#: abar_{T-1} above this: the reverse chain starts off the training distribution.
TERMINAL_ALPHA_BAR_NOTE = 0.05


def held_out_ratios(diffusion: DiffusionModel, x0, c, stream, seed: int) -> dict[str, float]:
    """Loss ratio to sqrt(2/pi) per stream on held-out pairs, with a fixed generator."""
    with torch.no_grad():
        _, ratios = diffusion.loss(x0, c, stream, torch.Generator().manual_seed(seed))
    return {k: round(v, 4) for k, v in ratios.items()}


def run(params: Params) -> dict:
    if rank_and_world()[1] > 1:
        raise UserError("the diffusion stage runs as one process (its training loop is not "
                        "data-parallel): start it without torchrun")
    check_outputs(DIFFUSION_CKPT.parent, METRICS, REPORTS, PLOTS)
    kg = load_prepared()
    device = resolve_device(params.device)
    cfg = params.model
    vocabulary = kg.vocabulary()
    model, _ = load_kge(PRETRAIN_CKPT, device, vocabulary, PREPARED)
    gen = generator(params, offset=2)
    diffusion = new_diffusion_model(model, cfg, gen)
    streams = diffusion.modalities
    train = kg.train.to(device)
    x0, c, stream = diffusion_pairs(model, train, streams)
    vx0, vc, vstream = diffusion_pairs(model, kg.valid.to(device), streams)
    diffusion.fit_standardisation(x0, c, stream)
    before = held_out_ratios(diffusion, vx0, vc, vstream, params.seed)
    log(f"diffusion: T={cfg.steps} ({cfg.schedule}), {len(x0)} training pairs over streams "
        f"{streams}; held-out loss ratio before training {before}")
    terminal = diffusion.schedule.terminal_alpha_bar
    if terminal > TERMINAL_ALPHA_BAR_NOTE:
        log(f"note: model.schedule {cfg.schedule} with T={cfg.steps} keeps {terminal:.2f} of the "
            "signal at t=T-1 while generation starts from pure noise, so generated negatives "
            "are shrunk towards their condition (the reference's setting; linear1000 or "
            "cosine reach noise)")
    start = time.perf_counter()
    history = diffusion.fit(x0, c, stream, cfg.epochs, cfg.batch_size, cfg.lr, gen,
                          progress=sys.stderr.isatty(),
                          log=None if sys.stderr.isatty() else log)
    seconds = time.perf_counter() - start
    after = held_out_ratios(diffusion, vx0, vc, vstream, params.seed)
    log(f"diffusion: trained {cfg.epochs} epochs in {seconds:.1f}s; held-out loss ratio {after}")

    hier = HierarchicalLevels(diffusion, cfg.levels, cfg.sampling_steps)
    pick = torch.randperm(len(kg.train), generator=gen)[:DIAGNOSTIC_TRIPLES]
    diagnostic = train[pick.to(device)]
    negatives = hier.generate(model, diagnostic, gen)
    known = filter_index(kg)  # the diagnostics' and the projection's known answers
    scores = level_scores(model, hier, diagnostic, gen, negatives)
    summary = {**summarise(scores), "dispersion": level_dispersion(model, hier, negatives),
               **real_entity_diagnostics(model, hier.levels, negatives, known)}
    log(f"diffusion: mean scores {summary['mean_score']} "
        f"(levels ordered: {summary['levels_ordered']}); dispersion vs real embeddings "
        f"{summary['dispersion']}")
    log(f"diffusion: rank among {summary['wrong_answers']:.0f} real wrong answers "
        f"{summary['generated_rank']}; nearest real entity a known answer "
        f"{summary['nearest_known_answer']}")
    report = {
        "steps": cfg.steps,
        "level_steps": hier.levels,
        "terminal_alpha_bar": round(terminal, 6),
        "train_pairs": len(x0),
        "seconds": round(seconds, 1),
        "final_train_loss_ratio": round(history[-1] / L1_OF_ZERO_PREDICTOR, 4),
        "heldout_loss_ratio_before": before,
        "heldout_loss_ratio": after,
        **summary,
    }
    save_diffusion(DIFFUSION_CKPT, diffusion, meta={"dataset": kg.name, "params": to_dict(params),
                                              "report": report}, vocabulary=vocabulary)
    write_record("diffusion", report)
    lines = ["epoch,loss_ratio"] + [f"{i + 1},{v / L1_OF_ZERO_PREDICTOR:.6f}"
                                    for i, v in enumerate(history)]
    atomic_write_text(PLOTS / "diffusion.csv", "\n".join(lines) + "\n")
    # Plot columns named by level index, not by t (t changes with model.steps), so the plot
    # spec in dvc.yaml stays valid: level_1 is the hardest level (smallest t).
    levels = [k for k in scores if k.startswith("t=")]
    rows = histogram_rows({f"level_{levels.index(k) + 1}" if k in levels else k: v
                           for k, v in scores.items()})
    write_csv(PLOTS / "diffusion_scores.csv", list(rows[0]), rows)
    # The projection figure's points come from a generator of their own, so every output
    # above stays what it was without them.
    points = projection_rows(model, hier, diagnostic[:PROJECTION_QUERIES], known,
                             generator(params, offset=7))
    write_csv(PLOTS / "diffusion_projection.csv", COLUMNS, points)
    return report


if __name__ == "__main__":
    run_stage(run, report="diffusion", argv=sys.argv[1:])
