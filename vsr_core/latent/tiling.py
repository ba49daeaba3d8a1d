"""Spatial tiling with linear overlap blending, shared by every codec.

A function ``fn`` that maps ``[B, C, T, H, W]`` to ``[B, C', T', H*scale, W*scale]`` (``scale`` is
``1/f`` for an encoder, ``f`` for a decoder) is applied tile by tile. Tiles of ``tile`` input
pixels start every ``tile - overlap`` pixels; the last tile is moved back to end at the border
(so every tile is full size). Outputs are accumulated with weights and divided by the summed
weights. On a side shared with a neighbour over ``o = overlap * scale`` output pixels, a tile's
weight is 0 on the outer ``o // 4`` pixels (where zero padding corrupts a tile's output), rises
linearly across the middle ``o - 2 (o // 4)`` pixels and is 1 inside; the neighbour's weight
mirrors it, so where two tiles overlap by the nominal overlap the weights sum to 1: a linear
cross-fade that never uses a tile's outermost quarter-overlap. A function whose edge effects reach
at most ``o // 4`` output pixels into a tile therefore gives the untiled result up to rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import torch

__all__ = ["ramp", "tile_starts", "tiled_apply"]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with at least ``overlap`` shared pixels."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def _rise(overlap: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # 0 on the outer quarter, then (i + 1) / (n + 1) over the n middle entries: the mirrored ramp of a
    # neighbour, (n - i) / (n + 1), complements it to exactly 1 and the middle never has weight 0.
    margin = overlap // 4
    n = overlap - 2 * margin
    middle = torch.arange(1, n + 1, dtype=dtype, device=device) / (n + 1)
    return torch.cat(
        [torch.zeros(margin, dtype=dtype, device=device), middle, torch.ones(margin, dtype=dtype, device=device)]
    )


def ramp(length: int, overlap_in: int, overlap_out: int, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """1-D blend weights of a tile sharing ``overlap_in`` entries with its predecessor and ``overlap_out`` with its successor."""
    w = torch.ones(length, dtype=dtype, device=device)
    if overlap_in:
        w[:overlap_in] = _rise(overlap_in, dtype, device)
    if overlap_out:
        w[length - overlap_out :] = torch.minimum(w[length - overlap_out :], _rise(overlap_out, dtype, device).flip(0))
    return w


def tiled_apply(
    x: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    tile: int,
    overlap: int,
    scale: Fraction,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping spatial tiles of ``x`` ``[B, C, T, H, W]`` and blend the outputs.

    ``tile`` and ``overlap`` are in input pixels; ``scale`` is the exact output/input size ratio, and
    ``tile * scale``, ``overlap * scale`` and every tile start times ``scale`` must be integers (the
    caller aligns tiles to the codec's spatial factor). Returns ``[B, C', T', H*scale, W*scale]``.
    """
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return fn(x)
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    out_overlap = int(overlap * scale)
    out = weight = None
    for top in rows:
        for left in cols:
            piece = fn(x[..., top : top + tile, left : left + tile])
            if out is None:
                shape = (*piece.shape[:-2], int(height * scale), int(width * scale))
                out = torch.zeros(shape, dtype=torch.float32, device=piece.device)
                weight = torch.zeros(shape[-2:], dtype=torch.float32, device=piece.device)
            ph, pw = piece.shape[-2:]
            oy, ox = int(top * scale), int(left * scale)
            wy = ramp(
                ph,
                out_overlap if top > 0 else 0,
                out_overlap if top + tile < height else 0,
                dtype=torch.float32,
                device=piece.device,
            )
            wx = ramp(
                pw,
                out_overlap if left > 0 else 0,
                out_overlap if left + tile < width else 0,
                dtype=torch.float32,
                device=piece.device,
            )
            w2 = wy[:, None] * wx[None, :]
            out[..., oy : oy + ph, ox : ox + pw] += piece.float() * w2
            weight[oy : oy + ph, ox : ox + pw] += w2
    return (out / weight).to(piece.dtype)
