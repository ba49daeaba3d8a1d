"""LowResNoiser: the SD x4 upscaler's noise-level conditioning, against diffusers' own low_res_scheduler."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from vsr_core.diffusion import PRESETS, LowResNoiser
from vsr_core.errors import ConfigError


def _low_res_scheduler() -> DDPMScheduler:
    # The dict diffusers' single-file loader builds for StableDiffusionUpscalePipeline's low_res_scheduler.
    return DDPMScheduler.from_config(
        {
            "beta_end": 0.02,
            "beta_schedule": "scaled_linear",
            "beta_start": 0.0001,
            "clip_sample": True,
            "num_train_timesteps": 1000,
            "prediction_type": "epsilon",
            "trained_betas": None,
            "variance_type": "fixed_small",
        }
    )


def _image(seed: int = 0, shape: tuple[int, ...] = (2, 3, 8, 8)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_preset_is_the_pipelines_low_res_scheduler() -> None:
    preset = {k: v for k, v in PRESETS["sd-x4-upscaler-low-res"].items() if k != "_class_name"}
    ours, theirs = dict(DDPMScheduler.from_config(preset).config), dict(_low_res_scheduler().config)
    ours.pop("_use_default_values"), theirs.pop("_use_default_values")
    assert ours == theirs


@pytest.mark.parametrize("level", [0, 20, 350])
def test_noising_equals_diffusers_add_noise_at_the_level(level: int) -> None:
    image = _image()
    noiser = LowResNoiser()
    noised, labels = noiser(image, level, generator=torch.Generator().manual_seed(3))
    # The pipeline: noise = randn_tensor(image.shape, generator), low_res_scheduler.add_noise(image, noise, [level]).
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(3))
    expected = _low_res_scheduler().add_noise(image, noise, torch.tensor([level]))
    torch.testing.assert_close(noised, expected)
    assert labels.dtype == torch.long and labels.tolist() == [level, level]
    if level == 0:  # a_0 = 1 - beta_0 = 0.9999: the image is (almost) untouched
        assert (noised - image).abs().max() < 0.05
    else:
        assert not torch.allclose(noised, image, atol=0.05)


def test_per_sample_levels_and_videos() -> None:
    video = _image(1, (2, 3, 4, 6, 6))  # [B, C, T, H, W]: every frame of a sample at its own level
    noise = torch.randn(video.shape, generator=torch.Generator().manual_seed(4))
    noised, labels = LowResNoiser()(video, torch.tensor([10, 300]), noise=noise)
    assert labels.tolist() == [10, 300]
    reference = _low_res_scheduler()
    for i, level in enumerate((10, 300)):
        a = reference.alphas_cumprod[level]
        torch.testing.assert_close(noised[i], a.sqrt() * video[i] + (1 - a).sqrt() * noise[i])


def test_levels_out_of_range_are_refused() -> None:
    noiser = LowResNoiser(max_noise_level=350)
    with pytest.raises(ConfigError, match=r"noise_level must be in \[0, 350\], got 351"):
        noiser(_image(), 351)
    with pytest.raises(ConfigError, match="got -1"):
        noiser(_image(), torch.tensor([5, -1]))
    with pytest.raises(ConfigError, match="integer"):
        noiser(_image(), 2.5)
    with pytest.raises(ConfigError, match="3 values for a batch of 2"):
        noiser(_image(), torch.tensor([1, 2, 3]))
    with pytest.raises(ConfigError, match="max_noise_level must be in"):
        LowResNoiser(max_noise_level=1000)


def test_training_levels_are_below_max_noise_level() -> None:
    noiser = LowResNoiser(max_noise_level=350)
    levels = noiser.sample_noise_level(5000, generator=torch.Generator().manual_seed(0))
    assert levels.dtype == torch.long and levels.min() == 0 and levels.max() == 349
    assert torch.equal(levels, noiser.sample_noise_level(5000, generator=torch.Generator().manual_seed(0)))
