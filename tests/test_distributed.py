"""Data-parallel runs with two gloo processes on the CPU: sharded evaluation equals the
single-process one exactly, a two-rank pretraining follows the single-process loss
trajectory, and a rank that dies gives the others a clear error instead of a hang."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from dhns.config import SyntheticConfig, params_from_dict
from dhns.data import generate_synthetic, load_dataset
from dhns.evaluation.evaluator import evaluate
from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import KGEModelConfig, MultimodalKGE
from dhns.training.pretrain import pretrain_kge

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"
PARAMS = {"seed": 1, "kge": {"dim": 8, "modalities": ["structure"], "num_negatives": 16,
                             "compile": False},
          "pretrain": {"epochs": 8, "batch_size": 64, "eval_every": 4, "patience": 0,
                       "max_valid": 40}}

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from dhns.config import params_from_dict
    from dhns.data import load_dataset
    from dhns.distributed import init_from_environment, rank_and_world
    from dhns.evaluation.evaluator import evaluate
    from dhns.evaluation.filter import FilterIndex
    import dhns.training.pretrain as pretrain

    job, dataset, out, params_json = sys.argv[1:5]
    init_from_environment(torch.device("cpu"))
    rank, world = rank_and_world()
    kg, _ = load_dataset(dataset)
    params = params_from_dict(json.loads(params_json))
    if job == "evaluate":
        from dhns.kge.model import KGEModelConfig, MultimodalKGE
        cfg = KGEModelConfig("rotate", 8, 6.0, kg.num_entities, kg.num_relations)
        model = MultimodalKGE(cfg, generator=torch.Generator().manual_seed(5)).eval()
        result = evaluate(model.link_predictor(), kg.test[:37],
                          FilterIndex(kg.all_triples(), kg.num_relations), kg.num_entities,
                          batch_size=8, progress=False)
    else:
        if job == "die":  # rank 1 vanishes at its third step
            build = pretrain.kgc_loss
            def kgc_loss(*args, **kwargs):
                inner = build(*args, **kwargs)
                def loss(model, batch, step):
                    if rank == 1 and step == 2:
                        os._exit(3)
                    return inner(model, batch, step)
                return loss
            pretrain.kgc_loss = kgc_loss
        from dhns.errors import DistributedError
        try:
            done = pretrain.pretrain_kge(params, kg, {}, log=lambda m: None)
        except DistributedError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        result = {"loss": [r["loss"] for r in done.result.history],
                  "valid": [r.get("valid_mrr") for r in done.result.history],
                  "weights_sum": float(done.model.entity.double().sum())}
    if rank == 0:
        json.dump(result, open(out, "w"))
    else:
        json.dump(result, open(out + f".rank{rank}", "w"))
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "synthetic"
    generate_synthetic(SyntheticConfig(num_entities=60, num_types=3, num_relations=3,
                                       triples_per_relation=90, image_size=8), out)
    return out


def _launch(job: str, dataset: Path, work: Path, world: int = 2, timeout: float = 240,
            torchrun: bool = False, dist_timeout: int = 120) -> list[subprocess.CompletedProcess]:
    """``dist_timeout``: DHNS_DIST_TIMEOUT of the ranks; generous by default, because on a
    loaded 2-core machine one rank may still be importing torch when the other waits in a
    collective (a gloo timeout there aborted rank 1 in two loaded full-suite runs)."""
    script = work / "job.py"
    script.write_text(SCRIPT)
    args = [str(script), job, str(dataset), str(work / "out.json"), json.dumps(PARAMS)]
    base = {**os.environ, "OMP_NUM_THREADS": "1", "DHNS_DIST_TIMEOUT": str(dist_timeout),
            "PYTHONPATH": str(ROOT)}
    if torchrun:
        done = subprocess.run([str(TORCHRUN), "--standalone", f"--nproc_per_node={world}",
                               *args], env=base, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
        return [done]
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, *args], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**base, "RANK": str(r), "LOCAL_RANK": str(r),
                                   "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
                                   "MASTER_PORT": str(port)})
             for r in range(world)]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out


def test_sharded_evaluation_equals_single_process_exactly(dataset: Path,
                                                          tmp_path: Path) -> None:
    done = _launch("evaluate", dataset, tmp_path, torchrun=TORCHRUN.exists())
    assert all(p.returncode == 0 for p in done), done[0].stderr[-2000:]
    kg, _ = load_dataset(dataset)
    cfg = KGEModelConfig("rotate", 8, 6.0, kg.num_entities, kg.num_relations)
    model = MultimodalKGE(cfg, generator=torch.Generator().manual_seed(5)).eval()
    single = evaluate(model.link_predictor(), kg.test[:37],
                      FilterIndex(kg.all_triples(), kg.num_relations), kg.num_entities,
                      batch_size=8, progress=False)
    assert json.loads((tmp_path / "out.json").read_text()) == json.loads(json.dumps(single))


def test_two_ranks_follow_the_single_process_trajectory(dataset: Path, tmp_path: Path) -> None:
    done = _launch("train", dataset, tmp_path)
    assert all(p.returncode == 0 for p in done), done[0].stderr[-2000:]
    two = json.loads((tmp_path / "out.json").read_text())
    other = json.loads((tmp_path / "out.json.rank1").read_text())
    assert other["weights_sum"] == two["weights_sum"]  # the replicas never drift
    kg, _ = load_dataset(dataset)
    torch.set_num_threads(1)
    one = pretrain_kge(params_from_dict(PARAMS), kg, {}, log=lambda _m: None)
    single = [r["loss"] for r in one.result.history]
    # Same global batch, other negatives (each rank draws its own): within 10% per epoch,
    # and both fall by the same order.
    for a, b in zip(two["loss"], single, strict=True):
        assert abs(a - b) <= 0.10 * b, (two["loss"], single)
    assert two["loss"][-1] < 0.9 * two["loss"][0]


def test_a_dead_rank_is_a_clear_error_not_a_hang(dataset: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    rank0, rank1 = _launch("die", dataset, tmp_path, timeout=120, dist_timeout=30)
    assert rank1.returncode == 3
    assert rank0.returncode == 1, rank0.stderr[-2000:]
    assert "error: rank 0:" in rank0.stderr and "another rank probably died" in rank0.stderr
    assert time.perf_counter() - start < 100
