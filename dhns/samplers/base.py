"""The negative-sampler interface: what a training loss asks of any corruption sampler.

A sampler turns a batch of positives ``(B, 3)`` into a :class:`~dhns.kge.negatives.NegativeBatch`:
the side each positive corrupts and candidate entity ids, either shared by chunks of
positives (``(C, K)``, the cheap classic form) or one row per positive (``(B, K)``, what hard
samplers need). The loss scores both forms the same way (:func:`dhns.kge.loss.score_with_negatives`
reads ``C == B`` as one chunk per positive).

A sampler may keep state (a cache, a generator network, a neighbourhood index). What must
survive a restart goes in :meth:`NegativeSampler.state_dict`; the training stages save it in
their checkpoint. Every draw comes from the ``generator`` passed in, never torch's global RNG.

To add one: subclass, set ``name`` (and ``Options``, a dataclass of its params under
``kge.sampler_options.<name>``), implement :meth:`sample`, and decorate with
:func:`dhns.samplers.registry.register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch


@dataclass(frozen=True)
class SamplerContext:
    """What a sampler may know about the graph: its sizes and training triples ``(n, 3)``
    (the classic samplers need only ``num_entities``)."""

    num_entities: int
    num_relations: int = 0
    train: Tensor = field(default_factory=lambda: torch.empty(0, 3, dtype=torch.long))


@dataclass
class NoOptions:
    """A sampler without params of its own."""


class NegativeSampler:
    """Base class of every registered negative sampler.

    Class attributes a subclass sets:

    - ``name``: the registry key (``kge.negative_sampler``);
    - ``Options``: dataclass of its params (validated like every other param);
    - ``per_positive``: whether it returns one candidate row per positive (``(B, K)``); such
      samplers never return a positive's own entity on the corrupted side;
    - ``uses_model``: whether :meth:`sample` reads the model being trained (scores or
      embeddings, always without gradient);
    - ``cost``: one line on what it costs beyond uniform, shown by ``dhns samplers``.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    per_positive: ClassVar[bool] = False
    uses_model: ClassVar[bool] = False
    cost: ClassVar[str] = ""

    def __init__(self, context: SamplerContext, num_negatives: int, options: Any = None,
                 chunk_size: int = 64) -> None:
        self.context = context
        self.num_entities = context.num_entities
        self.num_negatives = num_negatives
        self.chunk_size = chunk_size
        self.options = options if options is not None else self.Options()

    def sample(self, batch: Tensor, generator: torch.Generator,
               model: MultimodalKGE | None = None) -> NegativeBatch:
        """Negatives for ``batch`` (B, 3) on ``batch.device``, drawn from ``generator``."""
        raise NotImplementedError

    def corrupt_sides(self, batch: Tensor, generator: torch.Generator) -> Tensor:
        """``(B,)`` bool on the CPU: True where the positive corrupts its tail (fair coin)."""
        return torch.rand(len(batch), generator=generator) < 0.5

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors that restore this sampler's state (empty for stateless samplers)."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"negative sampler {self.name} keeps no state, got "
                             f"{sorted(state)}")


def own_entities(batch: Tensor, corrupt_tail: Tensor) -> Tensor:
    """``(B,)``: the entity each positive replaces (its tail or its head)."""
    return torch.where(corrupt_tail.to(batch.device), batch[:, 2], batch[:, 0])


def anchor_entities(batch: Tensor, corrupt_tail: Tensor) -> Tensor:
    """``(B,)``: the entity each positive keeps (its head when the tail is corrupted)."""
    return torch.where(corrupt_tail.to(batch.device), batch[:, 0], batch[:, 2])


def replace_own(candidates: Tensor, own: Tensor, num_entities: int,
                generator: torch.Generator) -> Tensor:
    """``candidates`` (B, K) with every entry equal to its row's ``own`` entity (B,) replaced
    by a uniform draw that differs from it (so no positive is its own negative)."""
    hit = candidates == own[:, None]
    if not bool(hit.any()):
        return candidates
    # A draw from the N - 1 other entities: skip over ``own``.
    draw = torch.randint(num_entities - 1, candidates.shape, generator=generator)
    draw = draw.to(candidates.device)
    draw = draw + (draw >= own[:, None]).long()
    return torch.where(hit, draw, candidates)
