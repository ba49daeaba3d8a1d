"""Long and large inputs the release's way (Sec. 3.5): frame intervals and Gaussian-blended spatial tiles.

Temporally asynchronous inference itself (spatial layers on ``b`` frames, RTS propagation on the whole
sequence) is the block-wise runner inside :func:`ultravsr.unet.run_unet` / :func:`ultravsr.vae.decode_latents`.
Around it the release bounds memory twice more:

* **intervals**: a video longer than ``interval_frames`` whose frames exceed ``min_size`` pixels (release:
  30 frames, 1440 px) is restored in consecutive, non-overlapping intervals (one DEM score for all);
* **tiles**: the VAE encoder, the UNet and the VAE decoder each run on square tiles (release: 3000 px,
  96 and 96 latents) blended with Gaussian weights (``sigma = 0.1 x`` the tile side, the release's
  ``var = 0.01``), but only when ``height * width > tile**2``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from vsr_core.inference import gaussian_weight, tile_starts

__all__ = ["interval_bounds", "tiled"]

#: The release's Gaussian tile weights: ``exp(-(x - mid)^2 / (2 * 0.01 * side^2))``, i.e. sigma = 0.1 side.
TILE_SIGMA_RATIO = 0.1


def interval_bounds(
    num_frames: int, interval_frames: int, height: int, width: int, min_size: int
) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering ``num_frames``: one interval unless the release's rule splits the video.

    Split into intervals of ``interval_frames`` when ``num_frames > interval_frames > 0`` and
    ``max(height, width) > min_size`` (the upsampled frame size in pixels); the last interval may be shorter.
    """
    if interval_frames <= 0 or num_frames <= interval_frames or max(height, width) <= min_size:
        return [(0, num_frames)]
    return [(start, min(start + interval_frames, num_frames)) for start in range(0, num_frames, interval_frames)]


def tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    overlap: int,
    grid: tuple[int, int],
    in_scale: int = 1,
    out_scale: int = 1,
) -> torch.Tensor:
    """``fn`` on square tiles of ``x [B, C, T, H, W]``, Gaussian-blended; whole ``x`` when ``gh * gw <= tile**2``.

    Tiles are planned on a grid of ``grid = (gh, gw)`` cells (``tile``, ``overlap`` in cells, side
    ``min(tile, gh, gw)``); a cell is ``in_scale`` input pixels and ``out_scale`` output pixels, so the
    encoder plans on its latent grid (``in_scale = f``), the decoder on its input (``out_scale = f``).
    """
    gh, gw = grid
    if gh * gw <= tile * tile:
        return fn(x)
    side = min(tile, gh, gw)
    weight = gaussian_weight(side * out_scale, side * out_scale, TILE_SIGMA_RATIO).to(x.device)
    out: torch.Tensor | None = None
    total = torch.zeros(gh * out_scale, gw * out_scale, device=x.device)
    for y in tile_starts(gh, side, overlap):
        for x0 in tile_starts(gw, side, overlap):
            part = fn(x[..., y * in_scale : (y + side) * in_scale, x0 * in_scale : (x0 + side) * in_scale])
            if out is None:
                out = torch.zeros(
                    *part.shape[:3], gh * out_scale, gw * out_scale, device=x.device, dtype=torch.float32
                )
            ys, xs = slice(y * out_scale, (y + side) * out_scale), slice(x0 * out_scale, (x0 + side) * out_scale)
            out[..., ys, xs] += part.float() * weight
            total[ys, xs] += weight
    return (out / total).to(x.dtype)
