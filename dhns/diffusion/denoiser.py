"""Conditional noise-prediction network eps(x_t, t, c, m) of DiffHEG (docs/method.md, section 3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoidal embedding of (integer or real) timesteps.

    Args:
        t: (B,) timesteps. dim: output width (odd widths get one zero column).
    Returns:
        (B, dim) float32 embedding ``[cos(t w_i), sin(t w_i)]``, ``w_i = max_period^(-i/half)``.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], 1)], dim=-1)
    return emb


def _linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer left uninitialised (no draw from the global RNG); the caller inits it."""
    return nn.utils.skip_init(nn.Linear, in_features, out_features)


class Denoiser(nn.Module):
    """eps_hat = net([x_t, emb(t) + emb(m), c]) for a batch mixing modalities.

    Layout (docs/method.md, section 3, the reference's MLP): sinusoidal time embedding -> MLP,
    plus a learned embedding per stream (modality x direction); input ``[x_t, time, c]`` (3D)
    -> LayerNorm -> Linear(3D, hD) -> SiLU -> LayerNorm -> Linear(hD, D) -> Linear(D, D).

    Args:
        dim: D, the embedding width (same for all modalities).
        num_modalities: number of rows of the modality embedding.
        hidden_mult: h, hidden width multiplier (docs/method.md, section 3: 4).
        generator: the only source of the initial weights (torch's global RNG is never
            drawn from). ``None`` means a generator seeded with 0, for a module whose weights
            are about to be loaded from a checkpoint.
    """

    def __init__(self, dim: int, num_modalities: int = 3, hidden_mult: int = 4,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.num_modalities = num_modalities
        self.time_mlp = nn.Sequential(_linear(dim, dim), nn.SiLU(), _linear(dim, dim))
        self.modality_emb = nn.utils.skip_init(nn.Embedding, num_modalities, dim)
        hidden = hidden_mult * dim
        self.net = nn.Sequential(
            nn.LayerNorm(3 * dim),
            _linear(3 * dim, hidden),
            nn.SiLU(),
            nn.LayerNorm(hidden),
            _linear(hidden, dim),
            # Two stacked linears without a non-linearity are one linear map in disguise; kept
            # because the reference layout (docs/method.md, section 3) has them (they change the
            # optimisation only).
            _linear(dim, dim),
        )
        self.reset_parameters(generator or torch.Generator().manual_seed(0))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialise every weight from ``generator``: linears as ``nn.Linear`` does
        (U(+-1/sqrt(fan_in)) for weight and bias), the modality table N(0, 0.02^2)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        # Small init: the modality offset should not swamp the time signal at the start.
        nn.init.normal_(self.modality_emb.weight, std=0.02, generator=generator)
        # Zero-init the output: an untrained denoiser predicts eps_hat = 0, i.e. exactly the
        # "collapsed" baseline whose L1 loss ratio is 1, and training starts from there.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x_t: Tensor, t: Tensor, c: Tensor, modality: Tensor) -> Tensor:
        """Predict the noise.

        Args:
            x_t: (B, D) noised (standardised) state. t: (B,) or (1,) (broadcast) long
                timesteps in 0..T-1.
            c: (B, D) (standardised) condition. modality: (B,) long modality index.
        Returns:
            (B, D) predicted noise ``eps_hat``.
        """
        temb = self.time_mlp(sinusoidal_embedding(t, self.dim).to(x_t.dtype))
        temb = temb + self.modality_emb(modality)
        return self.net(torch.cat([x_t, temb, c], dim=-1))
