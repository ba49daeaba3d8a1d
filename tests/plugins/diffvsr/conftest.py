"""A tiny folder in the ``stabilityai/stable-diffusion-x4-upscaler`` layout, written with ``save_pretrained``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from diffvsr.presets import unet_config, vae_2d_config
from vsr_core.testing.tiny_text import write_text_model


def write_tiny_upscaler(root: Path, text: bool = True) -> Path:
    """``root`` with ``unet/``, ``vae/``, ``scheduler/``, ``low_res_scheduler/`` (and ``text_encoder/`` +
    ``tokenizer/``).

    The schedulers are the SD x4 upscaler's configs (scaled-linear betas 1e-4 .. 0.02, v-prediction DDIM with
    ``steps_offset`` 1; the low-resolution DDPM scheduler); the models are the tiny presets.
    """
    torch.manual_seed(0)
    UNet2DConditionModel(**unet_config("tiny")).save_pretrained(root / "unet")
    AutoencoderKL(**vae_2d_config("tiny")).save_pretrained(root / "vae")
    DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear",
        prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    ).save_pretrained(root / "scheduler")  # fmt: skip
    DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear", clip_sample=True,
        variance_type="fixed_small",
    ).save_pretrained(root / "low_res_scheduler")  # fmt: skip
    if text:
        write_text_model(root, "clip", width=unet_config("tiny")["cross_attention_dim"])
    return root


@pytest.fixture(scope="session")
def tiny_upscaler(tmp_path_factory) -> Path:
    return write_tiny_upscaler(tmp_path_factory.mktemp("x4-upscaler"))
