"""Stage ``retrain``: NTAT retraining with hierarchical generated negatives (DHNS)."""

from __future__ import annotations

import json

import torch

from dhns.config import Params
from dhns.device import resolve_device
from dhns.diffusion.sampler import DiffusionSampler
from dhns.io import atomic_write_json
from dhns.negatives import HierarchicalGenerator, NTATLoss
from dhns.training.checkpoint import load_sampler
from stages.common import (
    DHNS_CKPT,
    METRICS,
    PLOTS,
    PREPARED,
    SAMPLER_CKPT,
    check_outputs,
    generator,
    log,
    run_stage,
)
from stages.continued import continue_training
from stages.inputs import load_prepared


def build_ntat(params: Params, sampler: DiffusionSampler, rng: torch.Generator) -> NTATLoss:
    """NTAT's loss term as the ``retrain`` and ``model`` params ask for (``faithful``: full
    ancestral chain, fresh negatives for the whole batch at every step)."""
    cfg = params.retrain
    faithful = cfg.faithful
    hier = HierarchicalGenerator(sampler, params.model.levels,
                                 None if faithful else params.model.sampling_steps)
    return NTATLoss(
        hier, cfg.lambda_ha, cfg.level_weights, cfg.level_margins if cfg.margins else None,
        rng=rng,
        refresh_every=1 if faithful else cfg.refresh_every,
        generate_fraction=1.0 if faithful else cfg.generate_fraction,
        joint_lr=params.model.lr if cfg.joint else None,
        adversarial_temperature=(params.kge.adversarial_temperature
                                 if cfg.ha_weighting == "adversarial" else None),
    )


def run(params: Params) -> dict:
    check_outputs(DHNS_CKPT.parent, METRICS, PLOTS)
    cfg = params.retrain
    if cfg.sampler == "uniform":
        log("retrain: retrain.sampler is uniform, so no generated negatives (ablation)")
        return continue_training(params, "retrain", DHNS_CKPT, extra_loss=None)
    device = resolve_device(params.device)
    # The pretrained KGE is checked against the prepared graph in continue_training.
    sampler, _ = load_sampler(SAMPLER_CKPT, device, load_prepared().vocabulary(), PREPARED)
    ntat = build_ntat(params, sampler, generator(params, offset=4))
    hier = ntat.generator
    sampling_steps = hier.sampling_steps
    log(f"retrain: DHNS negatives at t={hier.levels} of T={sampler.num_steps}, "
        f"{'full ancestral chain' if sampling_steps is None else f'{sampling_steps} strided steps'}"
        f", refresh every {ntat.refresh_every} step(s), fraction {ntat.generate_fraction}"
        f"{', joint sampler training' if cfg.joint else ''}, L_HA weighting {cfg.ha_weighting}")
    summary = continue_training(params, "retrain", DHNS_CKPT, extra_loss=ntat)
    epochs = max(1, summary["epochs_run"])
    cost = {f"{k}_seconds_per_epoch": round(v / epochs, 2) for k, v in ntat.seconds.items()}
    summary.update(cost)
    uniform = METRICS / "uniform.json"
    if uniform.exists():  # for the log only: the equal-budget baseline's epoch time
        base = json.loads(uniform.read_text()).get("seconds_per_epoch")
        if base:
            summary["epoch_time_vs_uniform"] = round(summary["seconds_per_epoch"] / base, 2)
            log(f"retrain: {summary['seconds_per_epoch']:.2f}s per epoch against "
                f"{base:.2f}s for a uniform epoch ({summary['epoch_time_vs_uniform']}x); "
                f"split per epoch: {cost}")
    atomic_write_json(METRICS / "retrain.json", summary)
    return summary


if __name__ == "__main__":
    run_stage(run, metrics="retrain")
