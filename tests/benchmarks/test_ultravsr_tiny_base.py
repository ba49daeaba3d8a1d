"""``benchmarks/ultravsr_tiny_base.py``: the tiny SD base it writes loads through UltraVSR's ``pretrained=`` path."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from ultravsr import UltraVSR
from ultravsr.presets import TINY_LATENT_CHANNELS, get_preset
from vsr_core.diffusion import DDPMSchedule


def test_the_tiny_preset_has_12_latent_channels_in_vae_and_unet():
    spec = get_preset("tiny")
    assert TINY_LATENT_CHANNELS == 12
    assert spec.vae_config["latent_channels"] == spec.unet["in_channels"] == spec.unet["out_channels"] == 12
    method = UltraVSR()
    assert method.codec.latent_channels == 12 and method.unet.config.in_channels == 12


def test_the_base_folder_loads_with_unit_variance_scaling_and_the_sd21_schedule(tmp_path: Path, benchmark_script):
    tiny_base = benchmark_script("ultravsr_tiny_base")
    folder = tiny_base.pretrain_tiny_base(tmp_path / "base", vae_seconds=0.0, unet_seconds=0.0)
    assert {p.name for p in folder.iterdir()} == {"vae", "unet", "scheduler"}
    # SD's rule, computed here from the saved VAE on the same first 8 batches of HQ frames: 1 / std(latents).
    vae = AutoencoderKL.from_pretrained(folder / "vae")
    frames = tiny_base.hq_frames(crop_size=64, clip_frames=4, batch_size=4, seed=0)
    with torch.no_grad():
        latents = torch.cat([vae.encode(next(frames)).latent_dist.mode() for _ in range(8)])
    assert abs(vae.config.scaling_factor - 1.0 / latents.std().item()) < 1e-5
    assert vae.config.scaling_factor != 1.0  # the preset's placeholder was replaced
    assert UNet2DConditionModel.from_pretrained(folder / "unet").config.in_channels == TINY_LATENT_CHANNELS
    loaded = DDPMSchedule.from_pretrained(str(folder))
    torch.testing.assert_close(loaded.alphas_cumprod, DDPMSchedule.preset("sd2.1-base").alphas_cumprod)

    method = UltraVSR(pretrained=str(folder)).eval()
    assert method.codec.scaling_factor == vae.config.scaling_factor
    # The pretrained UNet keeps its output layer (the random-base zero init applies only without `pretrained`).
    assert method.unet.conv_out.weight.abs().sum() > 0
    lq = torch.rand(1, 3, 4, 8, 8) * 2 - 1
    with torch.no_grad():
        out = method.restore(lq)
    assert out.shape == (1, 3, 4, 32, 32) and torch.isfinite(out).all()
