"""JPEG compression with kornia's differentiable codec and per-clip (optionally drifting) quality."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from kornia.enhance import jpeg_codec_differentiable

from vsr_core.data.degradations.params import DriftParams, JPEGParams
from vsr_core.data.degradations.random_draws import RandomDraws, drift_values, per_frame

__all__ = ["jpeg", "JPEGPlan", "sample_jpeg"]


@dataclass
class JPEGPlan:
    """Per-clip apply flags and per-frame qualities ``[B*T]`` of a batch."""

    apply: list[bool]
    quality: torch.Tensor


def sample_jpeg(
    draws: RandomDraws, clips: int, frames: int, params: JPEGParams, drift: DriftParams | None
) -> JPEGPlan:
    """With ``params.prob`` a clip is compressed at a quality drawn from ``params.quality``."""
    apply = draws.host_bernoulli(clips, params.prob)
    quality = draws.uniform(clips, *params.quality)
    if drift is None:
        quality = per_frame(quality, frames)
    else:
        quality = drift_values(draws, quality, frames, drift.jpeg_quality, *params.quality)
    return JPEGPlan(apply, quality)


def jpeg(frames: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG round trip of frames ``[N, 3, h, w]`` (clamped to ``[0, 1]`` first) at ``quality`` ``[N]``.

    kornia pads to whole 16x16 macroblocks internally and crops back, so any size works.
    """
    return jpeg_codec_differentiable(frames.clamp(0.0, 1.0), quality.to(frames.dtype))
