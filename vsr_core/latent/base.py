"""The :class:`LatentCodec` contract: video <-> diffusion-ready latents, with memory bounds.

Every codec maps pixel video ``[B, 3, T, H, W]`` in ``[-1, 1]`` to latents ``[B, c, t, h, w]``
that are already scaled / normalized for diffusion (``h = H / spatial_factor``,
``t = latent_frames(T)``) and back. Two generic memory bounds are implemented here once:

* **spatial tiling** (``tile_size`` / ``tile_overlap`` in pixels): tiles are encoded or decoded
  separately and blended linearly across the overlap (:mod:`vsr_core.latent.tiling`);
* **temporal chunking** (``frames_per_chunk`` pixel frames) for codecs without temporal state
  (per-frame 2D VAEs, the weight-free codec). Causal 3D VAEs carry a temporal cache and chunk
  frames internally (diffusers' own frame batching), so they reject ``frames_per_chunk``.

Codecs are frozen by default: parameters do not require grad and the modules stay in eval mode
even inside a training ``LightningModule`` (``trainable=True`` lifts this, ``encoder_trainable``
only for the encoder). Gradients still flow *through* a frozen codec to its input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from fractions import Fraction

import torch
from torch import nn

from vsr_core.errors import ConfigError
from vsr_core.frames import frames_at_least
from vsr_core.latent.tiling import tiled_apply

__all__ = ["LatentCodec"]


class LatentCodec(nn.Module, ABC):
    """Abstract video autoencoder: ``encode`` ``[B,3,T,H,W]`` -> ``[B,c,t,h,w]``, ``decode`` back (clamped to ``[-1,1]``).

    Subclasses set ``spatial_factor``, ``temporal_factor``, ``latent_channels`` and ``causal``
    (``True``: the codec takes ``4k+1``-style frame counts, first frame encoded alone), implement
    :meth:`_encode` / :meth:`_decode` on a whole (tile of a) clip and call :meth:`_finish_init`
    at the end of their ``__init__``.
    """

    spatial_factor: int = 1
    temporal_factor: int = 1
    latent_channels: int = 3
    causal: bool = False

    def __init__(
        self,
        *,
        tile_size: int | None = None,
        tile_overlap: int = 0,
        frames_per_chunk: int | None = None,
        trainable: bool = False,
        encoder_trainable: bool = False,
    ) -> None:
        super().__init__()
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.frames_per_chunk = frames_per_chunk
        self.trainable = trainable
        self.encoder_trainable = encoder_trainable

    # ----------------------------------------------------------------- subclass hooks
    @abstractmethod
    def _encode(self, video: torch.Tensor, sample_posterior: bool, generator: torch.Generator | None) -> torch.Tensor:
        """Encode a full clip (or one spatial tile / frame chunk) to scaled latents."""

    @abstractmethod
    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode scaled latents of a clip (or tile / chunk) to pixels (not yet clamped)."""

    def encoder_modules(self) -> Iterable[nn.Module]:
        """Modules that ``encoder_trainable=True`` unfreezes (none for a weight-free codec)."""
        return ()

    def _finish_init(self) -> None:
        """Validate the memory options against the now known factors and apply the freezing policy."""
        f = self.spatial_factor
        if self.tile_size is not None:
            if self.tile_size <= 0 or self.tile_size % f or self.tile_overlap % f:
                raise ConfigError(
                    f"tile_size={self.tile_size} and tile_overlap={self.tile_overlap} must be positive multiples of "
                    f"{type(self).__name__}'s spatial factor {f}"
                )
            if not 0 <= self.tile_overlap < self.tile_size:
                raise ConfigError(
                    f"tile_overlap={self.tile_overlap} must be >= 0 and smaller than tile_size={self.tile_size}"
                )
        if self.frames_per_chunk is not None:
            if self.causal:
                raise ConfigError(
                    f"{type(self).__name__} is a causal 3D VAE that batches frames internally; leave frames_per_chunk unset"
                )
            if self.frames_per_chunk <= 0 or self.frames_per_chunk % self.temporal_factor:
                raise ConfigError(
                    f"frames_per_chunk={self.frames_per_chunk} must be a positive multiple of the temporal factor {self.temporal_factor}"
                )
        self.requires_grad_(self.trainable)
        if self.encoder_trainable and not self.trainable:
            for module in self.encoder_modules():
                module.requires_grad_(True)
        self.train(False)

    def train(self, mode: bool = True) -> LatentCodec:
        # A frozen codec stays in eval mode (dropout/norm statistics) when the owning model trains.
        super().train(mode and self.trainable)
        if mode and not self.trainable and self.encoder_trainable:
            for module in self.encoder_modules():
                module.train(True)
        return self

    # ----------------------------------------------------------------- frame rules
    @property
    def frames_rule(self) -> tuple[int, int]:
        """``(temporal_factor, 1)`` for causal 3D VAEs (``4k+1``), ``(temporal_factor, 0)`` otherwise."""
        return (self.temporal_factor, 1 if self.causal else 0)

    def valid_frames(self, n: int) -> int:
        """Smallest frame count >= ``n`` the codec accepts (``4k+1`` for causal 3D VAEs)."""
        if n < 1:
            raise ConfigError(f"a clip needs at least 1 frame, got {n}")
        return frames_at_least(n, self.frames_rule)

    def latent_frames(self, n: int) -> int:
        """Latent frame count ``t`` for ``n`` pixel frames (``n`` rounded up by :meth:`valid_frames`)."""
        n = self.valid_frames(n)
        return (n - 1) // self.temporal_factor + 1 if self.causal else n // self.temporal_factor

    def pixel_frames(self, t: int) -> int:
        """Pixel frame count produced by decoding ``t`` latent frames."""
        return (t - 1) * self.temporal_factor + 1 if self.causal else t * self.temporal_factor

    # ----------------------------------------------------------------- public API
    def encode(
        self, video: torch.Tensor, sample_posterior: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``[B,3,T,H,W]`` in ``[-1,1]`` -> diffusion-ready latents ``[B,c,t,H/f,W/f]``.

        ``sample_posterior`` draws from a VAE's Gaussian posterior instead of taking its mean/mode.
        """
        self._check_video(video)

        def encode_clip(clip: torch.Tensor) -> torch.Tensor:
            return self._chunked(clip, lambda c: self._encode(c, sample_posterior, generator), encode=True)

        if self.tile_size is None:
            return encode_clip(video)
        return tiled_apply(video, encode_clip, self.tile_size, self.tile_overlap, Fraction(1, self.spatial_factor))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[B,c,t,h,w]`` -> video ``[B,3,T,h*f,w*f]`` clamped to ``[-1,1]``."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ConfigError(
                f"{type(self).__name__}.decode expects latents [B,{self.latent_channels},t,h,w], got {list(latents.shape)}"
            )

        def decode_clip(z: torch.Tensor) -> torch.Tensor:
            return self._chunked(z, self._decode, encode=False)

        if self.tile_size is None:
            video = decode_clip(latents)
        else:
            f = self.spatial_factor
            video = tiled_apply(latents, decode_clip, self.tile_size // f, self.tile_overlap // f, Fraction(f))
        return video.clamp(-1.0, 1.0)

    # ----------------------------------------------------------------- helpers
    def _chunked(self, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], *, encode: bool) -> torch.Tensor:
        # Temporal chunks of frames_per_chunk pixel frames (= frames_per_chunk / tf latent frames).
        if self.frames_per_chunk is None:
            return fn(x)
        step = self.frames_per_chunk if encode else self.frames_per_chunk // self.temporal_factor
        if x.shape[2] <= step:
            return fn(x)
        return torch.cat([fn(x[:, :, i : i + step]) for i in range(0, x.shape[2], step)], dim=2)

    def _check_video(self, video: torch.Tensor) -> None:
        name = type(self).__name__
        if video.ndim != 5 or video.shape[1] != 3:
            raise ConfigError(f"{name}.encode expects video [B,3,T,H,W], got {list(video.shape)}")
        frames, height, width = video.shape[2:]
        if self.valid_frames(frames) != frames:
            rule = f"{self.temporal_factor}k+1" if self.causal else f"a multiple of {self.temporal_factor}"
            raise ConfigError(
                f"{name} needs {rule} frames, got {frames} (valid_frames({frames}) = {self.valid_frames(frames)})"
            )
        f = self.spatial_factor
        if height % f or width % f:
            raise ConfigError(
                f"{name} needs height and width divisible by {f}, got {height}x{width}; pad or crop the video"
            )

    def extra_repr(self) -> str:
        return (
            f"spatial_factor={self.spatial_factor}, temporal_factor={self.temporal_factor}, "
            f"latent_channels={self.latent_channels}, causal={self.causal}, tile_size={self.tile_size}, "
            f"tile_overlap={self.tile_overlap}, frames_per_chunk={self.frames_per_chunk}"
        )
