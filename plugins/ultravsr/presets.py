"""Architecture presets: the SD 2.1-base layout at full size (``real``) and in miniature (``tiny``).

A preset holds architecture only (UNet config, VAE preset, RTS widths, discriminator widths, text
width); the training recipe lives in ``configs/*.yaml``. ``real`` is Stable Diffusion 2.1-base's
``UNet2DConditionModel`` (865.9M parameters) and VAE (83.7M) with the release's RTS widths
(``conv_reduction`` 10, ``attention_reduction`` 4, 8 heads); built on the meta device by ``vsr bench``.
``tiny`` keeps every block type (cross-attention down/up blocks, a cross-attention mid block, a 2-level
VAE with RTS before each decoder up block) at a size that trains on a CPU in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vsr_core.errors import ConfigError

__all__ = ["CLIP_RN50", "PRESETS", "SD21_TEXT_ENCODER", "Preset", "get_preset"]

#: Stable Diffusion 2.1-base's UNet (the diffusers config of stabilityai/stable-diffusion-2-1-base/unet).
SD21_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "act_fn": "silu",
    "norm_num_groups": 32,
}

#: SD 2.x's text encoder as diffusers packages it (OpenCLIP ViT-H/14 text tower, 23 layers): 340.4M.
SD21_TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 512,
}

#: OpenAI CLIP RN50, the backbone of pyiqa's CLIP-IQA (the DEM): 102.0M (``clip.model.CLIP`` arguments).
CLIP_RN50: dict[str, Any] = {
    "embed_dim": 1024,
    "image_resolution": 224,
    "vision_layers": (3, 4, 6, 3),
    "vision_width": 64,
    "vision_patch_size": None,
    "context_length": 77,
    "vocab_size": 49408,
    "transformer_width": 512,
    "transformer_heads": 8,
    "transformer_layers": 12,
}


#: Latent channels of the tiny VAE: 12 values per 4x4 pixel block (48 pixel values), a 4x compression. SD's 4
#: channels at factor 8 work because its large VAE was pretrained; a tiny VAE with 4 channels at factor 4 holds
#: barely more than the LR frame itself (3 values per block), so its decoder cannot reconstruct much better than
#: bicubic and caps what the one-step model can learn (docs/methods/ultravsr.md, "Tiny preset").
TINY_LATENT_CHANNELS = 12


@dataclass(frozen=True)
class Preset:
    """One architecture.

    Attributes:
        unet: ``UNet2DConditionModel`` config (random init when no ``pretrained`` is given).
        vae_preset, vae_config: ``AutoencoderKLCodec`` preset and overrides.
        rts: ``conv_reduction``, ``attention_reduction``, ``heads`` of every RTS module.
        discriminator: ``TemporalPatchDiscriminator`` widths.
        text_tokens: tokens of the zero text embedding when there is no text encoder.
        temporal_window: frames per window of ``vsr restore``'s long-video engine.
    """

    unet: dict[str, Any]
    vae_preset: str
    vae_config: dict[str, Any] = field(default_factory=dict)
    rts: dict[str, int] = field(default_factory=lambda: {"conv_reduction": 10, "attention_reduction": 4, "heads": 8})
    discriminator: dict[str, Any] = field(default_factory=dict)
    text_tokens: int = 77
    temporal_window: int = 120


PRESETS: dict[str, Preset] = {
    "real": Preset(
        unet=SD21_UNET,
        vae_preset="sd",
        # ProPainter's temporal PatchGAN widths (64 -> 256), spectral norm, (3, 5, 5) kernels.
        discriminator={"base_channels": 64, "num_layers": 4, "max_channels": 256},
        # TAI restores up to 120 frames at 1440x2560 in one pass (Sec. 3.5).
        temporal_window=120,
    ),
    "tiny": Preset(
        unet={
            "sample_size": 16,
            "in_channels": TINY_LATENT_CHANNELS,
            "out_channels": TINY_LATENT_CHANNELS,
            # Attention only at the coarser level: the same block types as SD, a CPU-sized cost.
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "block_out_channels": [16, 32],
            "layers_per_block": 1,
            "attention_head_dim": 2,
            "cross_attention_dim": 16,
            "use_linear_projection": True,
            "act_fn": "silu",
            "norm_num_groups": 8,
        },
        vae_preset="tiny",
        # Three levels (factor 4): the UNet works on 16x16 latents of a 64x64 crop, as cheap as the LR input.
        vae_config={
            "block_out_channels": [8, 16, 16],
            "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3,
            "latent_channels": TINY_LATENT_CHANNELS,
            "scaling_factor": 1.0,
        },
        rts={"conv_reduction": 2, "attention_reduction": 2, "heads": 2},
        discriminator={"base_channels": 8, "num_layers": 2, "max_channels": 16},
        text_tokens=8,
        temporal_window=16,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset ``name`` (``tiny`` or ``real``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown UltraVSR preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
