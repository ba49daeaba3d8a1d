"""Gaussian and Poisson noise (colour or gray) with per-clip levels, after Real-ESRGAN's ``*_pt`` functions.

The noise *level* is a clip parameter (same for every frame unless drift is on); the noise samples
themselves are independent per frame and pixel, like sensor noise in a real video.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from kornia.color import rgb_to_grayscale

from vsr_core.data.degradations.params import DriftParams, NoiseParams
from vsr_core.data.degradations.random_draws import RandomDraws, drift_values, per_frame


@dataclass
class NoisePlan:
    """Sampled noise parameters of a batch: per-clip flags, per-frame levels ``[B*T]``."""

    apply: list[bool]
    gaussian: list[bool]
    sigma: torch.Tensor  # Gaussian standard deviation in [0, 1] units
    scale: torch.Tensor  # Poisson noise multiplier
    gray: torch.Tensor  # 1.0 = gray (same noise on R, G, B), 0.0 = colour


def sample_noise(
    draws: RandomDraws, clips: int, frames: int, params: NoiseParams, drift: DriftParams | None
) -> NoisePlan:
    """Draw which clips get noise, its type, level and colour; levels drift over frames if asked."""
    p = params
    apply = draws.host_bernoulli(clips, p.prob)
    gaussian = draws.host_bernoulli(clips, p.gaussian_prob)
    sigma = draws.uniform(clips, *p.gaussian_sigma)
    scale = draws.uniform(clips, *p.poisson_scale)
    gray = (draws.uniform(clips) < p.gray_prob).float()
    if drift is None:
        sigma, scale = per_frame(sigma, frames), per_frame(scale, frames)
    else:
        sigma = drift_values(draws, sigma, frames, drift.gaussian_sigma, *p.gaussian_sigma)
        scale = drift_values(draws, scale, frames, drift.poisson_scale, *p.poisson_scale)
    return NoisePlan(apply, gaussian, sigma / 255.0, scale, per_frame(gray, frames))


def gaussian_noise(frames: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, draws: RandomDraws) -> torch.Tensor:
    """Noise ``[N, 3, h, w]`` for frames ``[N, 3, h, w]``: N(0, sigma^2), gray where ``gray`` is 1."""
    n, _, h, w = frames.shape
    colour = draws.normal((n, 3, h, w))
    mono = draws.normal((n, 1, h, w))
    g = gray.view(n, 1, 1, 1)
    return (colour * (1 - g) + mono * g) * sigma.view(n, 1, 1, 1)


def _intensity_levels(frames: torch.Tensor, clip_length: int) -> torch.Tensor:
    """Per-frame ``[N]`` count of levels for Poisson sampling: 2^ceil(log2(#distinct 8-bit values)).

    Real-ESRGAN counts the distinct values of each image; we count over each clip so that all its
    frames share the level (a per-clip parameter), without a host sync (presence map of 256 bins).
    """
    counts = []
    # One clip at a time: the int64 index of a whole batch would be 8 bytes per value.
    for clip in frames.split(clip_length):
        present = torch.zeros(256, dtype=torch.bool, device=frames.device)
        present.index_fill_(0, (clip * 255.0).round().clamp(0, 255).long().reshape(-1), True)
        counts.append(present.sum())
    distinct = torch.stack(counts).clamp(min=1).float()
    return per_frame(torch.exp2(torch.ceil(torch.log2(distinct))), clip_length)


def poisson_noise(
    frames: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor, clip_length: int, draws: RandomDraws
) -> torch.Tensor:
    """Shot noise ``[N, 3, h, w]`` for frames ``[N, 3, h, w]`` in ``[0, 1]`` (whole clips of ``clip_length``).

    ``poisson(x * L) / L - x`` at ``L`` intensity levels, times ``scale``; gray noise is computed on
    the luma and shared by the three channels (Real-ESRGAN ``generate_poisson_noise_pt``).
    """
    n = frames.shape[0]
    img = (frames * 255.0).round().clamp(0, 255) / 255.0
    levels = _intensity_levels(img, clip_length).view(n, 1, 1, 1)
    colour = draws.poisson(img * levels) / levels - img
    luma = (rgb_to_grayscale(frames) * 255.0).round().clamp(0, 255) / 255.0
    luma_levels = _intensity_levels(luma, clip_length).view(n, 1, 1, 1)
    mono = draws.poisson(luma * luma_levels) / luma_levels - luma
    g = gray.view(n, 1, 1, 1)
    return (colour * (1 - g) + mono * g) * scale.view(n, 1, 1, 1)
