"""A weight-free, lossy 12-channel codec at the LR size: the tiny CPU stand-in for the SD x4 upscaler's VAE.

The SD x4 upscaler's VAE keeps latents at the LR size (factor 4 = the upscaling factor) with 4 channels, against a
UNet 256 channels wide. The exact pixel-unshuffle codec at factor 4 gives 48 channels, wider than the tiny UNet
(16 channels at full resolution), which must carry them through to its v output; in CPU minutes it does not learn
to (benchmarks/RESULTS.md, DiffVSR). This codec halves the frame first, then unshuffles 2x2 blocks:

* ``encode``: ``[B, 3, T, H, W]`` -> 2x2 average pool -> ``pixel_unshuffle(2)`` -> ``[B, 12, T, H/4, W/4]``,
  times ``scaling``;
* ``decode``: ``/ scaling`` -> ``pixel_shuffle(2)`` -> bicubic x2 -> ``[B, 3, T, H, W]``.

It is exact on the half-resolution frame (``encode(decode(z))`` differs only by the bicubic-then-average round
trip) and loses only what lies above half the HR frequency band: 33.2 dB reconstruction on the held-out sample clips
(64 px crops) against bicubic x4's 27.7 dB from the LR. ``scaling`` 2 brings the latents to about unit variance
(std 0.55 on the training sample clips), the rule behind SD's VAE ``scaling_factor``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vsr_core.errors import ConfigError
from vsr_core.latent import LatentCodec

__all__ = ["HalfResolutionUnshuffleCodec"]


class HalfResolutionUnshuffleCodec(LatentCodec):
    """``[B, 3, T, H, W]`` <-> ``[B, 12, T, H/4, W/4]``: 2x2 average pool + 2x2 unshuffle, and back (module doc).

    Args:
        scaling: latents are ``unshuffle(pool(x)) * scaling`` (2: about unit variance on natural frames).
    """

    spatial_factor = 4
    temporal_factor = 1
    latent_channels = 12

    def __init__(self, scaling: float = 2.0) -> None:
        super().__init__()
        if scaling <= 0:
            raise ConfigError(f"scaling must be > 0 (latents are unshuffle(pool(x)) * scaling), got {scaling}")
        self.scaling = scaling
        self._finish_init()

    def _encode(self, video: torch.Tensor, sample_posterior: bool, generator: torch.Generator | None) -> torch.Tensor:
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        z = F.pixel_unshuffle(F.avg_pool2d(frames, 2), 2)
        return z.reshape(b, t, self.latent_channels, h // 4, w // 4).transpose(1, 2) * self.scaling

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = latents.shape
        z = (latents / self.scaling).transpose(1, 2).reshape(b * t, self.latent_channels, h, w)
        half = F.pixel_shuffle(z, 2)
        frames = F.interpolate(half, scale_factor=2, mode="bicubic", align_corners=False)
        return frames.reshape(b, t, 3, h * 4, w * 4).transpose(1, 2)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scaling={self.scaling}"
