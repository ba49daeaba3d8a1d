"""CPU offload of a method's big models (``vsr restore --offload``): what is hooked, and equal outputs.

No GPU here: the hooks execute on the CPU, which checks the mechanism (every call of an offloaded
model goes through its hook and the method's output does not change), not the memory it saves.
"""

from __future__ import annotations

import pytest
import torch

from vsr_core.errors import ConfigError
from vsr_core.offload import enable_offload, offloadable_models
from vsr_core.testing import BoringMethod


class LatentBoring(BoringMethod):
    """BoringMethod restoring through a tiny diffusers VAE and a tiny diffusers UNet on its latents."""

    def __init__(self, **kwargs):
        from diffusers import UNet2DModel

        from vsr_core.latent import AutoencoderKLCodec

        super().__init__(scale=2, **kwargs)
        self.codec = AutoencoderKLCodec.tiny(seed=1)
        self.unet = UNet2DModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(8, 8),
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
        )

    def restore(self, lq, prompt=None, *, num_inference_steps=None, guidance_scale=None, generator=None):
        z = self.codec.encode(super().restore(lq))  # [B, 4, T, h, w]
        b, c, t, h, w = z.shape
        frames = z.transpose(1, 2).reshape(b * t, c, h, w)
        frames = frames + 0.1 * self.unet(frames, 10).sample
        return self.codec.decode(frames.reshape(b, t, c, h, w).transpose(1, 2)).clamp(-1, 1)


def latent_boring() -> LatentBoring:
    torch.manual_seed(0)
    method = LatentBoring().eval()
    with torch.no_grad():  # off the zero-initialised head, so every part changes the output
        for p in method.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return method


def test_the_outermost_diffusers_models_are_offloadable():
    names = [name for name, _ in offloadable_models(latent_boring())]
    assert names == ["codec.vae", "unet"]  # the VAE inside the codec wrapper; nothing nested twice


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_offloaded_restore_equals_the_plain_one(mode):
    method = latent_boring()
    lq = torch.rand(1, 3, 2, 8, 8) * 2 - 1
    with torch.no_grad():
        plain = method.restore(lq)
    names = enable_offload(method, mode, "cpu")
    assert names == ["codec.vae", "unet"]
    assert all(hasattr(dict(method.named_modules())[n], "_hf_hook") for n in names)
    with torch.no_grad():
        offloaded = method.restore(lq)
    torch.testing.assert_close(offloaded, plain)


def test_a_method_without_big_models_or_a_bad_mode_is_one_line():
    with pytest.raises(ConfigError, match="no diffusers or transformers model to offload"):
        enable_offload(BoringMethod(), "model", "cpu")
    with pytest.raises(ConfigError, match="--offload must be one of none, model, sequential"):
        enable_offload(BoringMethod(), "layer", "cpu")
