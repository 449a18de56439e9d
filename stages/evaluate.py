"""Stage ``evaluate``: filtered link prediction of pretrain, uniform and dhns side by side."""

from __future__ import annotations

import sys
from pathlib import Path

from dhns.config import Params
from dhns.device import resolve_device
from dhns.evaluation.categories import kg_test_categories
from dhns.evaluation.evaluator import evaluate
from dhns.kge.build import compile_scoring
from dhns.training.checkpoint import load_kge
from stages.common import (
    DHNS_CKPT,
    METRICS,
    PREPARED,
    PRETRAIN_CKPT,
    REPORTS,
    UNIFORM_CKPT,
    check_outputs,
    log,
    run_stage,
    write_record,
)
from stages.inputs import filter_index, load_prepared

CHECKPOINTS = {"pretrain": PRETRAIN_CKPT, "uniform": UNIFORM_CKPT, "dhns": DHNS_CKPT}


def run(params: Params, checkpoints: dict[str, Path] | None = None) -> dict:
    check_outputs(METRICS, REPORTS)
    kg = load_prepared()
    device = resolve_device(params.device)
    split = params.eval.split
    triples = kg.test if split == "test" else kg.valid
    categories = kg_test_categories(kg) if split == "test" else None
    index = filter_index(kg)
    vocabulary = kg.vocabulary()
    results = {}
    for i, (name, path) in enumerate((checkpoints or CHECKPOINTS).items()):
        model, meta = load_kge(path, device, vocabulary, PREPARED)
        note = compile_scoring(model, params.kge.compile, device)
        if i == 0:  # the same for every checkpoint
            log(note)
        metrics = evaluate(model.link_predictor(), triples, index, kg.num_entities,
                           categories=categories, batch_size=params.eval.batch_size,
                           progress=sys.stderr.isatty())
        metrics["checkpoint_epoch"] = meta.get("best_epoch")
        results[name] = metrics
        log(f"{name}: MRR {metrics['mrr']:.4f}  H@1 {metrics['hits@1']:.4f}  "
            f"H@10 {metrics['hits@10']:.4f}  (optimistic MRR {metrics['optimistic']['mrr']:.4f})")
    return write_record("evaluate", results)


if __name__ == "__main__":
    run_stage(run, report="evaluate", argv=sys.argv[1:])
