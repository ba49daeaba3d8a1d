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

__all__ = ["gaussian_noise", "NoisePlan", "poisson_noise", "sample_noise"]


@dataclass
class NoisePlan:
    """Sampled noise parameters of a batch: per-clip flags, per-frame levels ``[B*T]``."""

    apply: list[bool]
    gaussian: list[bool]
    sigma: torch.Tensor  # Gaussian standard deviation in [0, 1] units
    scale: torch.Tensor  # Poisson noise multiplier
    gray: list[bool]  # gray: one noise image shared by R, G, B


def sample_noise(
    draws: RandomDraws, clips: int, frames: int, params: NoiseParams, drift: DriftParams | None
) -> NoisePlan:
    """Draw which clips get noise, its type, level and colour; levels drift over frames if asked."""
    p = params
    apply = draws.host_bernoulli(clips, p.prob)
    gaussian = draws.host_bernoulli(clips, p.gaussian_prob)
    sigma = draws.uniform(clips, *p.gaussian_sigma)
    scale = draws.uniform(clips, *p.poisson_scale)
    gray = draws.host_bernoulli(clips, p.gray_prob)
    if drift is None:
        sigma, scale = per_frame(sigma, frames), per_frame(scale, frames)
    else:
        sigma = drift_values(draws, sigma, frames, drift.gaussian_sigma, *p.gaussian_sigma)
        scale = drift_values(draws, scale, frames, drift.poisson_scale, *p.poisson_scale)
    return NoisePlan(apply, gaussian, sigma / 255.0, scale, gray)


def gaussian_noise(frames: torch.Tensor, sigma: torch.Tensor, gray: bool, draws: RandomDraws) -> torch.Tensor:
    """Noise ``[N, 3|1, h, w]`` (broadcasts over channels) for frames ``[N, 3, h, w]``: N(0, sigma^2) per frame."""
    n, _, h, w = frames.shape
    return draws.normal((n, 1 if gray else 3, h, w)) * sigma.view(n, 1, 1, 1)


def _intensity_levels(frames: torch.Tensor, clip_length: int) -> torch.Tensor:
    """Per-frame ``[N]`` count of levels for Poisson sampling: 2^ceil(log2(#distinct 8-bit values)).

    Real-ESRGAN counts the distinct values of each image; we count over each clip so that all its
    frames share the level (a per-clip parameter), without a host sync (presence map of 256 bins).
    """
    counts = []
    for clip in frames.split(clip_length):
        present = torch.zeros(256, dtype=torch.bool, device=frames.device)
        # Chunks of 2^24 values: the int64 index costs 8 bytes per value (1024^2 x 37 frames x 3 = 0.9 GB).
        for chunk in clip.reshape(-1).split(1 << 24):
            present.index_fill_(0, (chunk * 255.0).round().clamp(0, 255).long(), True)
        counts.append(present.sum())
    distinct = torch.stack(counts).clamp(min=1).float()
    return per_frame(torch.exp2(torch.ceil(torch.log2(distinct))), clip_length)


def poisson_noise(
    frames: torch.Tensor, scale: torch.Tensor, gray: bool, clip_length: int, draws: RandomDraws
) -> torch.Tensor:
    """Shot noise ``[N, 3|1, h, w]`` for frames ``[N, 3, h, w]`` in ``[0, 1]`` (whole clips of ``clip_length``).

    ``poisson(x * L) / L - x`` at ``L`` intensity levels, times ``scale`` ``[N]``; gray noise is
    computed on the luma and broadcasts over the channels (Real-ESRGAN ``generate_poisson_noise_pt``,
    which computes both and blends them with the 0/1 gray flag).
    """
    n = frames.shape[0]
    img = rgb_to_grayscale(frames) if gray else frames
    img = (img * 255.0).round().clamp(0, 255) / 255.0
    levels = _intensity_levels(img, clip_length).view(n, 1, 1, 1)
    return (draws.poisson(img * levels) / levels - img) * scale.view(n, 1, 1, 1)
