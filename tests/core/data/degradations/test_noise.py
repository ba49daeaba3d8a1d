"""Noise, resize and JPEG stages: statistics and per-clip parameters."""

from __future__ import annotations

import pytest
import torch

from vsr_core.data.degradations import NoiseParams, ResizeParams
from vsr_core.data.degradations.jpeg import jpeg
from vsr_core.data.degradations.noise import gaussian_noise, poisson_noise, sample_noise
from vsr_core.data.degradations.random_draws import RandomDraws, drift_values
from vsr_core.data.degradations.resize import resize, sample_resize


def _draws(seed=0):
    return RandomDraws(torch.Generator().manual_seed(seed), "cpu")


def test_gaussian_noise_has_the_requested_std_and_gray_noise_is_shared_by_channels():
    frames = torch.full((2, 3, 64, 64), 0.5)
    colour = gaussian_noise(frames, torch.tensor([0.1, 0.02]), False, _draws())
    gray = gaussian_noise(frames, torch.tensor([0.1, 0.02]), True, _draws())
    assert colour.shape == (2, 3, 64, 64) and gray.shape == (2, 1, 64, 64)  # gray broadcasts over R, G, B
    assert colour[0].std().item() == pytest.approx(0.1, rel=0.05)
    assert colour[1].std().item() == pytest.approx(0.02, rel=0.05)
    assert not torch.equal(colour[0, 0], colour[0, 1])


def test_poisson_noise_uses_the_clip_levels_and_scales_with_its_factor():
    # A clip with 256 distinct 8-bit values is sampled at 256 levels, a flat clip at 1 level
    # (2^ceil(log2(#values)), Real-ESRGAN): x + noise lands on multiples of 1/levels.
    ramp = (torch.arange(256.0).view(1, 1, 16, 16) / 255).expand(2, 3, 16, 16)
    flat = torch.full((2, 3, 16, 16), 128 / 255)  # an exact 8-bit level
    frames = torch.cat([ramp, flat])
    noisy = frames + poisson_noise(frames, torch.ones(4), False, clip_length=2, draws=_draws())
    torch.testing.assert_close(noisy[:2] * 256, (noisy[:2] * 256).round(), atol=1e-3, rtol=0)
    torch.testing.assert_close(noisy[2:], noisy[2:].round(), atol=1e-5, rtol=0)
    flat_noise = poisson_noise(torch.full((2, 3, 64, 64), 0.5), torch.tensor([1.0, 2.0]), False, 1, _draws(1))
    # poisson(0.5) - 0.5 has variance 0.5; a scale of 2 doubles the standard deviation.
    assert flat_noise[0].var().item() == pytest.approx(0.5, rel=0.1)
    assert flat_noise[1].std().item() == pytest.approx(2 * flat_noise[0].std().item(), rel=0.1)


def test_noise_plan_is_per_clip_and_drift_interpolates_linearly():
    plan = sample_noise(_draws(), clips=3, frames=4, params=NoiseParams(gaussian_sigma=(1, 30)), drift=None)
    sigma = plan.sigma.view(3, 4)
    assert torch.equal(sigma, sigma[:, :1].expand(3, 4)) and sigma.min() >= 1 / 255 and sigma.max() <= 30 / 255
    values = drift_values(_draws(), torch.tensor([1.0, 5.0]), frames=5, step=1.0, low=0.0, high=10.0).view(2, 5)
    steps = values[:, 1:] - values[:, :-1]
    torch.testing.assert_close(steps, steps[:, :1].expand_as(steps))
    assert values.min() >= 0 and values.max() <= 10 and torch.equal(values[:, 0], torch.tensor([1.0, 5.0]))


def test_resize_plan_respects_the_up_down_keep_ranges():
    plan = sample_resize(_draws(), 200, ResizeParams(probs=(0.2, 0.7, 0.1), scale=(0.15, 1.5)))
    factors = torch.tensor(plan.factors)
    assert factors.min() >= 0.15 and factors.max() <= 1.5
    assert 0.55 < (factors < 1).float().mean() < 0.85 and set(plan.modes) == {"area", "bilinear", "bicubic"}
    assert resize(torch.rand(2, 3, 8, 8), (3, 5), "area").shape == (2, 3, 3, 5)


def test_jpeg_lower_quality_loses_more_and_keeps_any_size():
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 20, 27, generator=g).clamp(0.2, 0.8)
    out = jpeg(frames, torch.tensor([10.0, 95.0]))
    assert out.shape == frames.shape
    assert (out[0] - frames[0]).abs().mean() > (out[1] - frames[1]).abs().mean()
