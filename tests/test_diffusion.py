"""Tests for dhns.diffusion: schedule maths, step-rule equivalence, learning and generation."""

from __future__ import annotations

import math

import pytest
import torch

from dhns.diffusion import Denoiser, DiffusionModel, NoiseSchedule, level_steps
from dhns.diffusion.schedule import randn_like

D = 8


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- schedule ---------------------------------------------------------------------------------


def test_linear_alpha_bar_values() -> None:
    s = NoiseSchedule(50, "linear", 1e-4, 0.02)
    betas = torch.linspace(1e-4, 0.02, 50, dtype=torch.float64)
    assert s.alpha_bars.shape == (50,)
    assert s.alpha_bars[0].item() == pytest.approx(1 - 1e-4, abs=1e-7)
    expected = torch.cumprod(1 - betas, 0)
    torch.testing.assert_close(s.alpha_bars.double(), expected, rtol=1e-6, atol=0)
    assert s.alpha_bars[-1].item() == pytest.approx(math.prod(1 - b for b in betas.tolist()))
    # posterior variance vanishes at t = 0 and is below beta elsewhere
    assert s.posterior_variance[0].item() == 0.0
    assert bool((s.posterior_variance[1:] < s.betas[1:]).all())


def test_linear1000_traces_ddpm_curve_at_any_t() -> None:
    # The reference's T = 50 linear schedule stops far from noise; linear1000 reaches it and
    # puts the hardness levels where DDPM's T = 1000 schedule has them.
    assert NoiseSchedule(50, "linear").terminal_alpha_bar == pytest.approx(0.603, abs=1e-3)
    short, ddpm = NoiseSchedule(50, "linear1000"), NoiseSchedule(1000, "linear")
    assert short.terminal_alpha_bar < 1e-4
    torch.testing.assert_close(NoiseSchedule(1000, "linear1000").alpha_bars, ddpm.alpha_bars)
    for f in (0.05, 0.1, 0.2, 0.5):  # same f -> similar abar (within the coarser grid's error)
        assert short.alpha_bars[round(f * 50)].item() == pytest.approx(
            ddpm.alpha_bars[round(f * 1000)].item(), abs=0.05)
    assert NoiseSchedule(10, "linear1000").betas.max().item() == pytest.approx(0.999)


def test_cosine_alpha_bar_monotone_in_unit_interval() -> None:
    s = NoiseSchedule(100, "cosine")
    ab = s.alpha_bars
    assert bool((ab > 0).all()) and bool((ab < 1).all())
    assert bool((ab[1:] < ab[:-1]).all())


def test_q_sample_matches_iterated_single_steps() -> None:
    s = NoiseSchedule(50, "linear")
    g = gen(0)
    n, t_end = 200_000, 20
    x0 = torch.tensor([1.5, -0.5, 0.0, 2.0]).expand(n, 4)
    x = x0.clone()
    for t in range(t_end + 1):  # x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z, data = "x_{-1}"
        x = s.alphas[t].sqrt() * x + s.betas[t].sqrt() * randn_like(x, g)
    closed = s.q_sample(x0, torch.full((n,), t_end), randn_like(x0, g))
    ab = s.alpha_bars[t_end]
    for sample in (x, closed):
        torch.testing.assert_close(sample.mean(0), ab.sqrt() * x0[0], atol=0.01, rtol=0)
        torch.testing.assert_close(sample.var(0), (1 - ab).expand(4), atol=0.01, rtol=0)
    # int and tensor t agree
    noise = torch.randn(3, 4, generator=g)
    torch.testing.assert_close(
        s.q_sample(x0[:3], 7, noise), s.add_noise(x0[:3], torch.full((3,), 7), noise)
    )


def test_p_step_is_posterior_mean_plus_noise() -> None:
    s = NoiseSchedule(50, "linear")
    x_t, eps = torch.randn(16, D, generator=gen(1)), torch.randn(16, D, generator=gen(2))
    for t in (0, 1, 17, 49):
        z = randn_like(x_t, gen(3))
        x0_hat = s.predict_x0(x_t, t, eps)
        mean = s.posterior_mean_coef1[t] * x0_hat + s.posterior_mean_coef2[t] * x_t
        expected = mean + s.posterior_variance[t].sqrt() * z
        torch.testing.assert_close(s.p_step(x_t, t, eps, gen(3)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "linear1000", "cosine"])
def test_strided_all_steps_equals_ancestral_exactly(kind: str) -> None:
    T = 50
    s = NoiseSchedule(T, kind)
    net = Denoiser(D)
    torch.nn.init.normal_(net.net[-1].weight, std=0.3)  # non-trivial eps_hat
    c, m = torch.randn(32, D, generator=gen(0)), torch.zeros(32, dtype=torch.long)
    assert s.strided_timesteps(T).tolist() == list(range(T - 1, -1, -1))

    def run(rule: str) -> torch.Tensor:
        g = gen(5)
        x = randn_like(c, g)
        with torch.no_grad():
            for t in s.strided_timesteps(None).tolist():
                eps = net(x, torch.full((1,), t), c, m)
                if rule == "ancestral":
                    x = s.p_step(x, t, eps, g)
                elif rule == "ddim":
                    x = s.step(x, t, t - 1, eps, g, eta=1.0)
                else:  # per-row tensor timesteps
                    tt = torch.full((32,), t)
                    x = s.step(x, tt, tt - 1, eps, g, eta=1.0)
        return x

    ref = run("ancestral")
    assert torch.isfinite(ref).all()
    assert torch.equal(ref, run("ddim"))
    assert torch.equal(ref, run("ddim_tensor_t"))


def test_strided_timesteps_grid() -> None:
    s = NoiseSchedule(50)
    ts = s.strided_timesteps(10)
    assert ts.dtype == torch.long and len(ts) == 10
    assert ts[0].item() == 49 and ts[-1].item() == 0
    assert bool((ts[1:] < ts[:-1]).all())
    assert s.strided_timesteps(1).tolist() == [49]
    assert len(NoiseSchedule(1000).strided_timesteps(1000)) == 1000


def test_ddim_eta0_is_deterministic_given_x_t() -> None:
    s = NoiseSchedule(50)
    x, eps = torch.randn(4, D, generator=gen(0)), torch.randn(4, D, generator=gen(1))
    assert torch.equal(s.step(x, 30, 10, eps, gen(2), 0.0), s.step(x, 30, 10, eps, gen(3), 0.0))


# -- levels -----------------------------------------------------------------------------------


def test_level_steps_rounding() -> None:
    assert level_steps([0.05, 0.1, 0.2, 0.5], 50) == [3, 5, 10, 25]  # half up: 2.5 -> 3
    assert level_steps([0.05, 0.1, 0.2, 0.5], 1000) == [50, 100, 200, 500]
    assert level_steps([0.0, 1.0, 0.01], 50) == [0, 49, 1]
    assert DiffusionModel(D, steps=20).level_steps([0.1, 0.5]) == [2, 10]
    with pytest.raises(ValueError):
        level_steps([1.5], 50)


def test_chain_timesteps_hits_every_level_and_stops_early() -> None:
    s = DiffusionModel(D, steps=50)
    lv = [25, 3, 10, 5]
    strided = s.chain_timesteps(lv, 10)
    assert strided[0] == 49 and strided[-1] == 3 and set(lv) <= set(strided)
    assert strided == sorted(set(strided), reverse=True)
    assert s.chain_timesteps(lv, None) == list(range(49, 2, -1))
    assert s.chain_timesteps(lv, 50) == s.chain_timesteps(lv, None)


# -- standardisation, learning and generation -------------------------------------------------


def toy_data(n: int = 4096) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x0 = A c + small noise, at the tiny raw scale the spec warns about (~0.01)."""
    g = gen(0)
    A = torch.randn(D, D, generator=g) / math.sqrt(D)
    c = 0.01 * torch.randn(n, D, generator=g) + 0.02
    x0 = 3 * c @ A.T + 1e-4 * torch.randn(n, D, generator=g)
    modality = torch.randint(0, 3, (n,), generator=g)
    return x0, c, modality, A


@pytest.fixture(scope="module")
def trained() -> tuple[DiffusionModel, dict[str, float], tuple]:
    data = toy_data()
    x0, c, modality, _ = data
    s = DiffusionModel(D, steps=50, generator=gen(0))
    s.fit_standardisation(x0, c, modality)
    _, unfit = s.loss(x0, c, modality, gen(1))
    history = s.fit(x0, c, modality, epochs=8, batch_size=256, lr=3e-3, generator=gen(2))
    assert len(history) == 8 and history[-1] < history[0]
    return s, unfit, data


def test_standardisation_round_trip() -> None:
    x0, c, modality, _ = toy_data(1024)
    s = DiffusionModel(D)
    s.fit_standardisation(x0, c, modality)
    assert bool(s.stats_fitted)
    z = s.standardise_x0(x0, modality)
    for m in range(3):
        rows = modality == m
        torch.testing.assert_close(z[rows].mean(0), torch.zeros(D), atol=1e-4, rtol=0)
        torch.testing.assert_close(z[rows].std(0, unbiased=False), torch.ones(D), atol=1e-4, rtol=0)
        torch.testing.assert_close(s.x0_mean[m], x0[rows].mean(0))
    torch.testing.assert_close(s.destandardise_x0(z, modality), x0, atol=1e-7, rtol=1e-5)
    cz = s.standardise_c(c, modality)
    torch.testing.assert_close(cz.std(0, unbiased=False), torch.ones(D), atol=1e-3, rtol=0)


def test_loss_ratio_unfit_is_one_and_learned_is_low(trained) -> None:
    s, unfit, (x0, c, modality, _) = trained
    assert set(unfit) == {"structure", "text", "image"}
    for r in unfit.values():  # zero-initialised output layer = the "predict zero" baseline
        assert r == pytest.approx(1.0, abs=0.05)
    _, ratios = s.loss(x0, c, modality, gen(3))
    assert max(ratios.values()) < 0.6, ratios


def test_loss_does_not_reach_inputs() -> None:
    x0, c, modality, _ = toy_data(64)
    x0.requires_grad_(True)
    c.requires_grad_(True)
    s = DiffusionModel(D)
    loss, _ = s.loss(x0, c, modality, gen(0))
    loss.backward()
    assert x0.grad is None and c.grad is None
    assert s.denoiser.net[-1].weight.grad is not None


@pytest.mark.parametrize("sampling_steps", [None, 10])
def test_hardness_ordering(trained, sampling_steps: int | None) -> None:
    s, _, (x0, c, modality, _) = trained
    lv = s.level_steps([0.05, 0.1, 0.2, 0.5])
    n = 1024
    out = s.generate_levels(c[:n], modality[:n], lv, sampling_steps, gen(4))
    assert out.shape == (len(lv), n, D)
    dist = [(out[k] - x0[:n]).norm(dim=-1).mean().item() for k in range(len(lv))]
    assert dist == sorted(dist), dist  # smaller t_k = closer to the true x0 = harder
    # the hardest level is much closer to the target than the target's spread
    spread = (x0[:n] - x0[:n].mean(0)).norm(dim=-1).mean().item()
    assert dist[0] < 0.6 * spread


def test_conditioned_denoiser_is_the_network(trained) -> None:
    """The per-chain precomputation (condition columns and LayerNorm sums) gives the network's
    own output at every step, for mixed modalities."""
    s, _, (_, c, modality, _) = trained
    den = s.denoiser
    cs = s.standardise_c(c[:256], modality[:256])
    x = torch.randn(256, D, generator=gen(5))
    with torch.no_grad():
        # trained LayerNorm gains and biases, so the fold is checked against non-trivial ones
        assert not torch.allclose(den.net[0].weight, torch.ones(3 * D))
        chain = den.conditioned(cs, modality[:256])
        for t in (0, 3, 17, 49):
            want = den(x, torch.full((1,), t, dtype=torch.long), cs, modality[:256])
            torch.testing.assert_close(chain(x, t), want, rtol=1e-5, atol=1e-5)


def test_generation_deterministic_and_level_order(trained) -> None:
    s, _, (_, c, modality, _) = trained
    c, modality = c[:64], modality[:64]
    a = s.generate_levels(c, modality, [3, 25], 10, gen(7))
    b = s.generate_levels(c, modality, [3, 25], 10, gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, s.generate_levels(c, modality, [3, 25], 10, gen(8)))
    # output follows the requested order; the same chain serves both orders
    swapped = s.generate_levels(c, modality, [25, 3], 10, gen(7))
    assert torch.equal(swapped[0], a[1]) and torch.equal(swapped[1], a[0])
    full = s.generate_levels(c, modality, [3, 25], None, gen(7))
    assert torch.equal(full, s.generate_levels(c, modality, [3, 25], None, gen(7)))


def test_state_dict_round_trip(trained) -> None:
    s, _, (_, c, modality, _) = trained
    state = s.state_dict()
    for key in ("x0_mean", "x0_std", "c_mean", "c_std", "stats_fitted", "schedule.alpha_bars"):
        assert key in state
    fresh = DiffusionModel(**s.hparams)
    assert not bool(fresh.stats_fitted)
    fresh.load_state_dict(state)
    assert bool(fresh.stats_fitted)
    torch.testing.assert_close(fresh.x0_std, s.x0_std)
    a = s.generate_levels(c[:32], modality[:32], [3, 10], 10, gen(9))
    assert torch.equal(a, fresh.generate_levels(c[:32], modality[:32], [3, 10], 10, gen(9)))


def test_sampler_weights_come_from_the_generator_only() -> None:
    """Equal seeds give equal weights, another seed other weights, and building never draws
    from (or depends on) torch's global RNG."""
    before = torch.random.get_rng_state()
    a = DiffusionModel(D, steps=20, generator=gen(7)).state_dict()
    torch.manual_seed(123)  # a different global state must not matter
    b = DiffusionModel(D, steps=20, generator=gen(7)).state_dict()
    c = DiffusionModel(D, steps=20, generator=gen(8)).state_dict()
    torch.random.set_rng_state(before)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["denoiser.net.1.weight"], c["denoiser.net.1.weight"])
    state = torch.random.get_rng_state()
    DiffusionModel(D, steps=20, generator=gen(7))
    assert torch.equal(torch.random.get_rng_state(), state)
