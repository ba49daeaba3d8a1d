"""Runs the latent window protocol over one video: every solver step fused across windows and tiles.

Semantics (what the result equals): all windows and tiles of the video advance in lockstep. At
each *level* — 0 for the initial latents of ``prepare_window``, ``i + 1`` after solver step ``i`` —
every latent that several windows/tiles share is replaced by the weighted mean of their values
(weights from the :class:`~vsr_core.inference.latent.LatentFusion`), and the next step (or
``finish_window``) of each window/tile starts from those fused latents.

Schedule (what is held): the runner's *units* are the rows of tiles of each window, in the order
window by window, rows top to bottom (tiles in raster order, the order they are prepared in). A
unit's step ``i`` needs level ``i`` only of the units it overlaps in time and space, so the runner
advances a *wavefront* over units instead of the whole video: it always takes the lowest unit whose
next action is ready (a step, or decoding once its neighbours reached the last level) and prepares
the next unit only when nothing else can move. With ``S`` solver steps about ``S + 2`` rows of
tiles (of a frame that is one tile: ``S + 2`` windows) are alive at a time, and the fused latents
are kept per horizontal *band* of the frame (between consecutive tile-row edges), freed once every
unit covering a band has read it; so neither the video's length nor a large frame's height sets
the memory. The fused result is the same as the lockstep one (the dependencies are the same).
Units are decoded in order, so the engine blends output rows and writes frames as soon as they
are final.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from vsr_core.errors import ConfigError
from vsr_core.inference.latent import LatentFusion, LatentLayout, LatentTile, LatentWindow
from vsr_core.inference.noise import TimelineNoise

__all__ = ["LatentRunner"]


@dataclass
class _Band:
    """Weighted sums of one band of one latent frame at one level: ``total [B,c,rows,W]``, ``weight [rows,W]``."""

    total: torch.Tensor
    weight: torch.Tensor
    missing: int  # units that still have to contribute
    readers: int  # units that still have to read it


@dataclass(frozen=True)
class _Unit:
    """One row of tiles of one window: the runner's unit of work. ``bands``: the frame bands its rows cover."""

    index: int
    window: LatentWindow
    tiles: tuple[LatentTile, ...]
    bands: tuple[int, ...]


@dataclass
class _Live:
    """A prepared unit: its window's frames, one state per tile, how many levels it contributed."""

    clip: Any
    states: list[Any] = field(default_factory=list)
    dtypes: list[torch.dtype] = field(default_factory=list)  # each tile's latent dtype (its state's own is released)
    levels: int = 0


def _release_initial_latents(state: Any) -> None:
    """Drop ``state.latents`` once fused: every step gets the fused latents, and many tiles are alive at once.

    Without this each tile's state would hold a second copy of its initial latents until it is
    decoded (per-tile memory that grows with the frame size). A state that refuses the assignment
    (a frozen dataclass) keeps its copy.
    """
    try:
        state.latents = None
    except (AttributeError, TypeError):  # dataclasses.FrozenInstanceError is an AttributeError
        pass


def _tile_rows(tiles: tuple[LatentTile, ...]) -> list[tuple[LatentTile, ...]]:
    """``tiles`` (raster order) grouped by grid row; every tile of a row spans the same latent rows."""
    rows: dict[int, list[LatentTile]] = {}
    for tile in tiles:
        rows.setdefault(tile.tile.row, []).append(tile)
    grouped = [tuple(rows[r]) for r in sorted(rows)]
    for row in grouped:
        if any((t.y, t.height) != (row[0].y, row[0].height) for t in row):
            raise RuntimeError(f"tiles of grid row {row[0].tile.row} do not span the same latent rows")
    return grouped


class LatentRunner:
    """Drive ``prepare_window`` / ``denoise_step`` / ``finish_window`` of ``method`` over one video.

    Args:
        method: implements the protocol (see :mod:`vsr_core.inference.latent`).
        layout: its :class:`LatentLayout`.
        fusion: the latent fusion (weights per window, tile and level).
        windows: the latent windows of the video, in order.
        tiles: the latent tiles of every window, in raster order.
        frame_size: ``(H, W)`` of the full (padded) latent frame.
        noise: the video's :class:`TimelineNoise`.
        call: runs a method call (the engine's inference mode, autocast and timing).
        tile_lq: ``(clip, tile) -> [B,3,L,th,tw]``, the method input of one tile of a window's frames.
        prompt, sampling: passed to ``prepare_window``.
        fuse_windows: fuse the latents overlapping windows share (the lockstep semantics above). ``False``
            runs each window alone (its tiles still fused at every step; windows share only the timeline
            noise) and leaves the temporal blend to the decoded windows' cross-fade: windows then wait for
            nothing but themselves, so about ``S + 2`` rows of tiles of one window are alive, however many
            windows overlap.
    """

    def __init__(
        self,
        method: Any,
        layout: LatentLayout,
        fusion: LatentFusion,
        windows: tuple[LatentWindow, ...],
        tiles: tuple[LatentTile, ...],
        frame_size: tuple[int, int],
        noise: TimelineNoise,
        call: Callable[..., Any],
        tile_lq: Callable[[Any, Any], torch.Tensor],
        prompt: list[str] | None = None,
        sampling: dict[str, Any] | None = None,
        fuse_windows: bool = True,
    ) -> None:
        self.method = method
        self.layout = layout
        self.fusion = fusion
        self.windows = windows
        self.tiles = tiles
        self.frame_size = frame_size
        self.noise = noise
        self.call = call
        self.tile_lq = tile_lq
        self.prompt = prompt
        self.sampling = dict(sampling or {})
        self.fuse_windows = fuse_windows
        self.steps: int | None = None
        self._step_takes_noise = "noise" in inspect.signature(method.denoise_step).parameters
        # how many windows contribute to each latent frame's fused sums (without fusing: each window its own)
        timeline = max(w.end for w in windows) if windows else 0
        self._coverage = [0 if fuse_windows else 1] * timeline
        if fuse_windows:
            for w in windows:
                for f in range(w.start, w.end):
                    self._coverage[f] += 1
        rows = _tile_rows(tiles)
        spans = [(row[0].y, row[0].y + row[0].height) for row in rows]
        edges = sorted({0, frame_size[0], *(y for span in spans for y in span)})
        #: the frame's bands: latent rows ``[y0, y1)`` between consecutive tile-row edges
        self.bands = tuple(zip(edges[:-1], edges[1:]))
        row_bands = [tuple(k for k, (y0, y1) in enumerate(self.bands) if a <= y0 and y1 <= b) for a, b in spans]
        self._rows_covering = [sum(k in bands for bands in row_bands) for k in range(len(self.bands))]
        self._units = tuple(
            _Unit(j * len(rows) + r, w, row, row_bands[r]) for j, w in enumerate(windows) for r, row in enumerate(rows)
        )
        in_time = [
            [o.index for o in windows if o.start < w.end and w.start < o.end] if fuse_windows else [w.index]
            for w in windows
        ]
        in_space = [[q for q, (c, d) in enumerate(spans) if c < b and a < d] for a, b in spans]
        self._neighbours = [
            [j * len(rows) + q for j in in_time[u.window.index] for q in in_space[u.index % len(rows)]]
            for u in self._units
        ]
        for u, near in zip(self._units, self._neighbours):
            near.remove(u.index)
        self._bands: dict[tuple[int, int, int, int], _Band] = {}  # (level, window or 0, frame, band)
        self._held = 0
        #: the most units (rows of tiles of a window) alive at once during the last run
        self.peak_live = 0
        #: the most fused-latent floats held at once during the last run (all bands of all levels)
        self.peak_fused_elements = 0

    # ------------------------------------------------------------------ fused latents

    def _key(self, level: int, unit: _Unit, frame: int, k: int) -> tuple[int, int, int, int]:
        """Where a band's sums live: shared by every window covering ``frame``, or the window's own."""
        return (level, unit.window.index if not self.fuse_windows else 0, frame, k)

    def _band(self, level: int, unit: _Unit, frame: int, k: int, like: torch.Tensor) -> _Band:
        key = self._key(level, unit, frame, k)
        band = self._bands.get(key)
        if band is None:
            y0, y1 = self.bands[k]
            width = self.frame_size[1]
            total = torch.zeros(like.shape[0], like.shape[1], y1 - y0, width, device=like.device)
            count = self._coverage[frame] * self._rows_covering[k]
            band = self._bands[key] = _Band(total, torch.zeros(y1 - y0, width, device=like.device), count, count)
            self._held += total.numel() + band.weight.numel()
            self.peak_fused_elements = max(self.peak_fused_elements, self._held)
        return band

    def _contribute(self, unit: _Unit, tile: LatentTile, level: int, latents: torch.Tensor) -> None:
        window = unit.window
        expected = (latents.shape[0], self.layout.latent_channels, window.frames, tile.height, tile.width)
        if tuple(latents.shape) != expected:
            raise RuntimeError(
                f"{type(self.method).__name__} returned latents {tuple(latents.shape)} at level {level} for window "
                f"{window.index}, tile {tile.index}; expected {expected} (see its latent_layout)"
            )
        weights = self.fusion.weights(window, tile, level).to(latents.device, torch.float32)
        weights = weights.expand(window.frames, tile.height, tile.width)
        if not bool((weights > 0).all()):
            raise ConfigError(
                f"{type(self.fusion).__name__}.weights must be positive (window {window.index}, tile {tile.index})"
            )
        xs = slice(tile.x, tile.x + tile.width)
        for f in range(window.frames):
            for k in unit.bands:
                y0, y1 = self.bands[k]
                rows = slice(y0 - tile.y, y1 - tile.y)
                band = self._band(level, unit, window.start + f, k, latents)
                band.total[:, :, :, xs] += latents[:, :, f, rows].float() * weights[f, rows]
                band.weight[:, xs] += weights[f, rows]

    def _contributed(self, unit: _Unit, level: int) -> None:
        for f in range(unit.window.start, unit.window.end):
            for k in unit.bands:
                self._bands[self._key(level, unit, f, k)].missing -= 1

    def _read(self, unit: _Unit, tile: LatentTile, level: int, dtype: torch.dtype) -> torch.Tensor:
        xs = slice(tile.x, tile.x + tile.width)
        frames = []
        for f in range(unit.window.start, unit.window.end):
            parts = []
            for k in unit.bands:
                band = self._bands[self._key(level, unit, f, k)]
                assert band.missing == 0, "the schedule read a level before every unit contributed"
                parts.append(band.total[:, :, :, xs] / band.weight[:, xs])
            frames.append(torch.cat(parts, dim=2))
        return torch.stack(frames, dim=2).to(dtype)

    def _done_reading(self, unit: _Unit, level: int) -> None:
        for f in range(unit.window.start, unit.window.end):
            for k in unit.bands:
                key = self._key(level, unit, f, k)
                band = self._bands[key]
                band.readers -= 1
                if band.readers == 0:
                    self._held -= band.total.numel() + band.weight.numel()
                    del self._bands[key]

    def _noise(self, level: int, window: LatentWindow, tile: LatentTile) -> torch.Tensor:
        return self.noise.slice(
            level,
            range(window.start, window.end),
            range(tile.y, tile.y + tile.height),
            range(tile.x, tile.x + tile.width),
        )

    # ------------------------------------------------------------------ the three actions

    def _prepare(self, unit: _Unit, clip: Any) -> _Live:
        live = _Live(clip)
        window = unit.window
        for tile in unit.tiles:
            part = self.tile_lq(clip, tile.tile)
            noise = self._noise(0, window, tile)
            state = self.call(self.method.prepare_window, part, self.prompt, noise=noise, **self.sampling)
            steps = int(state.num_steps)
            if self.steps is None:
                if steps < 0:
                    raise RuntimeError(f"{type(self.method).__name__}.prepare_window gave num_steps={steps}")
                self.steps = steps
            elif steps != self.steps:
                raise RuntimeError(
                    f"{type(self.method).__name__}.prepare_window gave {steps} steps for window {window.index}, "
                    f"tile {tile.index}, {self.steps} for the first; every window and tile of a video must take the "
                    "same steps"
                )
            self._contribute(unit, tile, 0, state.latents)
            live.dtypes.append(state.latents.dtype)
            _release_initial_latents(state)
            live.states.append(state)
        self._contributed(unit, 0)
        live.levels = 1
        return live

    def _step(self, unit: _Unit, live: _Live) -> None:
        i = live.levels - 1  # level i is fused; step i makes level i + 1
        for tile, state, dtype in zip(unit.tiles, live.states, live.dtypes):
            latents = self._read(unit, tile, i, dtype)
            extra = {"noise": self._noise(i + 1, unit.window, tile)} if self._step_takes_noise else {}
            out = self.call(self.method.denoise_step, state, i, latents, **extra)
            self._contribute(unit, tile, i + 1, out)
        self._done_reading(unit, i)
        self._contributed(unit, i + 1)
        live.levels += 1

    def _finish(self, unit: _Unit, live: _Live) -> Iterator[tuple[Any, LatentTile, torch.Tensor]]:
        level = live.levels - 1
        for tile, state, dtype in zip(unit.tiles, live.states, live.dtypes):
            latents = self._read(unit, tile, level, dtype)
            yield live.clip, tile, self.call(self.method.finish_window, state, latents)
        self._done_reading(unit, level)

    # ------------------------------------------------------------------ the schedule

    def _schedule(self, clip_of: Callable[[int], Any]) -> Iterator[tuple[Any, LatentTile, torch.Tensor]]:
        """Every tile of every window decoded, in order, as ``(clip, tile, video)`` (lazily: one call per item)."""
        live: dict[int, _Live] = {}
        clips: dict[int, Any] = {}  # the frames of windows with units still to prepare
        prepared = finished = 0
        count = len(self._units)
        never, done = 0, 1 << 30  # the levels of a unit not yet prepared / already decoded
        while finished < count:
            action = None
            for u in range(finished, prepared):
                levels = live[u].levels
                near = self._neighbours[u]
                at = (
                    min((live[n].levels if n in live else (never if n >= prepared else done)) for n in near)
                    if near
                    else done
                )
                if levels <= self.steps and at >= levels:
                    action = ("step", u)
                    break
                if levels == self.steps + 1 and u == finished and at >= levels:
                    action = ("finish", u)
                    break
            if action is None:
                if prepared == count:
                    raise RuntimeError("latent window schedule stalled")  # cannot happen: see the module docstring
                unit = self._units[prepared]
                j = unit.window.index
                if j not in clips:
                    clips[j] = clip_of(j)
                live[prepared] = self._prepare(unit, clips[j])
                if unit is self._units[-1] or self._units[prepared + 1].window.index != j:
                    del clips[j]
                prepared += 1
                self.peak_live = max(self.peak_live, len(live))
                continue
            kind, u = action
            if kind == "step":
                self._step(self._units[u], live[u])
            else:
                yield from self._finish(self._units[u], live[u])
                del live[u]
                finished += 1

    def run(
        self, clip_of: Callable[[int], Any]
    ) -> Iterator[tuple[LatentWindow, Any, Iterator[tuple[LatentTile, torch.Tensor]]]]:
        """Yield ``(window, clip, tiles)`` per window in order, ``tiles`` lazily decoding ``(tile, video)``.

        ``clip_of(j)`` gives window ``j``'s frames (what ``tile_lq`` cuts tiles from); it is called in
        increasing ``j``. ``tiles`` gives the window's tiles in raster order; while it is consumed
        the runner also prepares and steps later windows (their rows the next decode waits for).
        What of ``tiles`` is not consumed before advancing the outer iterator is decoded and dropped.
        """
        self.fusion.start(self.windows, self.tiles)
        self.peak_live = self.peak_fused_elements = self._held = 0
        self._bands = {}
        decoded = self._schedule(clip_of)
        for window in self.windows:
            clip, tile, video = next(decoded)
            remaining = len(self.tiles) - 1

            def tiles(first: tuple[LatentTile, torch.Tensor] = (tile, video)) -> Iterator[tuple[LatentTile, Any]]:
                nonlocal remaining
                yield first
                while remaining:
                    remaining -= 1
                    _, t, v = next(decoded)
                    yield t, v

            window_tiles = tiles()
            yield window, clip, window_tiles
            for _ in window_tiles:  # a consumer that stopped early: keep the schedule aligned
                pass
