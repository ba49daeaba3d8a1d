"""Named architectures of PS-SR when no ``pretrained=`` folder is given (random weights).

* ``real``: Wan2.1-T2V-1.3B (``transformer/config.json`` of the diffusers release: 30 blocks of
  12 heads x 128 = 1536, FFN 8960, patch 1x2x2, umT5 text width 4096) and the Wan2.1 VAE (4x8x8,
  16 channels) — for ``vsr bench --preset real`` (built on the meta device) and parameter counts.
* ``tiny``: a 3-block Wan transformer (8 heads x 16) on the weight-free pixel-unshuffle codec
  (4x4 pixels -> 48 channels, exactly invertible): the CPU preset of the tests, ``vsr fit`` and the
  learning check.
* ``tiny-wan``: the same transformer on the tiny random Wan VAE (causal, 4k+1 frames, 8x spatial):
  the real codec path on a CPU.

A random base has nothing to distil or keep, so for the tiny presets the base's own head starts at
zero (``zero_head``): an untrained model returns ``x0 = z_L`` (the upsampled input through the
codec) and training starts from there. With ``pretrained`` the base keeps Wan's head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vsr_core.errors import ConfigError

__all__ = ["PRESETS", "Preset", "PresetName", "WAN21_T2V_1_3B", "get_preset"]

PresetName = Literal["tiny", "tiny-wan", "real"]

#: ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers/transformer/config.json``.
WAN21_T2V_1_3B: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}

#: 3 blocks, so the default draft (20 of 30 pruned) keeps one (block 2); head width 16 splits into
#: Wan's 3D RoPE as 8 (time) + 4 + 4 (space).
TINY_TRANSFORMER: dict[str, Any] = {
    **WAN21_T2V_1_3B,
    "num_attention_heads": 8,
    "attention_head_dim": 16,
    "text_dim": 16,
    "freq_dim": 32,
    "ffn_dim": 256,
    "num_layers": 3,
    "rope_max_seq_len": 256,
}


#: PS-SR's latent discriminator: VGG-16's convolutions, 7x7 pooling, a 1024-wide head (the release's).
VGG16_DISCRIMINATOR: dict[str, Any] = {
    "channels": (64, 128, 256, 512, 512),
    "convs": (2, 2, 3, 3, 3),
    "pooled_size": 7,
    "hidden_channels": 1024,
}
TINY_DISCRIMINATOR: dict[str, Any] = {"channels": (16, 32), "convs": (1, 1), "pooled_size": 2, "hidden_channels": 64}


@dataclass(frozen=True)
class Preset:
    """One PS-SR architecture.

    Attributes:
        transformer: ``WanTransformer3DModel`` config (``in_channels`` / ``out_channels`` follow the codec).
        codec: ``wan`` (the Wan VAE of ``codec_preset``) or ``pixel_unshuffle`` (weight-free).
        codec_preset: WanCodec preset (``tiny`` / ``wan2.1``).
        codec_factor, codec_scaling: the weight-free codec's spatial factor and latent scale (x2:
            pixels in [-1, 1] have a standard deviation near 0.5, VAE latents about 1).
        text_tokens: length of the all-zero prompt embedding used without a text encoder.
        zero_head: the base's head starts at zero (random bases only, see the module doc).
        discriminator: the latent discriminator's stages (``LatentVGGDiscriminator`` arguments):
            VGG-16 for ``real``, two narrow stages for the tiny latents.
    """

    transformer: dict[str, Any]
    codec: Literal["wan", "pixel_unshuffle"]
    codec_preset: str = "wan2.1"
    codec_factor: int = 8
    codec_scaling: float = 1.0
    text_tokens: int = 512
    zero_head: bool = False
    discriminator: dict[str, Any] = field(default_factory=lambda: dict(VGG16_DISCRIMINATOR))


PRESETS: dict[str, Preset] = {
    "real": Preset(transformer=WAN21_T2V_1_3B, codec="wan", codec_preset="wan2.1"),
    "tiny": Preset(
        transformer=TINY_TRANSFORMER,
        codec="pixel_unshuffle",
        codec_factor=4,
        codec_scaling=2.0,
        text_tokens=4,
        zero_head=True,
        discriminator=TINY_DISCRIMINATOR,
    ),
    "tiny-wan": Preset(
        transformer=TINY_TRANSFORMER,
        codec="wan",
        codec_preset="tiny",
        text_tokens=4,
        zero_head=True,
        discriminator=TINY_DISCRIMINATOR,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown PS-SR preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
