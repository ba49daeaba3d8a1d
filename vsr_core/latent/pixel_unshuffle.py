"""A weight-free, exactly invertible codec: pixel (un)shuffle, optionally folding frames into channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vsr_core.errors import ConfigError
from vsr_core.latent.base import LatentCodec

__all__ = ["PixelUnshuffleCodec"]


class PixelUnshuffleCodec(LatentCodec):
    """Rearranges ``[B,3,T,H,W]`` into ``[B, 3*tf*f*f, T/tf, H/f, W/f]`` and back, with no weights.

    ``f = factor`` (spatial), ``tf = temporal_factor``. Latents are ``(x - shift) * scaling``;
    with the defaults (``scaling=1``, ``shift=0``) ``decode(encode(x)) == x`` bit for bit, so tiny
    methods can learn in a "latent" space without any pretrained VAE. The channel layout is
    ``(c, dt, dy, dx)`` with ``c`` slowest, i.e. ``torch.pixel_unshuffle`` per frame after the
    ``tf`` frames of a group were stacked on the channel axis.
    """

    def __init__(
        self,
        factor: int = 4,
        temporal_factor: int = 1,
        scaling: float = 1.0,
        shift: float = 0.0,
        *,
        tile_size: int | None = None,
        tile_overlap: int = 0,
        frames_per_chunk: int | None = None,
    ) -> None:
        super().__init__(tile_size=tile_size, tile_overlap=tile_overlap, frames_per_chunk=frames_per_chunk)
        if factor < 1 or temporal_factor < 1:
            raise ConfigError(f"factor={factor} and temporal_factor={temporal_factor} must be >= 1")
        if scaling == 0:
            raise ConfigError("scaling must be non-zero (latents are (x - shift) * scaling)")
        self.spatial_factor = factor
        self.temporal_factor = temporal_factor
        self.latent_channels = 3 * temporal_factor * factor * factor
        self.scaling = scaling
        self.shift = shift
        self._finish_init()

    def _encode(self, video: torch.Tensor, sample_posterior: bool, generator: torch.Generator | None) -> torch.Tensor:
        b, c, t, h, w = video.shape
        tf, f = self.temporal_factor, self.spatial_factor
        # [B, C, t, tf, H, W] -> [B, t, C, tf, H, W] -> frames of C*tf channels -> unshuffle.
        x = video.reshape(b, c, t // tf, tf, h, w).permute(0, 2, 1, 3, 4, 5).reshape(b * (t // tf), c * tf, h, w)
        x = F.pixel_unshuffle(x, f)
        x = x.reshape(b, t // tf, self.latent_channels, h // f, w // f).transpose(1, 2)
        if self.shift:
            x = x - self.shift
        return x * self.scaling if self.scaling != 1.0 else x

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = latents.shape
        tf, f = self.temporal_factor, self.spatial_factor
        z = latents / self.scaling if self.scaling != 1.0 else latents
        if self.shift:
            z = z + self.shift
        x = z.transpose(1, 2).reshape(b * t, self.latent_channels, h, w)
        x = F.pixel_shuffle(x, f)
        x = x.reshape(b, t, 3, tf, h * f, w * f).permute(0, 2, 1, 3, 4, 5)
        return x.reshape(b, 3, t * tf, h * f, w * f)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scaling={self.scaling}, shift={self.shift}"
