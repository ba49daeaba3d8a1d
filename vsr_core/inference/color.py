"""Colour correction of restored frames against the (upsampled) input: wavelet and AdaIN.

Diffusion restorers drift in colour; users of STAR / Upscale-A-Video fix it by taking the
low-frequency colour from the input. Both functions take ``restored`` and ``reference``
``[B,3,T,H,W]`` in ``[-1, 1]`` of one size and return ``[B,3,T,H,W]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["adain_color_fix", "COLOR_FIXES", "wavelet_color_fix"]


def _frames(x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def _video(x: torch.Tensor, b: int, t: int) -> torch.Tensor:
    return x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)


def adain_color_fix(restored: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-frame, per-channel mean and std of ``restored`` replaced by those of ``reference``."""
    dims = (-2, -1)
    mean_r, std_r = (
        restored.mean(dims, keepdim=True),
        restored.std(dims, keepdim=True) + eps,
    )
    mean_x, std_x = (
        reference.mean(dims, keepdim=True),
        reference.std(dims, keepdim=True) + eps,
    )
    return (restored - mean_r) / std_r * std_x + mean_x


def _wavelet_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    kernel = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=x.dtype, device=x.device) / 16
    kernel = kernel[None, None].repeat(x.shape[1], 1, 1, 1)
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    return F.conv2d(x, kernel, groups=x.shape[1], dilation=radius)


def _low_high(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    high = torch.zeros_like(x)
    low = x
    for i in range(levels):
        blurred = _wavelet_blur(low, 2**i)
        high = high + (low - blurred)
        low = blurred
    return low, high


def wavelet_color_fix(restored: torch.Tensor, reference: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """High frequencies of ``restored`` plus the low frequencies of ``reference`` (à trous wavelets)."""
    b, _, t = restored.shape[:3]
    _, high = _low_high(_frames(restored.float()), levels)
    low, _ = _low_high(_frames(reference.float()), levels)
    return _video(high + low, b, t).to(restored.dtype)


COLOR_FIXES = {"wavelet": wavelet_color_fix, "adain": adain_color_fix}
