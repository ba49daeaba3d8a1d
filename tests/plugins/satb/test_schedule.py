"""SATB-VR schedule math against the paper: Table 4, Eq. 4 / 11 / 16–17 / 21 / 26–29."""

from __future__ import annotations

import pytest
import torch

from satb.schedule import (
    blend_weight,
    jump_start_timesteps,
    sample_jump_start_timesteps,
    sample_training_timesteps,
    satb_blend,
)
from vsr_core.diffusion import DDPMSchedule
from vsr_core.errors import ConfigError


@pytest.fixture(scope="module")
def scheduler() -> DDPMSchedule:
    # CogVideoX1.5-5B's schedule: v-prediction, scaled-linear betas, zero terminal SNR.
    return DDPMSchedule("cogvideox")


#: Appendix A.2, Table 4 of the paper (../shared/papers/satb-vr.txt), typed from it.
TABLE_4 = {
    1: [199],
    2: [199, 99],
    3: [299, 199, 99],
    4: [399, 299, 199, 99],
    5: [399, 319, 239, 159, 79],
    8: [399, 349, 299, 249, 199, 149, 99, 49],
    10: [399, 359, 319, 279, 239, 199, 159, 119, 79, 39],
}


@pytest.mark.parametrize("steps", sorted(TABLE_4))
def test_table_4_jump_start_timesteps(steps: int) -> None:
    assert jump_start_timesteps(steps) == TABLE_4[steps]


def test_other_step_counts_follow_the_release_rule() -> None:
    # The release's get_inference_timesteps: stride 400 // n, timesteps i * stride - 1; worked by hand.
    assert jump_start_timesteps(6) == [395, 329, 263, 197, 131, 65]
    assert jump_start_timesteps(7) == [398, 341, 284, 227, 170, 113, 56]
    assert jump_start_timesteps(9) == [395, 351, 307, 263, 219, 175, 131, 87, 43]
    assert jump_start_timesteps(400) == list(range(399, -1, -1))


@pytest.mark.parametrize("bad", [0, -1, 401, 2.5, True])
def test_bad_step_counts(bad) -> None:
    with pytest.raises(ConfigError, match="steps"):
        jump_start_timesteps(bad)


def test_snr_is_eq_11(scheduler) -> None:
    a = scheduler.alphas_cumprod.double()
    t = torch.tensor([0, 99, 399, 998])
    torch.testing.assert_close(scheduler.snr(t), a[t] / (1 - a[t]))
    assert scheduler.snr(999).item() == 0.0  # zero terminal SNR (rescale_betas_zero_snr)
    assert (scheduler.snr(torch.arange(999)).diff() < 0).all()


def test_blend_boundary_conditions(scheduler) -> None:
    """Eq. 26: x_b = x_p at t = τ_s; Eq. 27: 0 <= γ_τ/γ_t <= 1, decaying toward x_gt as t decreases."""
    x_gt, x_p = torch.randn(2, 4, 3, 5, 5), torch.randn(2, 4, 3, 5, 5)
    for tau in (0, 199, 399, 999):
        taus = torch.full((2,), tau)
        torch.testing.assert_close(satb_blend(x_gt, x_p, taus, taus, scheduler), x_p)
        ts = torch.arange(tau + 1)
        w = blend_weight(scheduler, torch.full_like(ts, tau), ts)
        assert torch.isfinite(w).all() and (w >= 0).all() and (w <= 1).all()
        assert (w.diff() >= 0).all()  # increases with t: shrinks as t decreases
    w = blend_weight(scheduler, torch.tensor([399]), torch.tensor([0]))
    assert w.item() < 0.01  # at the highest SNR the anchor is (almost) x_gt


def test_eq4_satb_blend_per_sample() -> None:
    """x_b^t = x_gt + (γ_τs/γ_t)(x_p − x_gt), γ = ᾱ/(1−ᾱ) (Eq. 4, 11) with ᾱ from diffusers' CogVideoX scheduler."""
    from diffusers import CogVideoXDDIMScheduler

    from vsr_core.diffusion import PRESETS

    config = {k: v for k, v in PRESETS["cogvideox"].items() if k != "_class_name"}
    a = CogVideoXDDIMScheduler.from_config(config).alphas_cumprod.double()
    x_gt, x_p = torch.randn(3, 2, 1, 2, 2), torch.randn(3, 2, 1, 2, 2)
    tau, t = torch.tensor([399, 199, 50]), torch.tensor([100, 199, 0])
    out = satb_blend(x_gt, x_p, tau, t, DDPMSchedule("cogvideox"))
    for i in range(3):
        ratio = (a[tau[i]] / (1 - a[tau[i]])) / (a[t[i]] / (1 - a[t[i]]))
        torch.testing.assert_close(out[i], x_gt[i] + ratio.float() * (x_p[i] - x_gt[i]))
    assert 0.05 < (a[399] / (1 - a[399])) / (a[100] / (1 - a[100])) < 0.2  # a weight far from 0 and 1 is tested


def test_one_step_posterior_identities(scheduler) -> None:
    """Eq. 16/17: posterior-mean coefficients are 1 − γ_τ/γ_{τ−1} and γ_τ/γ_{τ−1}; Eq. 21: total variance 1 − ᾱ_{τ−1}."""
    a = scheduler.alphas_cumprod.double()
    for tau in (10, 199, 399, 800):
        a_t, a_prev = a[tau], a[tau - 1]
        alpha = a_t / a_prev
        coef_gt = (1 - alpha) / (1 - a_t)
        coef_p = alpha * (1 - a_prev) / (1 - a_t)
        ratio = blend_weight(scheduler, torch.tensor([tau]), torch.tensor([tau - 1])).item()
        assert coef_p.item() == pytest.approx(ratio, rel=1e-9)
        assert coef_gt.item() == pytest.approx(1 - ratio, rel=1e-9)
        residual = alpha * (1 - a_prev) ** 2 / (1 - a_t)
        posterior = (1 - a_prev) / (1 - a_t) * (1 - alpha)
        assert (residual + posterior).item() == pytest.approx((1 - a_prev).item(), rel=1e-9)


def test_telescoping_product_eq_24(scheduler) -> None:
    tau, t = 399, 120
    prod = torch.ones((), dtype=torch.float64)
    for i in range(t + 1, tau + 1):
        prod = prod * blend_weight(scheduler, torch.tensor([i]), torch.tensor([i - 1]))[0]
    assert prod.item() == pytest.approx(
        blend_weight(scheduler, torch.tensor([tau]), torch.tensor([t])).item(), rel=1e-9
    )


def test_eq_29_marginal_has_native_variance(scheduler) -> None:
    """x_t = √ᾱ_t x_b^t + √(1−ᾱ_t) ε: mean √ᾱ_t x_b^t and variance exactly 1 − ᾱ_t per element."""
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x_gt, x_p = torch.randn(1, n, generator=g) * 0.5, torch.randn(1, n, generator=g) * 0.5 + 0.3
    tau, t = torch.tensor([399]), torch.tensor([150])
    x_b = satb_blend(x_gt, x_p, tau, t, scheduler)
    a_t = scheduler.alphas_cumprod[150].double().item()
    samples = torch.stack(
        [scheduler.add_noise(x_b.double(), torch.randn(1, n, generator=g, dtype=torch.float64), t) for _ in range(8)]
    )
    residual = samples - a_t**0.5 * x_b.double()
    assert residual.mean().abs().item() < 3e-3
    assert residual.var().item() == pytest.approx(1 - a_t, rel=1e-2)


@pytest.mark.parametrize("kind", ["linear", "cosine", "none"])
def test_ablation_blends(kind, scheduler) -> None:
    tau = torch.full((400,), 399)
    t = torch.arange(400)
    w = blend_weight(scheduler, tau, t, kind)
    assert w[-1].item() == 1.0
    if kind == "none":
        assert (w == 1).all()
    else:
        assert w[0].item() == 0.0 and (w.diff() > 0).all()


def test_bad_blend_kind(scheduler) -> None:
    with pytest.raises(ConfigError, match="blend"):
        blend_weight(scheduler, torch.tensor([3]), torch.tensor([1]), "quadratic")


def test_training_timesteps_distribution() -> None:
    g = torch.Generator().manual_seed(1)
    tau, t = sample_training_timesteps(20_000, 1000, g)
    assert tau.min() >= 0 and tau.max() <= 999 and (t <= tau).all() and (t >= 0).all()
    assert tau.float().mean().item() == pytest.approx(499.5, abs=10)
    assert t.float().mean().item() == pytest.approx(249.75, abs=10)  # E[t] = E[τ]/2
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert all(
        torch.equal(a, b) for a, b in zip(sample_training_timesteps(5, 400, g1), sample_training_timesteps(5, 400, g2))
    )


def test_jump_start_training_timesteps_are_the_solver_start_points() -> None:
    g = torch.Generator().manual_seed(0)
    tau, t = sample_jump_start_timesteps(4000, [1, 5], g)
    assert torch.equal(tau, t)  # x_b = x_p: the denoiser sees what the solver's first step sees
    assert set(tau.tolist()) == {199, 399}
    assert (tau == 399).float().mean().item() == pytest.approx(0.5, abs=0.03)
    tau, _ = sample_jump_start_timesteps(10, [3], g)
    assert tau.tolist() == [299] * 10
    with pytest.raises(ConfigError, match="train_step_counts"):
        sample_jump_start_timesteps(2, [], g)
    with pytest.raises(ConfigError, match="between 1 and"):
        sample_jump_start_timesteps(2, [0], g)
