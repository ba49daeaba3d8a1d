"""ILT at every solver step (paper v2 Sec. 3.3, Eq. 2) through the core's latent window protocol.

The engine (:class:`~vsr_core.inference.latent_runner.LatentRunner`) advances every window of a video in lockstep
and, before each DDIM step and before decoding, replaces the latents that windows share by their weighted mean.
:class:`ILTLatentFusion` gives it Eq. 2's weights, so two windows sharing ``P`` latent frames fuse to
``alpha_j F_i[s + j] + (1 - alpha_j) F_{i+1}[j]`` at every step, and reschedules the initial noise (the first window's
noise reused and reordered for later windows, :func:`rescheduled_sources`). Pieces, tested by value:

* :func:`overlap_weights` -- ``[L]`` per-frame weights of one window: ``alpha_j`` on the frames it shares with the
  next window, ``1 - alpha_j`` on those it shares with the previous one (a weighted mean of two windows with these
  weights is Eq. 2); Eq. 2's zero weights become :data:`ZERO_WEIGHT` (the engine needs positive weights; a weight of
  ``1e-12`` next to ``1`` is exactly ``0`` in float32);
* :func:`rescheduled_sources` -- for each timeline frame, the first-window frame whose noise it takes: frames
  ``0 .. L-1`` their own, then block ``k`` (frames ``L + k s .. L + k s + s - 1``) the frames ``k s .. k s + s - 1``
  in the order ``orders[k]`` (the release's ``noise[f : f+s] = noise[f-L : f-L+s][shuffled]``, so shared frames keep
  one noise);
* :func:`lr_noise_like` -- the noise of the LR conditioning as a fixed function of the shared latent noise of each
  pixel (a counter-based hash turned Gaussian), so every window and tile that shares a frame also shares its LR noise
  (the release noises the whole LR video once) and no generator state decides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from diffvsr.ilt import WeightRule, ilt_weights
from vsr_core.errors import ConfigError
from vsr_core.inference import LatentFusion, LatentTile, LatentWindow, gaussian_weight

__all__ = ["ZERO_WEIGHT", "ILTLatentFusion", "lr_noise_like", "overlap_weights", "rescheduled_sources"]

#: Stands for Eq. 2's weight 0 (the engine divides by the sum of positive weights).
ZERO_WEIGHT = 1e-12

_MASK = 0xFFFFFFFF


def overlap_weights(frames: int, before: int, after: int, rule: WeightRule = "paper") -> torch.Tensor:
    """``[frames]`` float32 weights of a window sharing ``before`` frames with the previous window, ``after`` with the next.

    Frame ``j`` of the shared ``after`` frames weighs ``alpha_j`` (the earlier window's weight in Eq. 2), frame ``j`` of
    the ``before`` frames ``1 - alpha_j`` (the later window's); a frame in both (three windows cover it: an overlap
    above half the window) takes the product. Other frames weigh 1 (no other window holds them).
    """
    weights = torch.ones(frames, dtype=torch.float64)
    if before:
        weights[:before] *= 1 - ilt_weights(before, rule)
    if after:
        weights[frames - after :] *= ilt_weights(after, rule)
    return weights.clamp_min(ZERO_WEIGHT).float()


def rescheduled_sources(num_frames: int, window: int, stride: int, orders: list[torch.Tensor]) -> list[int]:
    """For each of ``num_frames`` timeline frames, the frame ``0 .. window-1`` of the first window whose noise it takes.

    Block ``k`` of ``stride`` frames starting at ``window + k * stride`` takes the sources of frames
    ``k * stride + orders[k]`` (``orders[k]`` a permutation of ``0 .. stride-1``): the release's whole-video
    rearrangement (:func:`diffvsr.ilt.release_video_noise`) expressed as indices.
    """
    if not 1 <= stride <= window:
        raise ValueError(f"stride {stride} must be in [1, window {window}]")
    sources = list(range(min(num_frames, window)))
    for f in range(window, num_frames):
        k, m = divmod(f - window, stride)
        sources.append(sources[k * stride + int(orders[k][m])])
    return sources


def _mul(h: torch.Tensor, constant: int) -> torch.Tensor:
    """``h * constant mod 2**32`` for ``h`` below ``2**32`` in int64 without overflow (16-bit halves)."""
    low = (h * (constant & 0xFFFF)) & _MASK
    high = ((h * (constant >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finaliser (a bijection that mixes every input bit into every output bit)."""
    h = h ^ (h >> 16)
    h = _mul(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def lr_noise_like(noise: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """Standard-normal ``[B, channels, T, h, w]`` noise, a fixed function of ``noise`` ``[B, c, T, h, w]`` per pixel.

    The ``c`` float32 values of each pixel are hashed (their bits through MurmurHash3's finaliser) into ``channels``
    uniform numbers, turned Gaussian with the inverse error function. Equal latent noise at a pixel gives equal LR
    noise there, whatever window or tile it sits in.
    """
    bits = noise.detach().to(torch.float32).contiguous().view(torch.int32).to(torch.int64) & _MASK
    h = torch.full_like(bits[:, 0], 0x9E3779B9)
    for c in range(bits.shape[1]):
        h = _fmix32(h ^ bits[:, c])
    out = []
    for k in range(channels):
        u = _fmix32(h ^ _mul(torch.full_like(h, k + 1), 0x27D4EB2F))
        uniform = ((u >> 8).double() + 0.5) / float(1 << 24)  # in (0, 1), 24 bits
        out.append(torch.erfinv(2 * uniform - 1) * 2**0.5)
    return torch.stack(out, dim=1).to(noise.dtype)


@dataclass
class ILTLatentFusion(LatentFusion):
    """DiffVSR's ILT for the engine's latent window protocol (``DiffVSR.make_latent_fusion()``).

    :meth:`weights` are Eq. 2's (:func:`overlap_weights`; times the core's Gaussian across spatial tiles).
    :meth:`initial_noise` is what ``DiffVSR.prepare_window`` calls with the engine's shared noise while a video runs:
    ``rescheduled`` returns each frame's first-window noise (:func:`rescheduled_sources`; the permutations drawn from
    ``generator`` block by block), ``independent`` the engine's noise as it is (shared frames still share it). The
    runner prepares windows in order and tiles in raster order within each, so call ``n`` is window
    ``n // tiles``, tile ``n % tiles``. ILT is how windows meet, so windows stay fused on tiled frames too
    (``always_fuse_windows``).
    """

    always_fuse_windows = True  # a class attribute, not a dataclass field (no annotation)
    weights_rule: WeightRule = "paper"
    noise: Literal["rescheduled", "independent"] = "rescheduled"
    _windows: tuple[LatentWindow, ...] = ()
    _tiles: tuple[LatentTile, ...] = ()
    _calls: int = 0
    _first: dict[int, torch.Tensor] = field(default_factory=dict)
    _orders: list[torch.Tensor] = field(default_factory=list)

    def start(self, windows: tuple[LatentWindow, ...], tiles: tuple[LatentTile, ...]) -> None:
        super().start(windows, tiles)
        self._windows, self._tiles, self._calls, self._first, self._orders = windows, tiles, 0, {}, []
        if len(windows) >= 3:
            # the regular overlap (the last window is aligned to the video's end and may overlap more)
            overlap, length = windows[0].overlap_after, windows[0].frames
            if 2 * overlap > length:
                raise ConfigError(
                    f"ILT window {length} is shorter than twice the overlap {overlap}: each overlap is fused between "
                    f"two windows only; use --overlap {length // 2} or less"
                )

    @property
    def active(self) -> bool:
        """True between :meth:`start` and the last window's last tile's :meth:`initial_noise`."""
        return self._calls < len(self._windows) * len(self._tiles)

    def weights(self, window: LatentWindow, tile: LatentTile, level: int) -> torch.Tensor:
        temporal = overlap_weights(window.frames, window.overlap_before, window.overlap_after, self.weights_rule)
        if len(self._tiles) > 1:
            return temporal[:, None, None] * gaussian_weight(tile.height, tile.width)[None]
        return temporal[:, None, None]

    def initial_noise(self, noise: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The initial noise ``[B, c, L, h, w]`` of the next (window, tile) from the engine's slice ``noise``."""
        if not self.active:
            raise RuntimeError("ILTLatentFusion.initial_noise called outside a video run")
        index, tile = divmod(self._calls, len(self._tiles))
        self._calls += 1
        window = self._windows[index]
        if self.noise == "independent" or len(self._windows) == 1:
            return noise
        if index == 0:
            self._first[tile] = noise.clone()
            return noise
        first = self._first[tile]
        if first.shape[:2] != noise.shape[:2] or first.shape[3:] != noise.shape[3:]:
            raise ValueError(f"tile {tile} changed shape between windows: {list(first.shape)} -> {list(noise.shape)}")
        length, stride = self._windows[0].frames, self._windows[1].start - self._windows[0].start
        blocks = -(-max(0, window.end - length) // stride)
        device = generator.device if generator is not None else torch.device("cpu")
        while len(self._orders) < blocks:
            self._orders.append(torch.randperm(stride, generator=generator, device=device).cpu())
        sources = rescheduled_sources(window.end, length, stride, self._orders)[window.start :]
        return first[:, :, sources]
