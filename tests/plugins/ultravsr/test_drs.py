"""DRS (Eq. 2-4) by value: exact inversion, t_rec on the real SD 2.1 schedule, the fixed-t baseline, clamping."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ultravsr import UltraVSR
from ultravsr.drs import degradation_range, fixed_schedule, reconstruct, reconstruction_timestep
from vsr_core.diffusion import DDPMSchedule


def sd21_alphas_cumprod() -> torch.Tensor:
    """SD 2.1-base's table computed here from its config: scaled-linear betas 0.00085 .. 0.012, 1000 steps."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    return torch.from_numpy(np.cumprod(1.0 - betas))


def test_the_core_preset_is_sd21_base():
    # diffusers builds the betas in float32: equal to the float64 formula up to float32 rounding.
    torch.testing.assert_close(
        DDPMSchedule.preset("sd2.1-base").alphas_cumprod, sd21_alphas_cumprod(), atol=1e-6, rtol=0
    )


def test_inversion_recovers_the_hr_latent_exactly_with_the_true_noise():
    generator = torch.Generator().manual_seed(0)
    z_hr = torch.randn(3, 4, 5, 6, 6, generator=generator, dtype=torch.float64)
    eps = torch.randn(z_hr.shape, generator=generator, dtype=torch.float64)
    d = torch.tensor([0.2, 0.55, 0.93], dtype=torch.float64)
    view = d.reshape(-1, 1, 1, 1, 1)
    z_lr = view * z_hr + (1 - view**2).sqrt() * eps  # Eq. 1 with sqrt(abar_t) = d
    torch.testing.assert_close(reconstruct(z_lr, eps, d), z_hr, rtol=0, atol=1e-12)
    # Any other noise estimate (or a sign flip of it) does not.
    assert (reconstruct(z_lr, -eps, d) - z_hr).abs().max() > 0.1


def test_reconstruction_timestep_on_the_sd21_schedule():
    a = sd21_alphas_cumprod()
    # Values read off the table: argmin_t |d^2 - abar_t| (by brute force here).
    for d, expected in ((0.3, 688), (0.5, 520), (0.7, 360), (0.9, 162)):
        assert int(reconstruction_timestep(torch.tensor([d]), a)[0]) == expected
        assert int(np.argmin(np.abs(d**2 - a.numpy()))) == expected
    # d = sqrt(abar_t) picks t itself, for each of a batch.
    steps = torch.tensor([0, 1, 250, 731, 999])
    assert torch.equal(reconstruction_timestep(a[steps].sqrt(), a), steps)
    # The literal Eq. 4 reading with d instead of d^2 would pick another step entirely (0.5 -> 354).
    assert int(np.argmin(np.abs(0.5 - a.numpy()))) == 354


def test_the_sqrt_reading_is_an_option_that_can_differ_by_one_step():
    a = sd21_alphas_cumprod()
    d = torch.tensor([0.07056205])
    assert int(reconstruction_timestep(d, a, "alpha_bar")) == 994
    assert int(reconstruction_timestep(d, a, "sqrt_alpha_bar")) == 993


def test_range_and_fixed_schedule_of_table3_row_a():
    a = sd21_alphas_cumprod()
    low, high = degradation_range(a)
    assert low == pytest.approx(0.0682649, abs=1e-6) and high == pytest.approx(0.9995749, abs=1e-6)
    d, t = fixed_schedule(999, a, 2)
    assert torch.equal(t, torch.tensor([999, 999]))
    torch.testing.assert_close(d, torch.full((2,), 0.0682649), atol=1e-6, rtol=0)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_d_of_zero_or_one_is_clamped_and_said_once(value, monkeypatch):
    method = UltraVSR(dem={"kind": "constant"})
    estimator = method.estimator()
    monkeypatch.setattr(type(estimator), "__call__", lambda self, video: torch.full((video.shape[0],), value))
    video = torch.zeros(2, 3, 3, 8, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d, t = method.degradation(video)
        method.degradation(video)
    said = [w for w in caught if "clamped" in str(w.message)]
    assert len(said) == 1
    low, high = degradation_range(sd21_alphas_cumprod())
    expected = low if value == 0.0 else high
    torch.testing.assert_close(d, torch.full((2,), expected, dtype=torch.float32))
    assert torch.equal(t, torch.full((2,), 999 if value == 0.0 else 0))
    assert torch.isfinite(reconstruct(torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2), d)).all()


def test_method_uses_the_fixed_timestep_for_row_a():
    method = UltraVSR(drs={"schedule": "fixed", "fixed_timestep": 999})
    d, t = method.degradation(torch.zeros(1, 3, 2, 8, 8))
    assert int(t) == 999 and float(d) == pytest.approx(0.0682649, abs=1e-6)
