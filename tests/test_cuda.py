"""CUDA: training, lazy updates, fused ranking and the whole pipeline on a GPU, against the CPU.

Skipped where no CUDA device exists (these 2-core machines); ``bench/gpu.sh`` runs them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from tiny_project import PIPELINE_TINY, dotted

from dhns.data.kg import KnowledgeGraph
from dhns.evaluation.evaluator import evaluate
from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import KGEModelConfig, MultimodalKGE
from dhns.samplers.corruption import uniform_sampler
from dhns.training.kgc import sampled_loss
from dhns.training.trainer import Trainer

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here (bench/gpu.sh runs these)")]
ROOT = Path(__file__).resolve().parents[1]


def rotate(kg: KnowledgeGraph) -> MultimodalKGE:
    return MultimodalKGE(KGEModelConfig("rotate", 32, 6.0, kg.num_entities, kg.num_relations),
                         generator=torch.Generator().manual_seed(0))


def train(model: MultimodalKGE, kg: KnowledgeGraph, sparse: bool) -> list[float]:
    g = torch.Generator().manual_seed(1)  # CPU generator: the same draws on either device
    sampler = uniform_sampler(kg.num_entities, 16, chunk_size=32)
    result = Trainer(model, kg.train, sampled_loss(sampler, 1.0, g), epochs=3, batch_size=128,
                     lr=0.01, generator=g, progress=False, log=lambda _m: None,
                     sparse_updates=sparse).fit()
    return [r["loss"] for r in result.history]


@pytest.mark.parametrize("sparse", [False, True])
def test_training_on_cuda_follows_the_cpu(small_kg: KnowledgeGraph, sparse: bool) -> None:
    cpu = rotate(small_kg)
    gpu = copy.deepcopy(cpu).cuda()
    cpu_losses, gpu_losses = train(cpu, small_kg, sparse), train(gpu, small_kg, sparse)
    assert torch.allclose(torch.tensor(cpu_losses), torch.tensor(gpu_losses), rtol=1e-3)
    for (name, a), b in zip(cpu.state_dict().items(), gpu.state_dict().values(), strict=True):
        assert torch.allclose(a, b.cpu(), atol=1e-3), name


def test_fused_ranking_on_cuda_equals_the_cpu(small_kg: KnowledgeGraph) -> None:
    index = FilterIndex(small_kg.all_triples(), small_kg.num_relations)
    cpu = rotate(small_kg)
    gpu = copy.deepcopy(cpu).cuda()
    gpu.scorer.fuse()  # torch.compile kernels on CUDA
    on_cpu = evaluate(cpu.link_predictor(), small_kg.test, index, small_kg.num_entities,
                      progress=False)
    on_gpu = evaluate(gpu.link_predictor(), small_kg.test, index, small_kg.num_entities,
                      progress=False)
    assert abs(on_cpu["mrr"] - on_gpu["mrr"]) < 1e-4
    assert on_cpu["hits@10"] == on_gpu["hits@10"]


def test_the_pipeline_runs_on_cuda(tmp_path: Path) -> None:
    import dhns

    overrides = {**dotted(PIPELINE_TINY), "device": "cuda"}
    run = dhns.pipeline("synthetic", overrides=overrides, workdir=tmp_path / "run", project=ROOT)
    assert 0 < run.metrics["dhns"]["mrr"] <= 1
    assert "device cuda" in (run.workdir / "logs" / "pretrain.log").read_text()
