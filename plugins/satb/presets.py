"""Named architectures of SATB-VR: ``tiny`` (CPU tests, learning check) and ``real`` (CogVideoX1.5-5B).

A preset fixes the backbone shapes when no ``pretrained=`` folder is given; with one, the
transformer config comes from ``<pretrained>/transformer/config.json`` and the preset only
supplies the SATB-specific extras (ControlNet depth, connector and LQ-embedding widths). Presets
hold architecture only: how a model trains and samples is in :mod:`satb.options` and the
commented ``configs/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vsr_core.errors import ConfigError

#: ``CogVideoX1.5-5B/transformer/config.json`` (text-to-video): 42 blocks of width 48x64 = 3072,
#: patch 2x2 in space and 2 in time, RoPE, T5-XXL text (4096-d, 226 tokens).
COGVIDEOX15_5B_TRANSFORMER: dict[str, Any] = {
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_head_dim": 64,
    "dropout": 0.0,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 16,
    "max_text_seq_length": 226,
    "norm_elementwise_affine": True,
    "norm_eps": 1e-05,
    "num_attention_heads": 48,
    "num_layers": 42,
    "ofs_embed_dim": None,
    "out_channels": 16,
    "patch_bias": False,
    "patch_size": 2,
    "patch_size_t": 2,
    "sample_frames": 81,
    "sample_height": 300,
    "sample_width": 300,
    "spatial_interpolation_scale": 1.875,
    "temporal_compression_ratio": 4,
    "temporal_interpolation_scale": 1.0,
    "text_embed_dim": 4096,
    "time_embed_dim": 512,
    "timestep_activation_fn": "silu",
    "use_learned_positional_embeddings": False,
    "use_rotary_positional_embeddings": True,
}

#: The tiny transformer: same block type, RoPE and 2x2x2 patches, 6 heads x 16 dims (16 is the
#: smallest head width CogVideoX's 3D RoPE splits evenly over t/h/w). Its width, 96, equals the
#: values in one patch of the tiny codec's latent (2x2x2 x 12 channels): narrower tokens could not
#: even carry the input through, let alone restore detail.
TINY_TRANSFORMER: dict[str, Any] = {
    **COGVIDEOX15_5B_TRANSFORMER,
    "attention_head_dim": 16,
    "num_attention_heads": 6,
    "num_layers": 2,
    "max_text_seq_length": 4,
    "sample_frames": 9,
    "sample_height": 64,
    "sample_width": 64,
    "text_embed_dim": 16,
    "time_embed_dim": 32,
}


@dataclass(frozen=True)
class Preset:
    """One SATB-VR architecture (shapes only; the training recipe is in ``configs/*.yaml``).

    Attributes:
        transformer: CogVideoX transformer config (``in_channels``/``out_channels`` follow the codec).
        controlnet_layers: blocks copied into the ControlNet branch (6, as Vivid-VR).
        connector_heads, connector_dim: connector attention heads and MLP width.
        control_hidden_channels, control_groups: LQ patch-embedding width and GroupNorm groups.
        codec: ``"cogvideox"`` (3D causal VAE, 4x8x8) or ``"pixel_unshuffle"`` (weight-free).
        codec_factor: spatial factor of the weight-free codec.
        codec_scaling: latent scale of the weight-free codec (pixels in [-1, 1] have a standard
            deviation near 0.5; x2 gives latents of about unit variance, as VAE latents are
            scaled for, so the noise schedule has the SNRs it was designed with).
        text_tokens: length of the empty-prompt embedding used without a text encoder.
        temporal_window: frames per window of long-video inference (81 at full size: the
            release's 80-frame temporal tiles, rounded to the VAE's 4k+1).
    """

    transformer: dict[str, Any]
    controlnet_layers: int
    connector_heads: int
    connector_dim: int
    control_hidden_channels: int
    control_groups: tuple[int, int]
    codec: str
    codec_factor: int = 8
    codec_scaling: float = 1.0
    text_tokens: int = 226
    temporal_window: int = 81


PRESETS: dict[str, Preset] = {
    "real": Preset(
        transformer=COGVIDEOX15_5B_TRANSFORMER,
        controlnet_layers=6,
        connector_heads=48,
        connector_dim=512,
        control_hidden_channels=320,
        control_groups=(16, 32),
        codec="cogvideox",
        codec_factor=8,
        text_tokens=226,
        temporal_window=81,
    ),
    "tiny": Preset(
        transformer=TINY_TRANSFORMER,
        controlnet_layers=1,
        connector_heads=6,
        connector_dim=32,
        control_hidden_channels=24,
        control_groups=(4, 8),
        codec="pixel_unshuffle",
        codec_factor=2,
        codec_scaling=2.0,
        text_tokens=4,
        temporal_window=17,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (``tiny`` or ``real``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown SATB-VR preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
