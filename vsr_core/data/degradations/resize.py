"""Random resizing: per-clip up/down/keep factors and interpolation modes (Real-ESRGAN / RealBasicVSR)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vsr_core.data.degradations.params import ResizeParams
from vsr_core.data.degradations.random_draws import RandomDraws

__all__ = ["resize", "ResizePlan", "sample_resize"]


@dataclass
class ResizePlan:
    """Per-clip resize factors (1.0 = keep) and interpolation modes of a batch."""

    factors: list[float]
    modes: list[str]


def sample_resize(draws: RandomDraws, clips: int, params: ResizeParams) -> ResizePlan:
    """Up (``[1, hi]``), down (``[lo, 1]``) or keep with ``params.probs``; a mode picked uniformly."""
    kind = draws.host_categorical(clips, params.probs)
    up = draws.host_uniform(clips, 1.0, max(params.scale[1], 1.0))
    down = draws.host_uniform(clips, min(params.scale[0], 1.0), 1.0)
    mode = draws.host_categorical(clips, [1.0] * len(params.modes))
    factors = [(up[i], down[i], 1.0)[k] for i, k in enumerate(kind)]
    return ResizePlan(factors, [params.modes[m] for m in mode])


def resize(frames: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool = False) -> torch.Tensor:
    """Resize frames ``[N, C, h, w]`` to ``size`` with ``mode`` (area / bilinear / bicubic).

    ``antialias`` low-passes bilinear/bicubic downscaling (PIL/MATLAB-like ``imresize``); area
    averaging is antialiased by construction. A same-size resize returns the input unchanged.
    """
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    if mode == "area":
        return F.interpolate(frames, size=size, mode="area")
    return F.interpolate(frames, size=size, mode=mode, align_corners=False, antialias=antialias)
