"""DiffVSR's architectures by preset: the SD x4 upscaler's UNet and VAEs at full size, and tiny CPU versions.

``real`` is ``stabilityai/stable-diffusion-x4-upscaler``'s ``unet/config.json`` (the values the release's
``configs/unet_3d_config.json`` repeats: 7 input channels = 4 latent + 3 LR RGB, ``block_out_channels
[256, 512, 512, 1024]``, 8 heads, ``only_cross_attention [true, true, true, false]``, ``num_class_embeds 1000`` for the
LR noise level, cross-attention width 1024 = OpenCLIP-H) and the release's ``configs/vae_config.json`` for the
TE-3DVAE (``block_out_channels [128, 256, 512]``, 4 latent channels, scaling factor 0.08333). ``tiny`` keeps every
kind of block (a plain down/up block, cross-attention-only and self-attention transformers, the mid block) at 32-64
channels, so every DiffVSR layer runs in seconds on a CPU.
"""

from __future__ import annotations

from typing import Any, Literal

from vsr_core.errors import ConfigError
from vsr_core.latent import AutoencoderKLCodec

__all__ = ["PRESETS", "Preset", "te3dvae_config", "unet_config", "vae_2d_config"]

Preset = Literal["tiny", "real"]
PRESETS = ("tiny", "real")

_UNET: dict[str, dict[str, Any]] = {
    "real": {
        "sample_size": 128,
        "in_channels": 7,
        "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [256, 512, 512, 1024],
        "layers_per_block": 2,
        "attention_head_dim": 8,
        "cross_attention_dim": 1024,
        "num_class_embeds": 1000,
        "only_cross_attention": [True, True, True, False],
        "use_linear_projection": True,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
    },
    "tiny": {
        "sample_size": 16,
        "in_channels": 7,
        "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [16, 32, 32],
        "layers_per_block": 1,
        # Heads per block (diffusers' legacy name): one 32-wide head, the release's rotary width, where it matters.
        "attention_head_dim": [1, 1, 1],
        "cross_attention_dim": 16,
        "num_class_embeds": 1000,
        "only_cross_attention": [True, True, False],
        "use_linear_projection": True,
        "norm_num_groups": 8,
        "norm_eps": 1e-5,
    },
}

_TE3DVAE: dict[str, dict[str, Any]] = {
    "real": {
        "block_out_channels": [128, 256, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "layers_per_block": 2,
        "latent_channels": 4,
        "sample_size": 320,
        "scaling_factor": 0.08333,
        "force_upcast": True,
    },
    "tiny": {
        "block_out_channels": [32, 32, 32],
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "layers_per_block": 1,
        "latent_channels": 4,
        "sample_size": 32,
        "scaling_factor": 0.08333,
        "force_upcast": True,
    },
}

_VAE_2D: dict[str, dict[str, Any]] = {
    # The SD x4 upscaler's vae/config.json: the core codec's preset of that name, not a copy of it.
    "real": AutoencoderKLCodec.preset_config("sd-x4-upscaler"),
    "tiny": {
        "block_out_channels": [32, 32, 32],
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 32,
        "sample_size": 32,
        "scaling_factor": 0.08333,
    },
}


def _lookup(table: dict[str, dict[str, Any]], preset: str, what: str) -> dict[str, Any]:
    if preset not in table:
        raise ConfigError(f"unknown DiffVSR preset {preset!r} for the {what}; choose one of {', '.join(PRESETS)}")
    return {k: (list(v) if isinstance(v, list) else v) for k, v in table[preset].items()}


def unet_config(preset: str, latent_channels: int = 4) -> dict[str, Any]:
    """``UNet2DConditionModel`` arguments of ``preset``; a codec with other latent channels changes in/out channels."""
    config = _lookup(_UNET, preset, "UNet")
    config["in_channels"] = latent_channels + 3
    config["out_channels"] = latent_channels
    return config


def te3dvae_config(preset: str) -> dict[str, Any]:
    """:class:`~diffvsr.te3dvae.TemporalEnhancedVAE` arguments of ``preset`` (``real``: the release's config)."""
    return _lookup(_TE3DVAE, preset, "TE-3DVAE")


def vae_2d_config(preset: str) -> dict[str, Any]:
    """``AutoencoderKL`` arguments of ``preset`` (``real``: the SD x4 upscaler's VAE)."""
    return _lookup(_VAE_2D, preset, "2D VAE")
