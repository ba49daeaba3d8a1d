"""``--preset real`` builds on the meta device with the SD x4 upscaler's sizes; parameter counts worked out by hand."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from diffvsr.presets import te3dvae_config, unet_config, vae_2d_config
from vsr_core.commands.bench import build_method

# stabilityai/stable-diffusion-x4-upscaler unet/config.json, as the release's configs/unet_3d_config.json repeats it.
RELEASE_UNET_CONFIG = {
    "in_channels": 7, "out_channels": 4, "block_out_channels": [256, 512, 512, 1024], "layers_per_block": 2,
    "attention_head_dim": 8, "cross_attention_dim": 1024, "num_class_embeds": 1000,
    "only_cross_attention": [True, True, True, False], "use_linear_projection": True, "norm_num_groups": 32,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
}  # fmt: skip
# The release's configs/vae_config.json.
RELEASE_VAE_CONFIG = {
    "block_out_channels": [128, 256, 512],
    "latent_channels": 4,
    "layers_per_block": 2,
    "scaling_factor": 0.08333,
}


def _temporal_layer_count() -> int:
    """The release layout's temporal layers at full size (channels per transformer / block, 8 heads, temb 1024)."""
    transformers = [512] * 2 + [512] * 2 + [1024] * 2 + [1024] + [1024] * 3 + [512] * 3 + [512] * 3
    blocks = [256, 512, 512, 1024, 1024, 1024, 512, 512, 256]  # after each down block, the mid block, each up block
    d, heads = 1024, 8
    resnet_3d = sum(6 * c * c + 6 * c for c in transformers)  # 2 GN + 2 (3,1,1) convs
    msta = sum(
        33 * c * c + 8 * c + 64 * heads for c in transformers
    )  # 2 LN, 2 TA (+ rel. bias), DConv 3x3, UPConv 4x4
    modules = sum(27 * c * c + 2 * d * c + 15 * c for c in blocks)  # (5,1,1)+(3,1,1) and 3x3 resnets, 1x1 conv
    return resnet_3d + msta + modules


def _te3dvae_count() -> int:
    """TE-3DVAE = the SD x4 VAE + a 3x3x3 temporal residual block per decoder ResNet + the mid temporal attention."""
    vae_2d = sum(p.numel() for p in AutoencoderKL(**vae_2d_config("real")).parameters())
    resnets = [512] * 2 + [512] * 3 + [256] * 3 + [128] * 3
    temporal_resblocks = sum(54 * c * c + 6 * c + 1 for c in resnets)  # 2 GN, 2 3x3x3 convs, the mix factor
    c = 512
    frame_transformer = 4 * 2 * c + 2 * (12 * c * c + 9 * c) + 2 * (4 * c * c + c)  # 4 LN, 2 GEGLU FF, 2 attentions
    video_attention = frame_transformer + (8 * c * c + 5 * c) + 1  # + frame-index MLP + mix factor
    return vae_2d + temporal_resblocks + video_attention + (3 * 3 * 27 + 3)  # time_conv_out


def test_real_preset_is_the_release_configuration():
    config = unet_config("real")
    assert {k: config[k] for k in RELEASE_UNET_CONFIG} == RELEASE_UNET_CONFIG
    vae = te3dvae_config("real")
    assert {k: vae[k] for k in RELEASE_VAE_CONFIG} == RELEASE_VAE_CONFIG


def test_real_preset_builds_on_meta_with_the_upscaler_parameter_counts(capsys):
    method = build_method("diffvsr.DiffVSR", "real", "cpu", materialize_params=False)
    assert all(p.device.type == "meta" for p in method.parameters())
    counts = method.parameter_counts()
    with torch.device("meta"):
        image = sum(p.numel() for p in UNet2DConditionModel(**unet_config("real")).parameters())
    assert image == 473_398_020  # diffusers' UNet2DConditionModel with the x4 upscaler's config
    assert counts == {"image_unet": image, "temporal_layers": _temporal_layer_count(), "codec": _te3dvae_count()}
    print(counts)  # shown with -s: {'image_unet': 473398020, 'temporal_layers': ..., 'codec': ...}
