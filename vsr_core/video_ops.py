"""Per-frame operations on ``[B, C, T, H, W]`` videos that every method needs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pad_spatial", "pad_temporal", "padded_size", "resize_frames", "upsample_frames"]


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


def padded_size(size: int, multiple: int = 1, minimum: int = 1) -> int:
    """``size`` raised to at least ``minimum`` and then to a multiple of ``multiple``."""
    size = max(size, minimum)
    return -(-size // multiple) * multiple


def pad_spatial(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Replicate-pad ``[B,C,T,h,w]`` at the bottom/right to ``[B,C,T,height,width]``.

    Edge pixels are repeated (reflection fails for frames smaller than the pad); crop back with
    ``[..., :h, :w]``.
    """
    ph, pw = height - video.shape[-2], width - video.shape[-1]
    if ph == 0 and pw == 0:
        return video
    b, c, t, h, w = video.shape
    flat = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    flat = F.pad(flat, (0, pw, 0, ph), mode="replicate")
    return flat.reshape(b, t, c, height, width).permute(0, 2, 1, 3, 4)


def pad_temporal(video: torch.Tensor, frames: int) -> torch.Tensor:
    """Repeat the last frame of ``[B,C,T,H,W]`` until it has ``frames`` frames (crop back with ``[:, :, :T]``)."""
    missing = frames - video.shape[2]
    if missing <= 0:
        return video
    return torch.cat([video, video[:, :, -1:].expand(-1, -1, missing, -1, -1)], dim=2)
