"""Masked attention fusion over modalities (AdaMF-style, docs/method.md, section 1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ModalityFusion(nn.Module):
    """``a_m = softmax_m(q . tanh(e_m))`` over the modalities an entity has; ``e = sum a_m e_m``.

    A missing modality gets weight exactly 0, so its (meaningless) projection never leaks in.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(width))  # zero init: start from the plain mean

    def forward(self, embeddings: Tensor, mask: Tensor) -> Tensor:
        """``embeddings`` (M, n, D), ``mask`` (M, n) bool -> fused (n, D).

        Every entity must have at least one modality (structure always is).
        """
        logits = torch.tanh(embeddings) @ self.query  # (M, n)
        logits = logits.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=0)  # (M, n)
        return (weights.unsqueeze(-1) * embeddings).sum(dim=0)
