"""Per-frame 2D codec over diffusers' ``AutoencoderKL`` (Stable Diffusion VAEs, the SD x4 upscaler VAE)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers import AutoencoderKL

from vsr_core.latent.diffusers_vae import DiffusersVAECodec

__all__ = ["AutoencoderKLCodec"]

_SD_BLOCKS = {"down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}


class AutoencoderKLCodec(DiffusersVAECodec):
    """Applies an ``AutoencoderKL`` to every frame: ``[B,3,T,H,W]`` -> ``[B,c,T,H/f,W/f]``.

    ``f = 2 ** (len(block_out_channels) - 1)`` from the VAE config: 8 for SD 1.x/2.x, 4 for the SD x4
    upscaler's VAE. Latents are ``(z - shift_factor) * scaling_factor`` (diffusers' convention;
    ``shift_factor`` defaults to 0) and, when the config carries per-channel ``latents_mean`` /
    ``latents_std``, ``(z - mean) * scaling_factor / std`` like diffusers' SDXL pipelines.
    ``frames_per_chunk`` bounds how many frames go through the VAE at once.

    Presets: ``tiny`` (2 blocks, f = 2), ``sd`` (SD 1.5 / 2.1 VAE, f = 8), ``sd-x4-upscaler`` (f = 4).
    """

    vae_class: ClassVar[type] = AutoencoderKL
    default_real: ClassVar[str] = "sd"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "block_out_channels": [8, 16],
            "down_block_types": ["DownEncoderBlock2D"] * 2,
            "up_block_types": ["UpDecoderBlock2D"] * 2,
            "latent_channels": 4,
            "layers_per_block": 1,
            "norm_num_groups": 4,
            "sample_size": 32,
            "mid_block_add_attention": False,
            "scaling_factor": 0.5,
        },
        "sd": {
            **_SD_BLOCKS,
            "block_out_channels": [128, 256, 512, 512],
            "latent_channels": 4,
            "layers_per_block": 2,
            "norm_num_groups": 32,
            "sample_size": 512,
            "scaling_factor": 0.18215,
        },
        "sd-x4-upscaler": {
            "block_out_channels": [128, 256, 512],
            "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3,
            "latent_channels": 4,
            "layers_per_block": 2,
            "norm_num_groups": 32,
            "sample_size": 256,
            "scaling_factor": 0.08333,
        },
    }

    def __init__(
        self,
        pretrained: str | None = None,
        preset: str = "tiny",
        config: dict[str, Any] | None = None,
        subfolder: str = "vae",
        torch_dtype: str | None = None,
        seed: int | None = 0,
        vae: AutoencoderKL | None = None,
        *,
        tile_size: int | None = None,
        tile_overlap: int = 0,
        frames_per_chunk: int | None = None,
        trainable: bool = False,
        encoder_trainable: bool = False,
    ) -> None:
        super().__init__(
            pretrained, preset, config, subfolder, torch_dtype, seed, vae,
            tile_size=tile_size, tile_overlap=tile_overlap, frames_per_chunk=frames_per_chunk,
            trainable=trainable, encoder_trainable=encoder_trainable,
        )  # fmt: skip

    def _configure(self) -> None:
        cfg = self.vae.config
        self.spatial_factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.temporal_factor = 1
        self.latent_channels = cfg.latent_channels
        self.scaling_factor = float(cfg.scaling_factor)
        self.shift_factor = float(cfg.shift_factor or 0.0)
        self._register_channel_stats(cfg.latents_mean, cfg.latents_std)

    def _encode(self, video: torch.Tensor, sample_posterior: bool, generator: torch.Generator | None) -> torch.Tensor:
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w).to(self.vae_dtype)
        z = self._posterior_latents(self.vae.encode(frames).latent_dist, sample_posterior, generator)
        z = z.reshape(b, t, *z.shape[1:]).transpose(1, 2).to(video.dtype)
        if self.latents_mean is not None:
            return (z - self.latents_mean.to(z)) * self.scaling_factor / self.latents_std.to(z)
        return (z - self.shift_factor) * self.scaling_factor

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = latents.shape
        if self.latents_mean is not None:
            z = latents * self.latents_std.to(latents) / self.scaling_factor + self.latents_mean.to(latents)
        else:
            z = latents / self.scaling_factor + self.shift_factor
        frames = z.transpose(1, 2).reshape(b * t, c, h, w).to(self.vae_dtype)
        x = self.vae.decode(frames).sample
        return x.reshape(b, t, *x.shape[1:]).transpose(1, 2).to(latents.dtype)
