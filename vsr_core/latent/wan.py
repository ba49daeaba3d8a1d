"""Causal 3D codec over diffusers' ``AutoencoderKLWan`` (Wan2.1, 4x8x8, per-channel latent normalization)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers import AutoencoderKLWan

from vsr_core.latent.diffusers_vae import DiffusersVAECodec

__all__ = ["WanCodec"]


class WanCodec(DiffusersVAECodec):
    """Wan's causal 3D VAE: ``[B,3,4k+1,H,W]`` -> ``[B,z_dim,k+1,H/8,W/8]`` normalized latents.

    Factors come from the config (``scale_factor_spatial``, ``scale_factor_temporal``; Wan2.2's
    patchified VAE has 16 spatially). Latents are normalized per channel with the config's
    ``latents_mean`` / ``latents_std``: ``(z - mean) / std``, exactly what diffusers' Wan pipelines
    do, and decoding inverts it. The VAE processes frames causally with a feature cache (first
    frame, then groups of 4), so memory does not grow with the clip length. Spatial tiling uses the
    generic blended tiles unless ``diffusers_tiling=True`` hands ``tile_size`` / ``tile_overlap`` to the
    VAE's own ``enable_tiling`` (stride ``tile_size - tile_overlap``); ``slicing=True`` processes batch
    elements one at a time.

    Presets: ``tiny``, ``wan2.1`` (the Wan2.1 VAE, 127M parameters).
    """

    vae_class: ClassVar[type] = AutoencoderKLWan
    causal = True
    default_real: ClassVar[str] = "wan2.1"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "base_dim": 4,
            "z_dim": 4,
            "dim_mult": [1, 1, 1, 1],
            "num_res_blocks": 1,
            "temperal_downsample": [False, True, True],
            "latents_mean": [0.1, -0.2, 0.3, -0.4],
            "latents_std": [0.5, 1.5, 2.0, 1.0],
        },
        "wan2.1": {},  # diffusers' defaults are the Wan2.1 VAE
    }

    def __init__(
        self,
        pretrained: str | None = None,
        preset: str = "tiny",
        config: dict[str, Any] | None = None,
        subfolder: str = "vae",
        torch_dtype: str | None = None,
        seed: int | None = 0,
        vae: AutoencoderKLWan | None = None,
        *,
        tile_size: int | None = None,
        tile_overlap: int = 0,
        diffusers_tiling: bool = False,
        slicing: bool = False,
        trainable: bool = False,
        encoder_trainable: bool = False,
    ) -> None:
        self.diffusers_tiling = diffusers_tiling
        super().__init__(
            pretrained, preset, config, subfolder, torch_dtype, seed, vae,
            tile_size=tile_size, tile_overlap=tile_overlap, trainable=trainable, encoder_trainable=encoder_trainable,
        )  # fmt: skip
        if slicing:
            self.vae.enable_slicing()

    def _configure(self) -> None:
        cfg = self.vae.config
        self.spatial_factor = int(cfg.scale_factor_spatial)
        self.temporal_factor = int(cfg.scale_factor_temporal)
        self.latent_channels = cfg.z_dim
        self._register_channel_stats(cfg.latents_mean, cfg.latents_std)

    def _finish_init(self) -> None:
        if self.diffusers_tiling and self.tile_size is not None:
            tile, overlap = self.tile_size, self.tile_overlap
            super()._finish_init()
            self.vae.enable_tiling(
                tile_sample_min_height=tile,
                tile_sample_min_width=tile,
                tile_sample_stride_height=tile - overlap,
                tile_sample_stride_width=tile - overlap,
            )
            self.tile_size = None
            return
        super()._finish_init()
        if self.diffusers_tiling:
            self.vae.enable_tiling()

    def _encode(self, video: torch.Tensor, sample_posterior: bool, generator: torch.Generator | None) -> torch.Tensor:
        dist = self.vae.encode(video.to(self.vae_dtype)).latent_dist
        z = self._posterior_latents(dist, sample_posterior, generator).to(video.dtype)
        return (z - self.latents_mean.to(z)) / self.latents_std.to(z)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents * self.latents_std.to(latents) + self.latents_mean.to(latents)
        return self.vae.decode(z.to(self.vae_dtype)).sample.to(latents.dtype)
