"""Spatial tiles with overlap for high resolutions, blended with Gaussian weights.

Tiles are planned on the (padded) LQ grid (:func:`plan_tiles`); each restored tile is weighted by
a 2-D Gaussian centred on it (small at the borders, where a model sees the least context) and
the weighted sum is normalised. :func:`blend_rows` does that in raster order and releases each
band of output rows as soon as no later tile covers it, so a large frame is never held as one
float tensor per window: only one row of tiles is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from vsr_core.errors import ConfigError

__all__ = ["Tile", "TileGrid", "blend_rows", "gaussian_weight", "plan_tiles", "tile_starts"]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with ``overlap``; the last ends at ``size``."""
    if tile >= size:
        return [0]
    if overlap >= tile:
        raise ConfigError(f"--tile-overlap {overlap} must be smaller than --tile {tile}")
    step = tile - overlap
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def gaussian_weight(height: int, width: int, sigma_ratio: float = 0.25) -> torch.Tensor:
    """``float [height, width]``: a separable Gaussian with sigma ``sigma_ratio`` x the side, max 1."""

    def axis(n: int) -> torch.Tensor:
        x = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        sigma = max(n * sigma_ratio, 1e-3)
        return torch.exp(-(x**2) / (2 * sigma**2))

    w = axis(height)[:, None] * axis(width)[None, :]
    # A floor keeps every pixel's total weight away from 0 at image corners covered by one tile.
    return w.clamp_min(math.exp(-8))


@dataclass(frozen=True)
class Tile:
    """One spatial tile of the padded LQ frame: rows ``y .. y+height-1``, columns ``x .. x+width-1``.

    ``index`` counts tiles in raster order; ``row`` / ``col`` place it in the grid.
    """

    index: int
    row: int
    col: int
    y: int
    x: int
    height: int
    width: int


@dataclass(frozen=True)
class TileGrid:
    """The tiles covering a ``height x width`` (padded LQ) frame, in raster order; all tiles have one size."""

    height: int
    width: int
    tiles: tuple[Tile, ...]

    @property
    def single(self) -> bool:
        """True when one tile covers the whole frame (no blending needed)."""
        return len(self.tiles) == 1


def plan_tiles(height: int, width: int, tile: int | None, overlap: int = 0) -> TileGrid:
    """Tiles of side ``tile`` (``None``: one tile, the whole frame) covering ``height x width`` with ``overlap``.

    A side the frame does not exceed is not cut (the tile is the frame's size along it).
    """
    if tile is None:
        th, tw = height, width
    else:
        th, tw = min(tile, height), min(tile, width)
    rows = tile_starts(height, th, overlap) if th < height else [0]
    cols = tile_starts(width, tw, overlap) if tw < width else [0]
    tiles = tuple(Tile(r * len(cols) + c, r, c, y, x, th, tw) for r, y in enumerate(rows) for c, x in enumerate(cols))
    return TileGrid(height, width, tiles)


def blend_rows(
    grid: TileGrid, scale: int, outputs: Iterable[tuple[Tile, torch.Tensor]]
) -> Iterator[tuple[int, torch.Tensor]]:
    """Blend restored tiles into full-width output rows: yields ``(y0, rows [C, T, r, width*scale])``.

    ``outputs`` gives each tile of ``grid`` with its restored ``[C, T, height*scale, width*scale]``,
    in raster order (it may be a generator that restores tiles lazily). Rows are yielded top to
    bottom as soon as no later tile covers them, normalised by the Gaussian weights of the tiles
    that do (a single-tile grid passes the tile through unweighted). Only one row of tiles is
    held in float at a time.
    """
    s = scale
    full_width = grid.width * s
    acc: torch.Tensor | None = None  # weighted sums of output rows top .. top + rows
    weight_rows: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    top = 0
    for tile, out in outputs:
        if grid.single:
            yield 0, out
            return
        if weight is None:
            weight = gaussian_weight(tile.height * s, tile.width * s).to(out.device)
        y = tile.y * s
        if acc is None or y >= top + acc.shape[2]:
            if acc is not None:  # a gap cannot happen with planned grids, but release everything before it
                yield top, acc / weight_rows
            acc = torch.zeros(*out.shape[:2], tile.height * s, full_width, device=out.device)
            weight_rows = torch.zeros(tile.height * s, full_width, device=out.device)
            top = y
        elif y > top:
            # A new row of tiles starts at y: the rows above it are final.
            done = y - top
            yield top, acc[:, :, :done] / weight_rows[:done]
            carry, carry_weight = acc[:, :, done:], weight_rows[done:]
            acc = torch.zeros(*out.shape[:2], tile.height * s, full_width, device=out.device)
            weight_rows = torch.zeros(tile.height * s, full_width, device=out.device)
            acc[:, :, : carry.shape[2]] = carry
            weight_rows[: carry_weight.shape[0]] = carry_weight
            top = y
        x = tile.x * s
        a = y - top
        acc[:, :, a : a + out.shape[2], x : x + out.shape[3]] += out * weight
        weight_rows[a : a + out.shape[2], x : x + out.shape[3]] += weight
    if acc is not None:
        yield top, acc / weight_rows
