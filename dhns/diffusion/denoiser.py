"""Conditional noise-prediction network eps(x_t, t, c, m) of DiffHEG (docs/method.md, section 3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
        temb = self.time_embedding(t, x_t.dtype) + self.modality_emb(modality)
        return self.net(torch.cat([x_t, temb, c], dim=-1))

    def time_embedding(self, t: Tensor, dtype: torch.dtype) -> Tensor:
        """(B,) or (1,) long timesteps -> (B, D) or (1, D) learned time embedding."""
        return self.time_mlp(sinusoidal_embedding(t, self.dim).to(dtype))

    def conditioned(self, c: Tensor, modality: Tensor) -> ConditionedDenoiser:
        """This network with ``c`` and ``modality`` fixed, for a reverse chain (see
        :class:`ConditionedDenoiser`). ``c``: (B, D) standardised condition; ``modality``: (B,)."""
        return ConditionedDenoiser(self, c, modality)


class ConditionedDenoiser:
    """``eps_hat(x_t, t)`` of a :class:`Denoiser` whose condition and modality stay fixed.

    A reverse chain calls the denoiser ten or more times with the same ``c``: the first linear's
    ``c`` and modality columns, and their share of the LayerNorm statistics, are computed once
    here, so each call multiplies only its ``x_t`` by a third of the first layer. It is the same
    function as :meth:`Denoiser.forward` up to float rounding (``tests/test_diffusion.py``).
    Inference only: built and called without autograd. The weights are read when it is built,
    so build one per chain.
    """

    def __init__(self, denoiser: Denoiser, c: Tensor, modality: Tensor) -> None:
        norm, first, _, self.hidden_norm, second, third = denoiser.net
        d = denoiser.dim
        self.dim = d
        self.time_embedding = denoiser.time_embedding
        self.eps = norm.eps
        self.out = nn.Sequential(second, third)
        # LayerNorm then Linear: W(g * (z - mu) / s + b) + bias
        #   = (W_x (g_x x) + W_t (g_t temb) + W_c (g_c c) - mu W g) / s + W b + bias.
        scaled = first.weight * norm.weight  # (hD, 3D): W diag(g)
        # Contiguous: a column slice as the weight would be copied at every call.
        self.w_x, self.w_time = scaled[:, :d].contiguous(), scaled[:, d:2 * d].contiguous()
        self.w_gain = scaled.sum(1)  # (hD,) W g
        self.constant = first.weight @ norm.bias + first.bias  # (hD,)
        self.modality = modality
        self.modality_rows = denoiser.modality_emb.weight  # (M, D)
        self.c_part = F.linear(c, scaled[:, 2 * d:])  # (B, hD)
        self.c_sum = c.sum(1)
        self.c_square_sum = (c * c).sum(1)

    def __call__(self, x_t: Tensor, t: int) -> Tensor:
        """(B, D) state at integer step ``t`` -> (B, D) predicted noise."""
        t_vec = torch.full((1,), t, dtype=torch.long, device=x_t.device)
        time_row = self.time_embedding(t_vec, x_t.dtype)
        temb = time_row + self.modality_rows  # (M, D): one row per modality
        temb_part = F.linear(temb, self.w_time)[self.modality]  # (B, hD)
        temb_sum = temb.sum(1)[self.modality]
        temb_square_sum = (temb * temb).sum(1)[self.modality]
        width = 3 * self.dim
        mean = (x_t.sum(1) + temb_sum + self.c_sum) / width
        square_mean = ((x_t * x_t).sum(1) + temb_square_sum + self.c_square_sum) / width
        inv_std = torch.rsqrt((square_mean - mean * mean).clamp_min(0) + self.eps)
        hidden = F.linear(x_t, self.w_x) + temb_part + self.c_part
        hidden = (hidden - mean[:, None] * self.w_gain) * inv_std[:, None] + self.constant
        hidden = self.hidden_norm(F.silu(hidden))
        return self.out(hidden)
