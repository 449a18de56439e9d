"""Stage ``retrain``: NTAT retraining with hierarchical generated negatives (DHNS)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from dhns.config import Params, continuation_kge
from dhns.data.kg import KnowledgeGraph
from dhns.device import resolve_device
from dhns.diffusion.model import DiffusionModel
from dhns.evaluation.filter import FilterIndex
from dhns.negatives import HierarchicalLevels, NTATLoss
from dhns.negatives.diagnostics import epoch_coverage, loss_gradient_report
from dhns.negatives.generated_softmax import GeneratedCandidates, generate_for_triples
from dhns.negatives.mined import (
    MinedCandidates,
    MinedNegativeLoss,
    mine_by_diffusion,
    mine_by_score,
)
from dhns.negatives.ntat import ntat_from_params
from dhns.negatives.pairs import new_diffusion_model
from dhns.samplers import NegativeSampler
from dhns.training.checkpoint import load_diffusion, load_kge
from dhns.training.kgc import kgc_loss
from stages.common import (
    DHNS_CKPT,
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
    stage_record,
    write_record,
)
from stages.continued import BaseLoss, continue_training
from stages.inputs import load_prepared


def mined_negatives(params: Params, kg: KnowledgeGraph, diffusion: DiffusionModel | None,
                    rng: torch.Generator) -> tuple[BaseLoss, Callable[[int], dict]]:
    """For ``retrain.mined``: the ordinary loss with per-triple candidates (mined real
    negatives, known training answers never mined, or generated embeddings) refreshed every
    ``mine_every`` epochs, and a report of it after ``epochs``."""
    cfg = params.retrain
    known = FilterIndex(kg.train, kg.num_relations)
    batch = params.eval.batch_size
    if cfg.mined == "score":
        def mine(model):
            return mine_by_score(model, kg.train, known, cfg.mined_negatives, batch,
                                 cfg.mine_pool, rng)
    else:
        hier = HierarchicalLevels(diffusion, params.model.levels, params.model.sampling_steps)

        def mine(model):
            if cfg.mined == "generated":
                return generate_for_triples(model, hier, kg.train, rng, batch)
            return mine_by_diffusion(model, hier, kg.train, known, cfg.mined_negatives, rng,
                                     batch)
    built: list[MinedNegativeLoss] = []

    def base_loss(gen: torch.Generator, sampler: NegativeSampler | None) -> MinedNegativeLoss:
        cache = (GeneratedCandidates(kg.train, kg.num_entities, kg.num_relations,
                                     cfg.level_weights) if cfg.mined == "generated" else
                 MinedCandidates(kg.train, kg.num_entities, kg.num_relations,
                                 cfg.mined_negatives))
        built.append(MinedNegativeLoss(
            kgc_loss(continuation_kge(params), kg, gen, cache, sampler), cache, mine,
            math.ceil(len(kg.train) / cfg.batch_size), cfg.mine_every, log))
        return built[-1]

    def report(epochs: int) -> dict:
        return {"mined": cfg.mined, **built[-1].report(epochs)}

    per_side = (f"{len(params.model.levels)} generated negatives (one per level)"
                if cfg.mined == "generated" else f"{cfg.mined_negatives} mined negatives")
    log(f"retrain: {per_side} per positive and side ({cfg.mined}) in the "
        f"{continuation_kge(params).loss} loss's softmax, refreshed every {cfg.mine_every} "
        "epochs")
    return base_loss, report


#: Generator offset of the fresh diffusion model's weights under ``retrain.start: scratch``.
SCRATCH_DIFFUSION_OFFSET = 9

#: Fixed training batches on which the loss parts' gradients are measured.
GRADIENT_BATCHES = 4


def loss_gradients(params: Params, kg: KnowledgeGraph, ntat: NTATLoss, checkpoint: Path) -> dict:
    """Gradient norm and share of L_KGC (uniform negatives) and of lambda L_HA's positive and
    negative parts for the KGE in ``checkpoint``, on ``GRADIENT_BATCHES`` fixed training
    batches. Own generators: the same batches, negatives and noise for every checkpoint, and
    the training's random streams are untouched."""
    device = resolve_device(params.device)
    model, _ = load_kge(checkpoint, device, kg.vocabulary(), PREPARED)
    size = params.retrain.batch_size
    order = torch.randperm(len(kg.train), generator=generator(params, offset=60))
    batches = [kg.train[order[i:i + size]].to(device)
               for i in range(0, min(len(order), GRADIENT_BATCHES * size), size)]
    kgc = kgc_loss(continuation_kge(params), kg, generator(params, offset=61))
    return loss_gradient_report(model, batches, kgc, ntat, generator(params, offset=62))


def coverage(params: Params, kg: KnowledgeGraph, ntat: NTATLoss, epochs: int) -> dict:
    """Fraction of the training positives that got generated negatives, per epoch and mean."""
    steps = math.ceil(len(kg.train) / params.retrain.batch_size)
    per_epoch = epoch_coverage(ntat.generated, steps, len(kg.train), epochs)
    return {"generated_coverage": round(sum(per_epoch) / max(1, len(per_epoch)), 4),
            "generated_coverage_per_epoch": [round(c, 4) for c in per_epoch]}


def run(params: Params) -> dict:
    check_outputs(DHNS_CKPT.parent, METRICS, REPORTS, PLOTS)
    cfg = params.retrain
    kg = load_prepared()
    device = resolve_device(params.device)
    diffusion = None
    if cfg.start == "scratch" and cfg.negatives == "dhns":
        # Trained jointly from the KGE's first epoch (config requires retrain.joint).
        architecture, _ = load_kge(PRETRAIN_CKPT, device, kg.vocabulary(), PREPARED)
        diffusion = new_diffusion_model(architecture, params.model,
                                        generator(params, offset=SCRATCH_DIFFUSION_OFFSET))
        log(f"retrain: a freshly initialised diffusion model over {diffusion.modalities}")
    elif cfg.negatives == "dhns" or cfg.mined in ("diffusion", "generated"):
        # The pretrained KGE is checked against the prepared graph in continue_training.
        diffusion, _ = load_diffusion(DIFFUSION_CKPT, device, kg.vocabulary(), PREPARED)
    base_loss, mined_report = (None, None) if cfg.mined == "none" else mined_negatives(
        params, kg, diffusion, generator(params, offset=5))
    if cfg.mined != "none":
        log("retrain: mined candidate stores are not saved, so this run keeps no resume state")

    def finish(summary: dict) -> dict:
        if mined_report is not None:
            summary.update(mined_report(summary["epochs_run"]))
        return write_record("retrain", summary)

    if cfg.negatives == "uniform" or cfg.lambda_ha == 0:
        log("retrain: no NTAT term (retrain.negatives uniform or lambda_ha 0)")
        return finish(continue_training(params, "retrain", DHNS_CKPT, None, base_loss,
                                        resumable=cfg.mined == "none"))
    ntat = ntat_from_params(params, diffusion, generator(params, offset=4),
                            FilterIndex(kg.train, kg.num_relations))
    hier = ntat.hierarchy
    sampling_steps = hier.sampling_steps
    source = "random real entities (the control) at the levels of" if cfg.ha_source == "random" \
        else "DHNS negatives at"
    log(f"retrain: {source} t={hier.levels} of T={diffusion.num_steps}, "
        f"{'full ancestral chain' if sampling_steps is None else f'{sampling_steps} strided steps'}"
        f", refresh every {ntat.refresh_every} step(s), fraction {ntat.generate_fraction}"
        f"{', joint diffusion training' if cfg.joint else ''}, L_HA weighting {cfg.ha_weighting}"
        f"{', known answers left out' if cfg.ha_exclude_known else ''}")
    # From scratch the run starts neither at the pretrained weights nor with a fitted diffusion
    # model.
    start_gradients = (None if cfg.start == "scratch" else
                       loss_gradients(params, kg, ntat, PRETRAIN_CKPT))
    # Resumable unless mined candidates are kept (their stores are not saved).
    summary = continue_training(params, "retrain", DHNS_CKPT, ntat, base_loss,
                                resumable=cfg.mined == "none", stateful={"ntat": ntat})
    summary["loss_gradients"] = {"start": start_gradients,
                                 "end": loss_gradients(params, kg, ntat, DHNS_CKPT)}
    summary.update(coverage(params, kg, ntat, summary["epochs_run"]))
    if ntat.exclude_known is not None:
        excluded, total = ntat.excluded
        summary["ha_excluded_fraction"] = round(excluded / max(1, total), 4)
        log(f"retrain: {summary['ha_excluded_fraction']} of the generated negatives left out "
            "(nearest real entity a known answer)")
    log(f"retrain: gradient shares at the start "
        f"{start_gradients['share'] if start_gradients else '-'}, at the end "
        f"{summary['loss_gradients']['end']['share']}; generated-negative coverage "
        f"{summary['generated_coverage']} of the training positives per epoch")
    epochs = max(1, summary["epochs_run"])
    cost = {f"{k}_seconds_per_epoch": round(v / epochs, 2) for k, v in ntat.seconds.items()}
    summary.update(cost)
    # The equal-budget baseline's epoch time, if it ran here (its report; its metrics in a
    # folder from before the split). For the log and the report only: no DVC dependency.
    base = stage_record("uniform").get("seconds_per_epoch")
    if base:
        summary["epoch_time_vs_uniform"] = round(summary["seconds_per_epoch"] / base, 2)
        log(f"retrain: {summary['seconds_per_epoch']:.2f}s per epoch against "
            f"{base:.2f}s for a uniform epoch ({summary['epoch_time_vs_uniform']}x); "
            f"split per epoch: {cost}")
    return finish(summary)


if __name__ == "__main__":
    run_stage(run, report="retrain", argv=sys.argv[1:])
