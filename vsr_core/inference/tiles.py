"""Spatial tiles with overlap for high resolutions, blended with Gaussian weights.

Tiles are planned on the LQ grid; each restored tile is weighted by a 2-D Gaussian centred on it
(small at the borders, where a model sees the least context) and the weighted sum is normalised.
"""

from __future__ import annotations

import math

import torch

from vsr_core.errors import ConfigError

__all__ = ["gaussian_weight", "tile_starts"]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with ``overlap``; the last ends at ``size``."""
    if tile >= size:
        return [0]
    if overlap >= tile:
        raise ConfigError(
            f"--tile-overlap {overlap} must be smaller than --tile {tile}"
        )
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
