"""Pixel-space helpers of SATB-VR's restore path: bicubic upsampling, padding, wavelet color fix."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample_bicubic(video: torch.Tensor, scale: int) -> torch.Tensor:
    """``[B,C,T,h,w] -> [B,C,T,h*scale,w*scale]``, per frame, clamped to ``[-1, 1]``.

    SATB-VR (as the release) restores at the output resolution: the LQ video is upsampled first and
    both the predictor and the ControlNet read the latent of that upsampled video.
    """
    if scale == 1:
        return video
    b, c, t, h, w = video.shape
    frames = video.transpose(1, 2).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, scale_factor=scale, mode="bicubic", align_corners=False)
    return frames.reshape(b, t, c, h * scale, w * scale).transpose(1, 2).clamp(-1, 1)


def pad_frames(video: torch.Tensor, frames: int) -> torch.Tensor:
    """Repeat the last frame of ``[B,C,T,H,W]`` until it has ``frames`` frames (the release's rule)."""
    missing = frames - video.shape[2]
    if missing <= 0:
        return video
    return torch.cat([video, video[:, :, -1:].expand(-1, -1, missing, -1, -1)], dim=2)


def pad_spatial(video: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad ``[B,C,T,H,W]`` at the bottom/right to multiples of ``multiple``."""
    h, w = video.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return video
    b, c, t = video.shape[:3]
    frames = video.transpose(1, 2).reshape(b * t, c, h, w)
    frames = F.pad(frames, (0, pw, 0, ph), mode="replicate")
    return frames.reshape(b, t, c, h + ph, w + pw).transpose(1, 2)


def pad_latent_frames(latents: torch.Tensor, multiple: int | None) -> tuple[torch.Tensor, int]:
    """Prepend copies of the first latent frame of ``[B,F,C,H,W]`` so ``F`` divides by ``multiple``.

    CogVideoX1.5 patches 2 latent frames per token; the release prepends the first latent frame to
    reach an even count. Returns the padded latents and the number of prepended frames.
    """
    if not multiple or latents.shape[1] % multiple == 0:
        return latents, 0
    extra = multiple - latents.shape[1] % multiple
    return torch.cat([latents[:, :1].expand(-1, extra, -1, -1, -1), latents], dim=1), extra


def _binomial_blur(frames: torch.Tensor, dilation: int) -> torch.Tensor:
    kernel = torch.tensor([1.0, 2.0, 1.0], device=frames.device, dtype=frames.dtype)
    kernel = (kernel[:, None] * kernel[None, :]) / 16.0
    c = frames.shape[1]
    padded = F.pad(frames, (dilation,) * 4, mode="replicate")
    return F.conv2d(padded, kernel.expand(c, 1, 3, 3), groups=c, dilation=dilation)


def _low_frequency(frames: torch.Tensor, levels: int) -> torch.Tensor:
    for level in range(levels):
        frames = _binomial_blur(frames, 2**level)
    return frames


def wavelet_color_fix(restored: torch.Tensor, reference: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """High frequencies of ``restored`` plus low frequencies of ``reference`` (à-trous wavelets).

    Both ``[B,3,T,H,W]``; the release applies this against the upsampled input so the diffusion
    output cannot shift colours. ``levels`` dilated 3x3 binomial blurs (dilations 1, 2, 4, …).
    """
    b, c, t, h, w = restored.shape
    flat = lambda v: v.transpose(1, 2).reshape(b * t, c, h, w).float()  # noqa: E731
    out, ref = flat(restored), flat(reference)
    fixed = out - _low_frequency(out, levels) + _low_frequency(ref, levels)
    return fixed.reshape(b, t, c, h, w).transpose(1, 2).to(restored.dtype).clamp(-1, 1)
