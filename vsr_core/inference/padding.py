"""Pad frames to sizes a method accepts and crop the result back.

Methods may declare ``min_size`` (smallest LQ height/width) and ``spatial_multiple`` (LQ sizes
must be multiples of it, e.g. 8 for a VAE with 8x downsampling); both default to 1. Padding
repeats the edge pixels (reflection fails for frames smaller than the pad).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def padded_size(size: int, multiple: int = 1, minimum: int = 1) -> int:
    """``size`` raised to at least ``minimum`` and then to a multiple of ``multiple``."""
    size = max(size, minimum)
    return -(-size // multiple) * multiple


def pad_frames(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Replicate-pad ``[B,3,T,h,w]`` at the bottom/right to ``[B,3,T,height,width]``."""
    ph, pw = height - x.shape[-2], width - x.shape[-1]
    if ph == 0 and pw == 0:
        return x
    b, c, t, h, w = x.shape
    flat = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    flat = F.pad(flat, (0, pw, 0, ph), mode="replicate")
    return flat.reshape(b, t, c, height, width).permute(0, 2, 1, 3, 4)


def method_size_rules(method: object) -> tuple[int, int]:
    """``(spatial_multiple, min_size)`` declared by a method (defaults ``(1, 1)``)."""
    return int(getattr(method, "spatial_multiple", 1) or 1), int(
        getattr(method, "min_size", 1) or 1
    )
