"""Blur kernels: formulas against direct evaluations, normalisation, support, per-clip sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import j1

from vsr_core.data.degradations import BlurParams, DriftParams
from vsr_core.data.degradations.kernels import bivariate_kernels, blur, sample_blur_kernels, sinc_kernels
from vsr_core.data.degradations.random_draws import RandomDraws


def _t(*values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


def _reference_bivariate(size, sx, sy, theta, beta, plateau):
    """Real-ESRGAN's formula with an explicit covariance matrix and its inverse (numpy, float64)."""
    ax = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    grid = np.stack([xx, yy], -1)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    inv = np.linalg.inv(rot @ np.diag([sx**2, sy**2]) @ rot.T)
    q = np.sum((grid @ inv) * grid, -1)
    kernel = 1.0 / (q**beta + 1.0) if plateau else np.exp(-0.5 * q**beta)
    return kernel / kernel.sum()


@pytest.mark.parametrize(
    "size,sx,sy,theta,beta,plateau",
    [
        (7, 1.0, 1.0, 0.0, 1.0, False),
        (21, 3.0, 0.7, 0.9, 1.0, False),
        (13, 2.0, 1.2, -2.0, 0.6, False),
        (9, 1.5, 0.5, 1.3, 1.7, True),
    ],
)
def test_bivariate_kernel_matches_covariance_formula_and_is_zero_outside_its_size(size, sx, sy, theta, beta, plateau):
    kernel = bivariate_kernels(
        _t(size, dtype=torch.long), _t(sx), _t(sy), _t(theta), _t(beta), _t(plateau, dtype=torch.bool), 21
    )[0]
    pad = (21 - size) // 2
    inner = kernel[pad : pad + size, pad : pad + size].double().numpy()
    np.testing.assert_allclose(inner, _reference_bivariate(size, sx, sy, theta, beta, plateau), atol=1e-6)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert kernel.abs().sum().item() == pytest.approx(float(np.abs(inner).sum()), abs=1e-5)  # nothing outside


def test_isotropic_gaussian_is_separable_exp():
    kernel = bivariate_kernels(
        _t(11, dtype=torch.long), _t(1.5), _t(1.5), _t(0.0), _t(1.0), _t(False, dtype=torch.bool), 11
    )[0]
    g = torch.exp(-((torch.arange(11.0) - 5) ** 2) / (2 * 1.5**2))
    torch.testing.assert_close(kernel, torch.outer(g, g) / torch.outer(g, g).sum(), atol=1e-7, rtol=1e-5)


def test_sinc_kernel_matches_bessel_formula():
    size, omega = 13, 1.1
    kernel = sinc_kernels(_t(size, dtype=torch.long), _t(omega), 21)[0, 4:17, 4:17].double().numpy()
    ax = np.arange(size) - size // 2
    r = np.hypot(*np.meshgrid(ax, ax))
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = omega * j1(omega * r) / (2 * np.pi * r)
    ref[size // 2, size // 2] = omega**2 / (4 * np.pi)
    np.testing.assert_allclose(kernel, ref / ref.sum(), atol=1e-6)
    assert kernel.min() < 0  # ringing side lobes are kept


def test_sampled_kernels_are_normalised_and_shared_by_the_frames_of_a_clip():
    params = BlurParams(sinc_prob=0.5)
    draws = RandomDraws(torch.Generator().manual_seed(0), "cpu")
    kernels, apply = sample_blur_kernels(draws, clips=6, frames=3, params=params, drift=None)
    assert kernels.shape == (18, 21, 21) and len(apply) == 6
    torch.testing.assert_close(kernels.sum(dim=(1, 2)), torch.ones(18), atol=1e-5, rtol=0)
    per_clip = kernels.view(6, 3, 21, 21)
    assert torch.equal(per_clip[:, 0], per_clip[:, 1]) and torch.equal(per_clip[:, 0], per_clip[:, 2])
    assert not torch.allclose(per_clip[0, 0], per_clip[1, 0])  # clips draw their own kernel


def test_drift_changes_the_kernel_smoothly_across_frames():
    draws = RandomDraws(torch.Generator().manual_seed(1), "cpu")
    params = BlurParams(kernel_types=("iso",), kernel_probs=(1.0,), sinc_prob=0.0)
    kernels, _ = sample_blur_kernels(draws, clips=4, frames=9, params=params, drift=DriftParams(sigma=0.2))
    k = kernels.view(4, 9, 21, 21)
    steps = (k[:, 1:] - k[:, :-1]).abs().sum(dim=(2, 3))  # [4, 8] change between neighbouring frames
    assert (k[:, 0] - k[:, -1]).abs().sum() > 0
    assert torch.all(steps <= (k[:, 0] - k[:, -1]).abs().sum(dim=(1, 2))[:, None] + 1e-6)


def test_blur_with_a_delta_kernel_is_identity_and_handles_tiny_frames():
    frames = torch.rand(2, 3, 5, 6)
    delta = torch.zeros(2, 21, 21)
    delta[:, 10, 10] = 1.0
    torch.testing.assert_close(blur(frames, delta), frames)
    box = torch.zeros(2, 21, 21)
    box[:, 9:12, 9:12] = 1 / 9
    assert blur(frames, box).shape == frames.shape
