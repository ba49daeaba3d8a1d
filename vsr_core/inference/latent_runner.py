"""Runs the latent window protocol over one video: every solver step fused across windows and tiles.

Semantics (what the result equals): all windows and tiles of the video advance in lockstep. At
each *level* — 0 for the initial latents of ``prepare_window``, ``i + 1`` after solver step ``i`` —
every latent that several windows/tiles share is replaced by the weighted mean of their values
(weights from the :class:`~vsr_core.inference.latent.LatentFusion`), and the next step (or
``finish_window``) of each window/tile starts from those fused latents.

Schedule (what is held): a window's step ``i`` needs level ``i`` of its neighbours only, so the
runner advances a *wavefront* instead of the whole video: it always takes the lowest window
whose next action is ready (a step, or decoding once its neighbours reached the last level) and
prepares the next window only when nothing else can move. With ``S`` solver steps about ``S + 2``
windows are alive at a time, independent of the video's length; the fused result is the same as
the lockstep one (the dependencies are the same). Finished windows are decoded in order, so the
engine writes frames as soon as they are final.
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
class _Level:
    """Weighted sums of one latent frame at one level: ``total [B,c,H,W]``, ``weight [H,W]``."""

    total: torch.Tensor
    weight: torch.Tensor
    missing: int  # windows that still have to contribute
    readers: int  # windows that still have to read it


@dataclass
class _Live:
    """A prepared window: its frames, one state per tile, how many levels it contributed."""

    clip: Any
    states: list[Any] = field(default_factory=list)
    dtypes: list[torch.dtype] = field(default_factory=list)  # each tile's latent dtype (its state's own is released)
    levels: int = 0


def _release_initial_latents(state: Any) -> None:
    """Drop ``state.latents`` once fused: every step gets the fused latents, and a frame's tiles are all alive at once.

    Without this each tile's state would hold a second copy of its initial latents until it is
    decoded (per-tile memory that grows with the frame size). A state that refuses the assignment
    (a frozen dataclass) keeps its copy.
    """
    try:
        state.latents = None
    except (AttributeError, TypeError):  # dataclasses.FrozenInstanceError is an AttributeError
        pass


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
        self.steps: int | None = None
        self._step_takes_noise = "noise" in inspect.signature(method.denoise_step).parameters
        self._levels: dict[tuple[int, int], _Level] = {}
        self._coverage = [0] * (max(w.end for w in windows) if windows else 0)
        for w in windows:
            for f in range(w.start, w.end):
                self._coverage[f] += 1
        self._neighbours = [
            [o.index for o in windows if o.index != w.index and o.start < w.end and w.start < o.end] for w in windows
        ]
        #: the most windows alive at once during the last run (memory check in tests and docs)
        self.peak_live = 0

    # ------------------------------------------------------------------ fused latents

    def _contribute(self, window: LatentWindow, tile: LatentTile, level: int, latents: torch.Tensor) -> None:
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
        ys, xs = slice(tile.y, tile.y + tile.height), slice(tile.x, tile.x + tile.width)
        h, w = self.frame_size
        for k in range(window.frames):
            key = (level, window.start + k)
            acc = self._levels.get(key)
            if acc is None:
                total = torch.zeros(latents.shape[0], latents.shape[1], h, w, device=latents.device)
                acc = _Level(
                    total, torch.zeros(h, w, device=latents.device), self._coverage[key[1]], self._coverage[key[1]]
                )
                self._levels[key] = acc
            acc.total[:, :, ys, xs] += latents[:, :, k].float() * weights[k]
            acc.weight[ys, xs] += weights[k]

    def _contributed(self, window: LatentWindow, level: int) -> None:
        for f in range(window.start, window.end):
            self._levels[(level, f)].missing -= 1

    def _read(self, window: LatentWindow, tile: LatentTile, level: int, dtype: torch.dtype) -> torch.Tensor:
        ys, xs = slice(tile.y, tile.y + tile.height), slice(tile.x, tile.x + tile.width)
        frames = []
        for f in range(window.start, window.end):
            acc = self._levels[(level, f)]
            assert acc.missing == 0, "the schedule read a level before every window contributed"
            frames.append(acc.total[:, :, ys, xs] / acc.weight[ys, xs])
        return torch.stack(frames, dim=2).to(dtype)

    def _done_reading(self, window: LatentWindow, level: int) -> None:
        for f in range(window.start, window.end):
            key = (level, f)
            self._levels[key].readers -= 1
            if self._levels[key].readers == 0:
                del self._levels[key]

    def _noise(self, level: int, window: LatentWindow, tile: LatentTile) -> torch.Tensor:
        return self.noise.slice(
            level,
            range(window.start, window.end),
            range(tile.y, tile.y + tile.height),
            range(tile.x, tile.x + tile.width),
        )

    # ------------------------------------------------------------------ the three actions

    def _prepare(self, window: LatentWindow, clip: Any) -> _Live:
        live = _Live(clip)
        for tile in self.tiles:
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
                    f"{self.steps} for the first; every window of a video must take the same steps"
                )
            self._contribute(window, tile, 0, state.latents)
            live.dtypes.append(state.latents.dtype)
            _release_initial_latents(state)
            live.states.append(state)
        self._contributed(window, 0)
        live.levels = 1
        return live

    def _step(self, window: LatentWindow, live: _Live) -> None:
        i = live.levels - 1  # level i is fused; step i makes level i + 1
        for tile, state, dtype in zip(self.tiles, live.states, live.dtypes):
            latents = self._read(window, tile, i, dtype)
            extra = {"noise": self._noise(i + 1, window, tile)} if self._step_takes_noise else {}
            out = self.call(self.method.denoise_step, state, i, latents, **extra)
            self._contribute(window, tile, i + 1, out)
        self._done_reading(window, i)
        self._contributed(window, i + 1)
        live.levels += 1

    def _finish(self, window: LatentWindow, live: _Live) -> Iterator[tuple[LatentTile, torch.Tensor]]:
        level = live.levels - 1
        for tile, state, dtype in zip(self.tiles, live.states, live.dtypes):
            latents = self._read(window, tile, level, dtype)
            yield tile, self.call(self.method.finish_window, state, latents)
        self._done_reading(window, level)

    # ------------------------------------------------------------------ the schedule

    def run(
        self, clip_of: Callable[[int], Any]
    ) -> Iterator[tuple[LatentWindow, Any, Iterator[tuple[LatentTile, torch.Tensor]]]]:
        """Yield ``(window, clip, tiles)`` per window in order, ``tiles`` lazily decoding ``(tile, video)``.

        ``clip_of(j)`` gives window ``j``'s frames (what ``tile_lq`` cuts tiles from); it is called in
        increasing ``j``. Consume each ``tiles`` iterator before advancing the outer one.
        """
        self.fusion.start(self.windows, self.tiles)
        live: dict[int, _Live] = {}
        prepared = finished = 0
        count = len(self.windows)
        while finished < count:
            action = None
            for j in range(finished, prepared):
                levels = live[j].levels
                neighbours_at = (
                    min(
                        (live[n].levels if n in live else (0 if n >= prepared else 1 << 30))
                        for n in self._neighbours[j]
                    )
                    if self._neighbours[j]
                    else 1 << 30
                )
                if levels <= self.steps and neighbours_at >= levels:
                    action = ("step", j)
                    break
                if levels == self.steps + 1 and j == finished and neighbours_at >= levels:
                    action = ("finish", j)
                    break
            if action is None:
                if prepared == count:
                    raise RuntimeError("latent window schedule stalled")  # cannot happen: see the module docstring
                live[prepared] = self._prepare(self.windows[prepared], clip_of(prepared))
                prepared += 1
                self.peak_live = max(self.peak_live, len(live))
                continue
            kind, j = action
            window = self.windows[j]
            if kind == "step":
                self._step(window, live[j])
            else:
                record = live[j]
                yield window, record.clip, self._finish(window, record)
                del live[j]
                finished += 1
