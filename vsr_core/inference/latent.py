"""The latent window protocol: a diffusion method's sampler in three steps the engine can interleave.

A method that implements

* ``prepare_window(lq, prompt=None, *, noise=None, **sampling) -> state`` — encode the LQ window
  ``[B,3,L,h,w]``, build the conditioning and the initial latent from ``noise`` ``[B,c,t,h',w']``
  (the engine's slice of one timeline-wide noise tensor, so overlapping windows and tiles start
  from the same noise); ``state`` has ``latents`` (the initial latent, ``[B,c,t,h',w']``) and
  ``num_steps`` attributes (:class:`LatentState` is a ready-made one). The engine fuses
  ``state.latents`` and then sets it to ``None`` (several rows of tiles are alive at once, so a
  second copy per tile would grow with the frame): the next two calls must use the ``latents``
  they are given, never ``state.latents``;
* ``denoise_step(state, i, latents) -> latents`` — one solver step at timestep index ``i``
  (``0 .. num_steps-1``) on the *fused* latents; a method whose solver draws noise per step takes
  a keyword ``noise`` too and gets the engine's shared slice for that step;
* ``finish_window(state, latents) -> video`` — decode the fused final latents to
  ``[B,3,L,h*s,w*s]`` (plus any colour fix),

and declares :attr:`~vsr_core.method.VSRMethod.latent_layout` (a :class:`LatentLayout`) is run by
the engine with every solver step fused across overlapping windows and tiles: the latents that
several windows/tiles share are replaced, before each step and before decoding, by their
weighted mean (weights from the method's :class:`LatentFusion`, ``make_latent_fusion()``).
``restore`` stays the single-window path (prepare -> loop -> finish).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from vsr_core.errors import ConfigError
from vsr_core.inference.tiles import Tile, TileGrid, gaussian_weight
from vsr_core.inference.windows import Window, WindowPlan

__all__ = [
    "LatentFusion",
    "LatentLayout",
    "LatentState",
    "LatentTile",
    "LatentWindow",
    "implements_latent_protocol",
    "latent_fusion_for",
    "sample_window",
]

PROTOCOL_METHODS = ("prepare_window", "denoise_step", "finish_window")


@dataclass(frozen=True)
class LatentLayout:
    """How pixel windows and tiles map to latent ones.

    Attributes:
        latent_channels: ``c`` of the latents ``[B, c, t, h, w]``.
        temporal_factor: pixel frames per latent frame (4 for the CogVideoX/Wan VAEs, 1 per frame).
        spatial_factor: *output* pixels per latent pixel (8 for the CogVideoX VAE decoding to the
            HQ video; 4 for the SD x4 upscaler, whose latents live at the LQ size).
        causal: the first latent frame encodes one pixel frame alone (``4k+1`` frames -> ``k+1``).
        latent_multiple: latent tile sides must be multiples of this (a transformer's patch size).
    """

    latent_channels: int
    temporal_factor: int = 1
    spatial_factor: int = 1
    causal: bool = False
    latent_multiple: int = 1

    def __post_init__(self) -> None:
        for name in ("latent_channels", "temporal_factor", "spatial_factor", "latent_multiple"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"LatentLayout.{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_codec(cls, codec: Any, latent_multiple: int = 1) -> LatentLayout:
        """The layout of a :class:`~vsr_core.latent.LatentCodec` that decodes to the output video."""
        return cls(
            latent_channels=int(codec.latent_channels),
            temporal_factor=int(codec.temporal_factor),
            spatial_factor=int(codec.spatial_factor),
            causal=bool(codec.causal),
            latent_multiple=latent_multiple,
        )

    def latent_frames(self, frames: int) -> int:
        """Latent frames ``t`` of a window of ``frames`` pixel frames (``4k+1 -> k+1`` causal, ``4k -> k`` not)."""
        tf = self.temporal_factor
        return (frames - 1) // tf + 1 if self.causal else frames // tf

    def lq_quantum(self, scale: int) -> int:
        """Smallest LQ length whose latent length is a whole multiple of ``latent_multiple``."""
        unit = self.spatial_factor * self.latent_multiple  # output pixels per latent unit
        return unit // math.gcd(unit, scale)

    def to_latent(self, lq_pixels: int, scale: int) -> int:
        """Latent pixels of ``lq_pixels`` LQ pixels (an exact multiple of :meth:`lq_quantum`)."""
        out = lq_pixels * scale
        if out % self.spatial_factor:
            raise ConfigError(
                f"{lq_pixels} LQ pixels x{scale} = {out} output pixels is not a multiple of the latent factor "
                f"{self.spatial_factor}"
            )
        return out // self.spatial_factor


@dataclass
class LatentState:
    """What ``prepare_window`` returns: the initial ``latents [B,c,t,h,w]``, the step count, the method's context."""

    latents: torch.Tensor
    num_steps: int
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LatentWindow:
    """A temporal window in latent frames: ``start .. start+frames-1`` of the video's latent timeline.

    ``window`` is the pixel window; ``overlap_before`` / ``overlap_after`` are latent frames shared
    with the previous / next window.
    """

    window: Window
    start: int
    frames: int
    overlap_before: int
    overlap_after: int

    @property
    def index(self) -> int:
        return self.window.index

    @property
    def end(self) -> int:
        return self.start + self.frames


@dataclass(frozen=True)
class LatentTile:
    """A spatial tile in latent pixels (``y, x, height, width``) of the pixel ``tile`` (LQ pixels)."""

    tile: Tile
    y: int
    x: int
    height: int
    width: int

    @property
    def index(self) -> int:
        return self.tile.index


class LatentFusion:
    """Per-step blend weights of overlapping latent windows and tiles (the latent-level fusion hook).

    :meth:`weights` receives the window *and* the tile identity, so a fusion that keeps state per
    window (a reference latent, a per-window schedule) keys it by ``(window.index, tile.index)`` and
    stays correct under tiling. Weights need only be positive: the engine divides by their sum over
    every window/tile covering a latent pixel. The default cross-fades linearly over the latent
    frames windows share and weights tiles by a Gaussian (uniform when the frame is one tile).

    ``always_fuse_windows``: ``vsr restore --fusion auto`` runs the windows of a video whose frames
    are tiled each alone (tiles fused per step, windows cross-faded in pixels; fusing windows too
    would keep every tile of about ``steps + 1`` windows alive). A fusion whose point is how windows
    meet (DiffVSR's interweaved latent transition) sets it ``True`` to keep windows fused there too.
    """

    always_fuse_windows: bool = False

    def start(self, windows: tuple[LatentWindow, ...], tiles: tuple[LatentTile, ...]) -> None:
        """Called once per video before the first window is prepared (reset per-video state here)."""
        self._tiled = len(tiles) > 1

    def weights(self, window: LatentWindow, tile: LatentTile, level: int) -> torch.Tensor:
        """Weight of each latent of ``window``/``tile`` at ``level`` (0: initial latents, ``i+1``: after step ``i``).

        Returns a float tensor broadcastable to ``[t, h, w]`` (``t = window.frames``, ``h, w`` the tile's).
        """
        temporal = torch.ones(window.frames)
        o = window.overlap_before
        if o:
            temporal[:o] = torch.arange(1, o + 1, dtype=torch.float32) / (o + 1)
        o = window.overlap_after
        if o:
            ramp = torch.arange(o, 0, -1, dtype=torch.float32) / (o + 1)
            temporal[window.frames - o :] = torch.minimum(temporal[window.frames - o :], ramp)
        if getattr(self, "_tiled", True):
            return temporal[:, None, None] * gaussian_weight(tile.height, tile.width)[None]
        return temporal[:, None, None]


def latent_fusion_for(method: Any) -> LatentFusion:
    """The method's latent fusion (``make_latent_fusion()``) or the default :class:`LatentFusion`."""
    factory = getattr(method, "make_latent_fusion", None)
    fusion = factory() if callable(factory) else None
    return fusion if fusion is not None else LatentFusion()


def implements_latent_protocol(method: Any) -> bool:
    """True when ``method`` has all of ``prepare_window``, ``denoise_step`` and ``finish_window`` and a ``latent_layout``.

    A method whose three steps serve only its own ``restore`` (not yet the engine's latent fusion)
    says so with ``latent_layout = None``.
    """
    if getattr(method, "latent_layout", None) is None:
        return False
    return all(callable(getattr(method, name, None)) for name in PROTOCOL_METHODS)


def latent_windows(plan: WindowPlan, layout: LatentLayout) -> tuple[LatentWindow, ...]:
    """The latent windows of a plan whose window starts are multiples of the temporal factor."""
    tf = layout.temporal_factor
    spans = []
    for w in plan.windows:
        if w.start % tf:
            raise ConfigError(f"latent window at pixel frame {w.start} does not start on a latent frame (factor {tf})")
        spans.append((w.start // tf, layout.latent_frames(w.length)))
    result = []
    for i, (w, (start, frames)) in enumerate(zip(plan.windows, spans)):
        before = max(0, spans[i - 1][0] + spans[i - 1][1] - start) if i > 0 else 0
        after = max(0, start + frames - spans[i + 1][0]) if i + 1 < len(spans) else 0
        result.append(LatentWindow(w, start, frames, before, after))
    return tuple(result)


def latent_tiles(grid: TileGrid, layout: LatentLayout, scale: int) -> tuple[LatentTile, ...]:
    """The latent tiles of an LQ tile grid (every side a multiple of :meth:`LatentLayout.lq_quantum`)."""
    return tuple(
        LatentTile(
            t,
            layout.to_latent(t.y, scale),
            layout.to_latent(t.x, scale),
            layout.to_latent(t.height, scale),
            layout.to_latent(t.width, scale),
        )
        for t in grid.tiles
    )


def sample_window(method: Any, lq: torch.Tensor, prompt: list[str] | None = None, **sampling: Any) -> torch.Tensor:
    """One window through the protocol alone: ``prepare_window`` -> every ``denoise_step`` -> ``finish_window``.

    What ``restore`` of a protocol method is (``lq [B,3,L,h,w]`` -> ``[B,3,L,h*s,w*s]``); the
    engine runs the same three calls with every step fused across windows and tiles.
    ``sampling`` goes to ``prepare_window``.
    """
    state = method.prepare_window(lq, prompt, **sampling)
    latents = state.latents
    for i in range(state.num_steps):
        latents = method.denoise_step(state, i, latents)
    return method.finish_window(state, latents)
