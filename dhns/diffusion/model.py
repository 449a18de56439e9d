"""DiffHEG diffusion model: standardisation + noise schedule + denoiser, training and level
generation.

Tensor-level only (no KGE import). The caller builds, per training triple, modality and
direction, a target ``x0`` (B, D), a condition ``c`` (B, D) and a modality index (B,), and
concatenates everything into one batch; this module trains on and generates from those.

Scales: ``x0`` and ``c`` are standardised per modality and per dimension (statistics fitted once
on the pretrained embeddings, :meth:`DiffusionModel.fit_standardisation`) before diffusion, and
generated states are mapped back to the embedding scale (docs/method.md, section 3: the
reference diffuses raw embeddings of scale ~0.01 and its denoiser collapses to predicting zero).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from dhns.diffusion.denoiser import Denoiser
from dhns.diffusion.schedule import NoiseSchedule, ScheduleKind, randn_like
from dhns.optim import adam

if TYPE_CHECKING:
    from dhns.config import DiffusionConfig

#: E|z| for z ~ N(0, 1): the per-element L1 loss of a denoiser that predicts eps_hat = 0.
L1_OF_ZERO_PREDICTOR = math.sqrt(2.0 / math.pi)


def level_steps(fractions: Sequence[float], num_steps: int) -> list[int]:
    """Hardness-level timesteps ``t_k = round(f_k T)``, clamped to [0, T-1].

    Rounds half up (``floor(f T + 0.5)``), not Python's half-to-even: with the defaults
    (T = 50, f = 0.05) that gives t = 3 rather than 2. T = 50 -> [3, 5, 10, 25];
    T = 1000 -> [50, 100, 200, 500].
    """
    out = []
    for f in fractions:
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"level fraction must be in [0, 1], got {f}")
        out.append(min(max(int(math.floor(f * num_steps + 0.5)), 0), num_steps - 1))
    return out


class DiffusionModel(nn.Module):
    """Conditional DDPM over entity embeddings, shared by all modalities.

    Args:
        dim: D, embedding width (all modalities).
        modalities: modality names; index m in ``modality`` tensors refers to ``modalities[m]``.
        steps: T. schedule, beta_start, beta_end: see :class:`NoiseSchedule`.
        hidden_mult: denoiser hidden width multiplier.
        generator: source of the denoiser's initial weights (see :class:`Denoiser`); not part
            of ``hparams``, since a loaded checkpoint overwrites them.

    Buffers (in ``state_dict``): the schedule's, plus ``x0_mean``, ``x0_std``, ``c_mean``,
    ``c_std`` of shape (M, D) and ``stats_fitted`` (bool scalar).
    """

    x0_mean: Tensor
    x0_std: Tensor
    c_mean: Tensor
    c_std: Tensor
    stats_fitted: Tensor

    def __init__(
        self,
        dim: int,
        modalities: Sequence[str] = ("structure", "text", "image"),
        steps: int = 50,
        schedule: ScheduleKind = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        hidden_mult: int = 4,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = {
            "dim": dim,
            "modalities": list(modalities),
            "steps": steps,
            "schedule": schedule,
            "beta_start": beta_start,
            "beta_end": beta_end,
            "hidden_mult": hidden_mult,
        }
        self.dim = dim
        self.modalities = list(modalities)
        num_mod = len(self.modalities)
        self.schedule = NoiseSchedule(steps, schedule, beta_start, beta_end)
        self.denoiser = Denoiser(dim, num_mod, hidden_mult, generator)
        self.register_buffer("x0_mean", torch.zeros(num_mod, dim))
        self.register_buffer("x0_std", torch.ones(num_mod, dim))
        self.register_buffer("c_mean", torch.zeros(num_mod, dim))
        self.register_buffer("c_std", torch.ones(num_mod, dim))
        self.register_buffer("stats_fitted", torch.tensor(False))

    @classmethod
    def from_config(cls, cfg: DiffusionConfig, dim: int,
                    generator: torch.Generator | None = None) -> DiffusionModel:
        """Build from the ``model:`` section of params (``sampling_steps``/``levels`` are
        per-call arguments of :meth:`generate_levels`; see :meth:`level_steps`)."""
        return cls(
            dim,
            cfg.modalities,
            cfg.steps,
            cfg.schedule,
            cfg.beta_start,
            cfg.beta_end,
            cfg.hidden_mult,
            generator,
        )

    @property
    def num_steps(self) -> int:
        return self.schedule.num_steps

    def level_steps(self, fractions: Sequence[float]) -> list[int]:
        """``t_k = round_half_up(f_k T)`` clamped to [0, T-1]; see :func:`level_steps`."""
        return level_steps(fractions, self.num_steps)

    # -- standardisation -------------------------------------------------------------------

    @torch.no_grad()
    def fit_standardisation(self, x0: Tensor, c: Tensor, modality: Tensor) -> None:
        """Fit per-modality, per-dimension mean/std of x0 and c (population std).

        Args:
            x0: (N, D). c: (N, D). modality: (N,) long. A modality with < 2 rows keeps the
            identity transform; a dimension with std ~ 0 gets std 1 (avoids blowing it up).
        """
        self.track_standardisation(x0, c, modality, momentum=1.0)

    @torch.no_grad()
    def track_standardisation(self, x0: Tensor, c: Tensor, modality: Tensor,
                              momentum: float) -> None:
        """Move the standardisation towards this batch's statistics: ``stat <- (1 - momentum)
        stat + momentum batch_stat`` (the first call fits them outright).

        For a diffusion model trained jointly with a KGE from its first epoch, whose embeddings,
        and so their scale, keep moving. Shapes as :meth:`fit_standardisation`.
        """
        blend = 1.0 if not bool(self.stats_fitted) else momentum
        for m in range(len(self.modalities)):
            rows = modality == m
            if int(rows.sum()) < 2:
                continue
            for name, data in (("x0", x0), ("c", c)):
                sel = data[rows].detach().to(self.x0_mean.device, torch.float32)
                mean = sel.mean(0)
                std = sel.std(0, unbiased=False)
                std = torch.where(std > 1e-8 * (1.0 + mean.abs()), std, torch.ones_like(std))
                for stat, value in (("mean", mean), ("std", std)):
                    buffer = getattr(self, f"{name}_{stat}")[m]
                    buffer.mul_(1.0 - blend).add_(blend * value)
        self.stats_fitted.fill_(True)

    def standardise_x0(self, x0: Tensor, modality: Tensor) -> Tensor:
        """(B, D) embedding scale -> (B, D) standardised."""
        return (x0 - self.x0_mean[modality]) / self.x0_std[modality]

    def destandardise_x0(self, z: Tensor, modality: Tensor) -> Tensor:
        """(..., B, D) standardised -> embedding scale, per row's modality."""
        return z * self.x0_std[modality] + self.x0_mean[modality]

    def standardise_c(self, c: Tensor, modality: Tensor) -> Tensor:
        """(B, D) condition, embedding scale -> standardised."""
        return (c - self.c_mean[modality]) / self.c_std[modality]

    # -- training --------------------------------------------------------------------------

    def loss(
        self, x0: Tensor, c: Tensor, modality: Tensor, generator: torch.Generator,
        detach: bool = True,
    ) -> tuple[Tensor, dict[str, float]]:
        """L1 noise-prediction loss on a mixed batch.

        ``t ~ U{0..T-1}`` and ``eps ~ N(0, I)`` per row, from ``generator``. Inputs are detached
        unless ``detach`` is false: L_diff then reaches the KGE that built ``x0`` and ``c``
        (``retrain.diffusion_weight``; docs/method.md, section 4).

        Args:
            x0: (B, D) targets, embedding scale. c: (B, D) conditions. modality: (B,) long.
        Returns:
            ``(loss, ratios)``: the scalar mean of ``|eps - eps_hat|`` over all rows and dims
            (the sum over modalities/directions of docs/method.md, section 6, up to a constant
            factor, which Adam ignores), and per modality name its mean L1 divided by
            sqrt(2/pi) (1 = a denoiser predicting zero; a learned one is clearly below 1).
            Modalities absent from the batch are omitted from ``ratios``.
        """
        if detach:
            x0, c = x0.detach(), c.detach()
        x0s = self.standardise_x0(x0, modality)
        cs = self.standardise_c(c, modality)
        gen_device = generator.device
        t = torch.randint(0, self.num_steps, (x0.shape[0],), generator=generator, device=gen_device)
        t = t.to(x0.device)
        eps = randn_like(x0s, generator)
        x_t = self.schedule.q_sample(x0s, t, eps)
        eps_hat = self.denoiser(x_t, t, cs, modality)
        per_row = (eps - eps_hat).abs().mean(dim=-1)  # (B,)
        ratios: dict[str, float] = {}
        with torch.no_grad():
            for m, name in enumerate(self.modalities):
                rows = modality == m
                if bool(rows.any()):
                    ratios[name] = float(per_row[rows].mean()) / L1_OF_ZERO_PREDICTOR
        return per_row.mean(), ratios

    def fit(
        self,
        x0: Tensor,
        c: Tensor,
        modality: Tensor,
        epochs: int,
        batch_size: int,
        lr: float,
        generator: torch.Generator,
        progress: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> list[float]:
        """Plain Adam loop over the denoiser (standardisation fitted first if not yet fitted).

        Args:
            x0, c: (N, D). modality: (N,) long. generator: shuffling, t and eps draws.
            progress: show a tqdm bar with the running loss ratios.
            log: called with one line per epoch (loss ratios, seconds), for logs without a
                terminal.
        Returns:
            Mean loss per epoch (length ``epochs``).
        """
        if not bool(self.stats_fitted):
            self.fit_standardisation(x0, c, modality)
        opt = adam(self.denoiser.parameters(), lr=lr)
        n = x0.shape[0]
        history: list[float] = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=epochs, desc="diffusion", unit="epoch")
        self.train()
        for _ in range(epochs):
            epoch_start = time.perf_counter()
            perm = torch.randperm(n, generator=generator, device=generator.device).to(x0.device)
            total, seen = 0.0, 0
            ratio_sums: dict[str, float] = {}
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                loss, ratios = self.loss(x0[idx], c[idx], modality[idx], generator)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
                for k, v in ratios.items():
                    ratio_sums[k] = ratio_sums.get(k, 0.0) + v * len(idx)
            history.append(total / max(seen, 1))
            if log is not None:
                ratio_text = ", ".join(f"{k} {v / max(seen, 1):.3f}" for k, v in ratio_sums.items())
                log(f"diffusion epoch {len(history)}/{epochs}: loss ratio {ratio_text} "
                    f"({time.perf_counter() - epoch_start:.1f}s)")
            if bar is not None:
                bar.set_postfix({k: f"{v / seen:.3f}" for k, v in ratio_sums.items()})
                bar.update(1)
        if bar is not None:
            bar.close()
        self.eval()
        return history

    # -- generation ------------------------------------------------------------------------

    def chain_timesteps(
        self, level_steps: Sequence[int], sampling_steps: int | None = None
    ) -> list[int]:
        """States visited by the reverse chain, descending, from T-1 down to min(level_steps).

        Full chain (``sampling_steps`` None or >= T): every t from T-1 to min(t_k). Strided:
        :meth:`NoiseSchedule.strided_timesteps` merged with every level t_k (so each level is
        hit exactly), cut below min(t_k). The denoiser runs once per state except the last.
        """
        T = self.num_steps
        for t in level_steps:
            if not 0 <= t < T:
                raise ValueError(f"level step {t} outside 0..{T - 1}")
        t_min = min(level_steps)
        if sampling_steps is None or sampling_steps >= T:
            return list(range(T - 1, t_min - 1, -1))
        grid = set(self.schedule.strided_timesteps(sampling_steps).tolist()) | set(level_steps)
        return sorted((t for t in grid if t >= t_min), reverse=True)

    @torch.no_grad()
    def generate_levels(
        self,
        c: Tensor,
        modality: Tensor,
        level_steps: Sequence[int],
        sampling_steps: int | None,
        generator: torch.Generator,
        eta: float = 1.0,
        autocast_dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Run the conditional reverse process and return the states at the hardness levels.

        Starts from ``x_{T-1} ~ N(0, I)`` (standardised space) and returns the intermediate
        states ``x_{t_k}`` (docs/method.md, section 3: hardness levels are intermediate states
        at t_k; smaller t = closer to the data = harder), de-standardised with each row's
        modality.

        Args:
            c: (B, D) conditions, embedding scale. modality: (B,) long.
            level_steps: the t_k (any order; see :meth:`level_steps`).
            sampling_steps: None or >= T: full ancestral DDPM chain (the faithful setting);
                otherwise a strided DDIM chain with that many grid points plus the levels.
            generator: source of x_T and of every step's noise.
            eta: DDIM noise scale for the strided chain (1 = DDPM-like, 0 = deterministic).
            autocast_dtype: run the denoiser under CPU/CUDA autocast with this dtype (e.g.
                torch.bfloat16); the chain itself stays in float32. None = plain float32.
        Returns:
            (L, B, D) states, ``out[k]`` at ``level_steps[k]``.
        """
        states = self.chain_timesteps(level_steps, sampling_steps)
        ancestral = sampling_steps is None or sampling_steps >= self.num_steps
        wanted = set(level_steps)
        cs = self.standardise_c(c, modality)
        x = randn_like(cs, generator)
        found: dict[int, Tensor] = {}
        if states[0] in wanted:
            found[states[0]] = x
        amp: contextlib.AbstractContextManager = contextlib.nullcontext()
        if autocast_dtype is not None:
            amp = torch.autocast(device_type=c.device.type, dtype=autocast_dtype)
        # The condition's share of the denoiser is computed once per chain; autocast keeps the
        # plain network (its fused layers are float32 only).
        chain = self.denoiser.conditioned(cs, modality) if autocast_dtype is None else None
        for t, t_prev in zip(states[:-1], states[1:], strict=True):
            if chain is not None:
                eps_hat = chain(x, t)
            else:
                # One (1,)-shaped t broadcasts inside the denoiser: the time MLP runs on one row.
                t_vec = torch.full((1,), t, dtype=torch.long, device=c.device)
                with amp:
                    eps_hat = self.denoiser(x, t_vec, cs, modality)
            eps_hat = eps_hat.to(x.dtype)
            if ancestral:
                x = self.schedule.p_step(x, t, eps_hat, generator)
            else:
                x = self.schedule.step(x, t, t_prev, eps_hat, generator, eta)
            if t_prev in wanted:
                found[t_prev] = x
        out = torch.stack([found[t] for t in level_steps])  # (L, B, D)
        return self.destandardise_x0(out, modality)
