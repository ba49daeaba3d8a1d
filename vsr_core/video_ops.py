"""Per-frame operations on ``[B, C, T, H, W]`` videos that every method needs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_frames(video: torch.Tensor, scale: float, mode: str = "bicubic") -> torch.Tensor:
    """Resize every frame of ``[B,C,T,H,W]`` by ``scale`` -> ``[B,C,T,H*scale,W*scale]``.

    ``bicubic`` results are clamped to ``[-1, 1]`` (bicubic overshoots at edges); ``area`` is the
    right mode for downscaling. ``scale == 1`` returns the input unchanged.
    """
    if scale == 1:
        return video
    b, c, t, h, w = video.shape
    frames = video.transpose(1, 2).reshape(b * t, c, h, w)
    align = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    frames = F.interpolate(frames, scale_factor=scale, mode=mode, **align)
    out = frames.reshape(b, t, c, *frames.shape[-2:]).transpose(1, 2)
    return out.clamp(-1, 1) if mode == "bicubic" else out


def upsample_frames(video: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling of every frame: ``[B,C,T,h,w] -> [B,C,T,h*scale,w*scale]`` in ``[-1, 1]``."""
    return resize_frames(video, scale, "bicubic")
