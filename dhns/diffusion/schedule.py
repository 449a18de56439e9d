"""DDPM noise schedule, forward process and reverse-step rules (no network in here).

Conventions (diffusers-style):

* Timesteps are ``t in 0..T-1``; ``x_t`` is the state whose forward marginal is
  ``q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I)``. ``t = 0`` is the least noisy state
  (one noising step away from the data); the clean data is "``t = -1``" (``abar = 1``).
* A reverse step evaluated at ``t`` maps ``x_t`` to ``x_{t_prev}`` (``t_prev = t - 1`` for
  ancestral DDPM, any ``t_prev < t`` for the strided rule; ``t_prev = -1`` means clean data).
* Every random draw goes through an explicit ``torch.Generator``; nothing touches the global RNG.
  Both step rules always draw exactly one ``randn_like(x_t)`` (even where the variance is 0), so
  two chains that take the same number of steps consume the generator identically.

All schedule tensors are computed in float64 and stored as float32 buffers (lucidrains-style), so
they follow ``.to(device/dtype)`` and round-trip through ``state_dict``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

ScheduleKind = Literal["linear", "linear1000", "cosine"]


def make_betas(
    num_steps: int, kind: ScheduleKind = "linear", beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """Beta schedule of shape (T,), float64.

    ``linear``: evenly spaced from ``beta_start`` to ``beta_end`` (DDPM; the reference's 1e-4 ..
    0.02). With those ends the process only reaches pure noise for T ~ 1000: at T = 50,
    ``abar_{T-1} = 0.60``, so a chain started from N(0, I) begins where the denoiser was never
    trained. ``linear1000``: the same rates read as per-1000-step values, ``betas * 1000 / T``
    (Nichol & Dhariwal's extension of DDPM's schedule to any T; clipped at 0.999), so every T
    traces DDPM's T = 1000 curve: at T = 50, ``abar_{T-1} = 8e-6``.
    ``cosine``: Nichol & Dhariwal (2021), ``abar(t) = cos^2(((t/T + s)/(1 + s)) pi/2)``
    with s = 0.008, betas clipped at 0.999; ``beta_start``/``beta_end`` are ignored.
    """
    if num_steps < 1:
        raise ValueError(f"diffusion needs at least one step, got T={num_steps}")
    if kind == "linear":
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    if kind == "linear1000":
        betas = make_betas(num_steps, "linear", beta_start, beta_end) * (1000.0 / num_steps)
        return betas.clamp(max=0.999)
    if kind == "cosine":
        s = 0.008
        x = torch.linspace(0, num_steps, num_steps + 1, dtype=torch.float64)
        abar = torch.cos(((x / num_steps) + s) / (1 + s) * math.pi / 2) ** 2
        abar = abar / abar[0]
        return (1 - abar[1:] / abar[:-1]).clamp(0.0, 0.999)
    raise ValueError(
        f"unknown schedule kind {kind!r} (expected 'linear', 'linear1000' or 'cosine')")


def randn_like(x: Tensor, generator: torch.Generator) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator`` on the generator's device.

    Drawing on the generator's device and moving the result keeps a CPU generator usable (and
    reproducible) for tensors on any device.
    """
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return noise.to(x.device)


class NoiseSchedule(nn.Module):
    """Fixed DDPM schedule: betas and every derived coefficient as buffers of shape (T,).

    Args:
        num_steps: T, the number of diffusion steps.
        kind: ``"linear"`` or ``"cosine"``.
        beta_start, beta_end: ends of the linear schedule.
    """

    betas: Tensor
    alphas: Tensor
    alpha_bars: Tensor
    alpha_bars_prev: Tensor
    sqrt_alpha_bars: Tensor
    sqrt_one_minus_alpha_bars: Tensor
    sqrt_recip_alpha_bars: Tensor
    sqrt_recipm1_alpha_bars: Tensor
    posterior_variance: Tensor
    posterior_mean_coef1: Tensor
    posterior_mean_coef2: Tensor

    def __init__(
        self,
        num_steps: int = 50,
        kind: ScheduleKind = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        super().__init__()
        self.num_steps = int(num_steps)
        self.kind = kind
        betas = make_betas(num_steps, kind, beta_start, beta_end)
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, dim=0)
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])

        def reg(name: str, value: Tensor) -> None:
            self.register_buffer(name, value.to(torch.float32))

        reg("betas", betas)
        reg("alphas", alphas)
        reg("alpha_bars", abar)
        reg("alpha_bars_prev", abar_prev)
        reg("sqrt_alpha_bars", abar.sqrt())
        reg("sqrt_one_minus_alpha_bars", (1.0 - abar).sqrt())
        # x0_hat = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps_hat
        reg("sqrt_recip_alpha_bars", (1.0 / abar).sqrt())
        reg("sqrt_recipm1_alpha_bars", (1.0 / abar - 1.0).sqrt())
        # q(x_{t-1} | x_t, x0) = N(coef1 x0 + coef2 x_t, beta_tilde); beta_tilde_0 = 0.
        reg("posterior_variance", betas * (1.0 - abar_prev) / (1.0 - abar))
        reg("posterior_mean_coef1", betas * abar_prev.sqrt() / (1.0 - abar))
        reg("posterior_mean_coef2", (1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar))
        # Reverse-step coefficients are computed from this float64 copy (see _affine_step).
        # A plain attribute, not a buffer: module dtype casts must not degrade it, and it is
        # a pure function of the constructor arguments.
        self._alpha_bars64 = abar.clone()

    @property
    def terminal_alpha_bar(self) -> float:
        """``abar_{T-1}``: the signal share left where generation starts from N(0, I); well
        above 0 means the first reverse steps see inputs unlike any in training."""
        return float(self._alpha_bars64[-1])

    def extra_repr(self) -> str:
        return f"T={self.num_steps}, kind={self.kind!r}"

    # -- helpers ---------------------------------------------------------------------------

    def _gather(self, buf: Tensor, t: Tensor | int, x: Tensor) -> Tensor:
        """``buf[t]`` shaped to broadcast against ``x`` (B, D): (B, 1) or a scalar, x's dtype."""
        if isinstance(t, int):
            return buf[t].to(x.dtype)
        t = t.to(buf.device)
        out = buf[t].to(x.dtype)
        return out.view(-1, *([1] * (x.dim() - 1))) if out.dim() > 0 else out

    def predict_x0(self, x_t: Tensor, t: Tensor | int, eps_hat: Tensor) -> Tensor:
        """Clean-data estimate implied by a noise prediction. Shapes (B, D) -> (B, D)."""
        return (
            self._gather(self.sqrt_recip_alpha_bars, t, x_t) * x_t
            - self._gather(self.sqrt_recipm1_alpha_bars, t, x_t) * eps_hat
        )

    # -- forward process -------------------------------------------------------------------

    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """Closed-form forward process ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``.

        Args:
            x0: (B, D) clean data. t: (B,) long or an int. noise: (B, D) standard normal.
        Returns:
            (B, D) noised state ``x_t``.
        """
        return (
            self._gather(self.sqrt_alpha_bars, t, x0) * x0
            + self._gather(self.sqrt_one_minus_alpha_bars, t, x0) * noise
        )

    add_noise = q_sample  # diffusers name

    # -- reverse steps ---------------------------------------------------------------------

    def _abar64(self, t: Tensor) -> Tensor:
        """float64 ``abar[t]`` for a long tensor t (any shape), with ``abar[-1] = 1``."""
        table = self._alpha_bars64.to(t.device)
        one = torch.ones((), dtype=torch.float64, device=t.device)
        return torch.where(t >= 0, table[t.clamp(min=0)], one)

    def _affine_step(
        self,
        x_t: Tensor,
        eps_hat: Tensor,
        a: Tensor,
        b: Tensor,
        var: Tensor,
        scalar: bool,
        generator: torch.Generator,
    ) -> Tensor:
        """``a x_t + b eps_hat + sqrt(var) z`` with float64 coefficients a, b, var.

        Why this form: the coefficients are scalars computed in float64, so there is no
        tensor-level cancellation (``x0_hat`` is huge where abar ~ 0, e.g. cosine at t ~ T), and
        two algebraically equal rules (ancestral, DDIM with eta = 1) round to the same float32
        coefficients and so give bitwise-identical chains.
        """
        sigma = var.clamp(min=0.0).sqrt()
        noise = randn_like(x_t, generator)
        if scalar:
            return float(a) * x_t + float(b) * eps_hat + float(sigma) * noise
        shape = (-1,) + (1,) * (x_t.dim() - 1)

        def cast(v: Tensor) -> Tensor:
            return v.to(device=x_t.device, dtype=x_t.dtype).view(shape)

        return cast(a) * x_t + cast(b) * eps_hat + cast(sigma) * noise

    def p_step(
        self, x_t: Tensor, t: Tensor | int, eps_hat: Tensor, generator: torch.Generator
    ) -> Tensor:
        """Ancestral DDPM step ``x_t -> x_{t-1}`` with the posterior ("fixed small") variance.

        ``x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps_hat) / sqrt(alpha_t) + sqrt(beta~_t) z``
        (DDPM eq. 11, i.e. the posterior mean at ``x0_hat``), ``beta~_t = beta_t (1 - abar_{t-1})
        / (1 - abar_t)``. No clipping of ``x0_hat``: embeddings are unbounded.

        Args:
            x_t: (B, D). t: (B,) long or int, in 0..T-1. eps_hat: (B, D) predicted noise.
            generator: source of ``z`` (always drawn, even at t = 0 where its weight is 0).
        Returns:
            (B, D) state ``x_{t-1}`` (``t = 0`` returns the clean-data estimate).
        """
        scalar = isinstance(t, int)
        tt = torch.as_tensor(t, dtype=torch.long)
        abar_t = self._abar64(tt)
        abar_prev = self._abar64(tt - 1)
        alpha = abar_t / abar_prev
        beta = 1.0 - alpha
        a = 1.0 / alpha.sqrt()
        b = -beta / (alpha.sqrt() * (1.0 - abar_t).sqrt())
        var = beta * (1.0 - abar_prev) / (1.0 - abar_t)
        return self._affine_step(x_t, eps_hat, a, b, var, scalar, generator)

    def step(
        self,
        x_t: Tensor,
        t: Tensor | int,
        t_prev: Tensor | int,
        eps_hat: Tensor,
        generator: torch.Generator,
        eta: float = 1.0,
    ) -> Tensor:
        """Strided (DDIM, Song et al. 2021 eq. 12) step ``x_t -> x_{t_prev}`` for any t_prev < t.

        ``sigma^2 = eta^2 (1 - abar_prev)/(1 - abar_t) (1 - abar_t/abar_prev)``;
        ``x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z``,
        evaluated as ``a x_t + b eps_hat + sigma z``. With ``eta = 1`` and ``t_prev = t - 1``
        this is algebraically the ancestral :meth:`p_step` (same mean, variance ``beta~_t``), and
        numerically identical to it; ``eta = 0`` is deterministic DDIM.

        Args:
            x_t: (B, D). t: (B,) long or int. t_prev: (B,) long or int, -1 = clean data.
            eps_hat: (B, D). generator: source of ``z`` (always drawn). eta: noise scale.
        Returns:
            (B, D) state ``x_{t_prev}``.
        """
        scalar = isinstance(t, int) and isinstance(t_prev, int)
        abar_t = self._abar64(torch.as_tensor(t, dtype=torch.long))
        abar_prev = self._abar64(torch.as_tensor(t_prev, dtype=torch.long))
        var = eta**2 * (1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev)
        a = (abar_prev / abar_t).sqrt()
        b = (1.0 - abar_prev - var).clamp(min=0.0).sqrt() - (
            abar_prev * (1.0 - abar_t) / abar_t
        ).sqrt()
        return self._affine_step(x_t, eps_hat, a, b, var, scalar, generator)

    # -- timestep grids --------------------------------------------------------------------

    def strided_timesteps(self, num_steps: int | None = None) -> Tensor:
        """Descending timesteps at which a ``num_steps``-step reverse chain evaluates the net.

        Always starts at T-1 and ends at 0 (evenly spaced, rounded, de-duplicated); with
        ``num_steps`` None or >= T it is the full chain ``T-1, T-2, ..., 0``.

        Returns:
            (S,) long tensor, strictly decreasing, S = min(num_steps, T).
        """
        T = self.num_steps
        if num_steps is None or num_steps >= T:
            return torch.arange(T - 1, -1, -1, dtype=torch.long)
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if num_steps == 1:
            return torch.tensor([T - 1], dtype=torch.long)
        grid = torch.linspace(T - 1, 0, num_steps, dtype=torch.float64).round().long()
        return torch.unique_consecutive(grid)
