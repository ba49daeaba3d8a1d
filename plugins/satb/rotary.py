"""3D rotary position embeddings of CogVideoX for a latent grid (same rule as diffusers' pipelines)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed


def _crop_region(grid: tuple[int, int], base_width: int, base_height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    # CogVideoX 1.0: the token grid is resized into the training grid keeping its aspect ratio, centred.
    h, w = grid
    if h / w > base_height / base_width:
        resize_h, resize_w = base_height, round(base_height / h * w)
    else:
        resize_w, resize_h = base_width, round(base_width / w * h)
    top, left = round((base_height - resize_h) / 2.0), round((base_width - resize_w) / 2.0)
    return (top, left), (top + resize_h, left + resize_w)


def rotary_embeddings(
    config: Any, latent_frames: int, latent_height: int, latent_width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(cos, sin)``, each ``[N, head_dim]`` for ``N`` video tokens, or ``None`` without RoPE.

    ``config`` is a CogVideoX transformer config; ``latent_frames`` counts latent frames *before*
    temporal patching (must already be a multiple of ``patch_size_t``).
    """
    if not config.use_rotary_positional_embeddings:
        return None
    p, pt = config.patch_size, config.patch_size_t
    grid = (latent_height // p, latent_width // p)
    if pt is None:
        cos, sin = get_3d_rotary_pos_embed(
            embed_dim=config.attention_head_dim,
            crops_coords=_crop_region(grid, config.sample_width // p, config.sample_height // p),
            grid_size=grid,
            temporal_size=latent_frames,
            device=device,
        )
    else:
        # CogVideoX 1.5: positions are the first rows/columns of a maximal grid (sample size // p);
        # a larger frame extends that grid (its first positions are unchanged) instead of failing.
        max_size = (max(config.sample_height // p, grid[0]), max(config.sample_width // p, grid[1]))
        cos, sin = get_3d_rotary_pos_embed(
            embed_dim=config.attention_head_dim,
            crops_coords=None,
            grid_size=grid,
            temporal_size=(latent_frames + pt - 1) // pt,
            grid_type="slice",
            max_size=max_size,
            device=device,
        )
    return cos.to(device), sin.to(device)
