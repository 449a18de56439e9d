"""torch.distributed for data-parallel training: one process per device, under ``torchrun``.

What is replicated: the whole model (entity and relation tables included) and the optimiser
on every rank. Each rank computes the loss of its slice of every global batch; gradients are
averaged (all-reduce) before the identical Adam step, so the replicas never drift. Evaluation
shards the queries (:func:`dhns.evaluation.evaluator.evaluate`). Tables too large for one
device would need a partitioned embedding instead (not implemented).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from dhns.errors import DistributedError

#: Seconds a collective waits for a lost rank before failing (``DHNS_DIST_TIMEOUT`` overrides).
DEFAULT_TIMEOUT = 300


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` outside a process group."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this process logs and writes outputs: always, but for ranks > 0 of a group."""
    return rank_and_world()[0] == 0


def init_from_environment(device: torch.device) -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment):
    gloo on CPU, nccl on CUDA (each rank on ``cuda:LOCAL_RANK``). False when not launched so.
    """
    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    timeout = datetime.timedelta(seconds=float(os.environ.get("DHNS_DIST_TIMEOUT",
                                                              DEFAULT_TIMEOUT)))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timeout)
    return True


def collective_device() -> torch.device:
    """Where collective buffers must live for the group's backend."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """Turn a failed collective into one clear :class:`DistributedError`."""
    try:
        yield
    except RuntimeError as exc:
        if isinstance(exc, DistributedError):
            raise
        rank, _ = rank_and_world()
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DistributedError(f"rank {rank}: {what} failed; another rank probably died or "
                               f"stopped ({first})") from exc


def gather_shards(local: Tensor, n: int) -> Tensor:
    """The ranks' contiguous shards of ``n`` items (rank r holds items
    ``[r * ceil(n / W), (r + 1) * ceil(n / W))``), concatenated in order, on every rank."""
    _, world = rank_and_world()
    if world == 1:
        return local
    # Shards before the last non-empty one are full, so the first n entries of the padded
    # concatenation are exactly the items in order.
    size = -(-n // world)
    device = collective_device()
    padded = torch.zeros(size, *local.shape[1:], dtype=local.dtype, device=device)
    padded[:len(local)] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    with _collective("gathering evaluation ranks"):
        torch.distributed.all_gather(parts, padded)
    return torch.cat(parts)[:n].to(local.device)


def average_gradients(parameters: Iterable[Tensor]) -> None:
    """All-reduce the gradients of ``parameters`` to their mean over the ranks (one flat
    buffer, so one collective per step)."""
    _, world = rank_and_world()
    if world == 1:
        return
    params = [p for p in parameters if p.grad is not None]
    device = collective_device()
    flat = torch.cat([p.grad.reshape(-1) for p in params]).to(device)
    with _collective("averaging gradients"):
        torch.distributed.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def broadcast(tensor: Tensor, source: int = 0) -> Tensor:
    """``tensor`` as rank ``source`` holds it, on every rank (same shape and dtype)."""
    _, world = rank_and_world()
    if world == 1:
        return tensor
    buffer = tensor.to(collective_device())
    with _collective("broadcast"):
        torch.distributed.broadcast(buffer, source)
    return buffer.to(tensor.device)


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on some rank (a step to skip, a stop)."""
    _, world = rank_and_world()
    if world == 1:
        return flag
    value = torch.tensor([float(flag)], device=collective_device())
    with _collective("agreeing on a flag"):
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())
