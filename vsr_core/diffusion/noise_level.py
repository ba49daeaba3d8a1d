"""Noise-level conditioning of a low-resolution image, as the Stable Diffusion x4 upscaler does it.

The SD x4 upscaler's UNet sees the low-resolution image concatenated to its latents after noise was
added to it at a chosen ``noise_level``, and receives ``noise_level`` as ``class_labels``. The noise
follows a DDPM schedule of its own (diffusers' ``low_res_scheduler``; the original
``ImageConcatWithNoiseAugmentation`` of ``configs/stable-diffusion/x4-upscaling.yaml``), and levels
above ``max_noise_level`` (350) were never trained, so ``StableDiffusionUpscalePipeline`` refuses them.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from vsr_core.diffusion.ddpm import DDPMSchedule
from vsr_core.errors import ConfigError

__all__ = ["LowResNoiser"]


class LowResNoiser(nn.Module):
    """``noiser(image [B, C, ...], noise_level) -> (noised [B, C, ...], class_labels [B] long)``.

    ``noised = sqrt(a) image + sqrt(1 - a) noise`` with ``a = alphas_cumprod[noise_level]`` of the
    low-resolution schedule (equals ``low_res_scheduler.add_noise`` in
    ``StableDiffusionUpscalePipeline``), ``class_labels = noise_level`` per sample for the UNet.
    ``image`` is an image batch ``[B, C, H, W]`` or a video ``[B, C, T, H, W]`` (every frame of a
    sample gets the same level), in ``[-1, 1]``.

    Args:
        max_noise_level: the highest level accepted (350 for the SD x4 upscaler; its training drew
            levels from ``[0, max_noise_level)``, see :meth:`sample_noise_level`).
        config: the low-resolution schedule: a preset (default ``sd-x4-upscaler-low-res``), a
            scheduler config dict / file / folder or a scheduler instance (e.g. a pipeline's
            ``low_res_scheduler``).
    """

    def __init__(
        self, max_noise_level: int = 350, config: str | dict[str, Any] | SchedulerMixin = "sd-x4-upscaler-low-res"
    ) -> None:
        super().__init__()
        self.schedule = DDPMSchedule(config)
        if isinstance(max_noise_level, bool) or not isinstance(max_noise_level, int):
            raise ConfigError(f"max_noise_level must be an integer, got {max_noise_level!r}")
        if not 0 <= max_noise_level < self.schedule.num_train_timesteps:
            raise ConfigError(
                f"max_noise_level must be in [0, {self.schedule.num_train_timesteps}), got {max_noise_level}"
            )
        self.max_noise_level = max_noise_level

    def noise_levels(self, noise_level: int | torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
        """``noise_level`` (an int or ``[B]`` / ``[1]`` integers) checked and expanded to ``[batch_size]`` long."""
        levels = torch.as_tensor(noise_level)
        if levels.is_floating_point() or levels.dtype == torch.bool or levels.ndim > 1:
            raise ConfigError(f"noise_level must be an integer or a [B] integer tensor, got {noise_level!r}")
        levels = levels.to(device=device, dtype=torch.long).reshape(-1)
        if levels.numel() not in (1, batch_size):
            raise ConfigError(f"noise_level has {levels.numel()} values for a batch of {batch_size}")
        low, high = int(levels.min()), int(levels.max())
        if low < 0 or high > self.max_noise_level:
            raise ConfigError(f"noise_level must be in [0, {self.max_noise_level}], got {low if low < 0 else high}")
        return levels.expand(batch_size).clone()

    def sample_noise_level(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Training levels ``[batch_size]`` long, uniform in ``[0, max_noise_level)`` (``ImageConcatWithNoiseAugmentation``)."""
        if self.max_noise_level < 1:
            raise ConfigError("max_noise_level 0 leaves no training noise level to draw; use noise_level=0")
        gen_device = generator.device if generator is not None else "cpu"
        levels = torch.randint(0, self.max_noise_level, (batch_size,), generator=generator, device=gen_device)
        return levels.to(device if device is not None else self.schedule.alphas_cumprod.device)

    def forward(
        self,
        image: torch.Tensor,
        noise_level: int | torch.Tensor,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise ``image`` at ``noise_level``; ``noise`` (default: ``randn`` from ``generator``, as the pipeline draws it)."""
        levels = self.noise_levels(noise_level, image.shape[0], image.device)
        if noise is None:
            noise = randn_tensor(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        elif noise.shape != image.shape:
            raise ValueError(f"noise {list(noise.shape)} must have the image's shape {list(image.shape)}")
        return self.schedule.add_noise(image, noise, levels), levels

    def extra_repr(self) -> str:
        return f"max_noise_level={self.max_noise_level}"
