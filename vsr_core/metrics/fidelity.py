"""Full-reference fidelity metrics on videos in ``[-1, 1]``.

Both functions take ``[B, 3, T, H, W]`` tensors and return one value per clip (``[B]``), averaging
over frames the per-frame score, which is how the VSR papers report PSNR/SSIM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.metrics import ssim as kornia_ssim

__all__ = ["psnr", "ssim"]


def _to_unit_frames(video: torch.Tensor) -> torch.Tensor:
    """``[B,3,T,H,W]`` in [-1,1] -> ``[B*T,3,H,W]`` in [0,1], float32."""
    b, c, t, h, w = video.shape
    frames = video.float().clamp(-1, 1).add(1).div(2)
    return frames.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def _rgb_to_y(frames: torch.Tensor) -> torch.Tensor:
    # ITU-R BT.601 luma on the [16, 235] range, as in the MATLAB rgb2ycbcr that VSR papers use.
    weights = frames.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1) / 255.0
    return (frames * weights).sum(dim=1, keepdim=True) + 16.0 / 255.0


def _prepare(pred: torch.Tensor, target: torch.Tensor, y_channel: bool, crop_border: int):
    if pred.shape != target.shape:
        raise ValueError(f"metric inputs differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    p, g = _to_unit_frames(pred), _to_unit_frames(target)
    if crop_border > 0:
        p = p[..., crop_border:-crop_border, crop_border:-crop_border]
        g = g[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        p, g = _rgb_to_y(p), _rgb_to_y(g)
    return p, g


def psnr(pred: torch.Tensor, target: torch.Tensor, y_channel: bool = False, crop_border: int = 0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per clip: mean over frames of ``10 log10(1 / MSE)`` on [0, 1]."""
    b, t = pred.shape[0], pred.shape[2]
    p, g = _prepare(pred, target, y_channel, crop_border)
    mse = F.mse_loss(p, g, reduction="none").flatten(1).mean(1).clamp_min(1e-10)
    return (10 * torch.log10(1.0 / mse)).view(b, t).mean(1)


def ssim(pred: torch.Tensor, target: torch.Tensor, y_channel: bool = False, crop_border: int = 0) -> torch.Tensor:
    """Structural similarity per clip (11x11 Gaussian window, sigma 1.5), mean over frames."""
    b, t = pred.shape[0], pred.shape[2]
    p, g = _prepare(pred, target, y_channel, crop_border)
    window = min(11, p.shape[-1], p.shape[-2])
    window -= 1 - window % 2  # kornia needs an odd window; tiny frames get a smaller one
    ssim_map = kornia_ssim(p, g, window_size=window, max_val=1.0, padding="valid")
    return ssim_map.flatten(1).mean(1).view(b, t).mean(1)
