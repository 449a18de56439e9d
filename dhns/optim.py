"""The optimizer every training loop uses."""

from __future__ import annotations

from collections.abc import Iterable

import torch

_FUSED_DEVICES = ("cpu", "cuda")


def adam(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam, with the single-kernel (``fused``) update where the device supports it.

    The default per-tensor update makes a dozen passes over each parameter; on a 2-core CPU it
    took more time than the whole fused RotatE scoring of a step (a (12842, 500) entity table:
    14k -> 27k training triples/s on DB15K). The arithmetic is the same.
    """
    params = [p for p in params if p.requires_grad]
    fused = bool(params) and all(p.device.type in _FUSED_DEVICES and p.is_floating_point()
                                 for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)
