"""The noise-schedule protocol shared by the DDPM family and flow matching.

A method written against :class:`NoiseSchedule` trains and samples with either schedule unchanged:

.. code-block:: python

    t = schedule.sample_t(batch_size, generator, device)          # schedule-native time
    x_t = schedule.add_noise(x0, noise, t)
    out = model(x_t, schedule.model_timestep(t))
    loss = (out - schedule.target(x0, noise, t)).square().mean()
    sampler = schedule.make_sampler(num_inference_steps=20)       # a configured diffusers scheduler

``t`` is what the schedule is parameterised by: an integer timestep index for the DDPM family, a
float sigma for flow matching. It is a scalar or a ``[B]`` tensor, broadcast over data of any rank
(``[B, C, T, H, W]`` latents, ``[B, C, H, W]`` images).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import nn

from vsr_core.diffusion.broadcast import per_sample
from vsr_core.diffusion.scheduler_config import PRESETS
from vsr_core.errors import ConfigError

__all__ = ["NoiseSchedule"]


class NoiseSchedule(nn.Module, ABC):
    """Abstract noise schedule read from a diffusers scheduler config (subclasses: DDPM, flow matching).

    Every schedule is built as ``Schedule(config, overrides)`` where ``config`` is a preset name of
    :data:`~vsr_core.diffusion.scheduler_config.PRESETS`, a config dict, a ``scheduler_config.json``,
    a scheduler / model folder or a scheduler instance. Its derived tables are non-persistent buffers
    that follow ``.to(device)`` but keep their precision under ``.half()`` / bf16 casts.

    Attributes:
        config: the full diffusers config (with ``_class_name``) the schedule was built from.
        num_train_timesteps: ``N``; model timesteps lie in ``[0, N]``.
        prediction_type: what the network predicts: ``epsilon``, ``v_prediction``, ``sample`` or ``flow``.
    """

    #: The diffusers class a config dict without ``_class_name`` is read as.
    default_class: ClassVar[str]
    config: dict[str, Any]
    num_train_timesteps: int
    prediction_type: str

    # ----------------------------------------------------------------- construction (shared)
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        """A schedule from :data:`~vsr_core.diffusion.scheduler_config.PRESETS`, e.g. ``preset("cogvideox")``."""
        if name not in PRESETS:
            raise ConfigError(f"unknown schedule preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(name, overrides)

    @classmethod
    def from_pretrained(cls, path_or_id: str, subfolder: str = "scheduler", **overrides: Any) -> Self:
        """The schedule stored in ``<path>/<subfolder>/scheduler_config.json`` (a local model folder or hub id)."""
        from vsr_core.pretrained import resolve_pretrained

        return cls(str(resolve_pretrained(path_or_id, subfolder)), overrides)

    # ----------------------------------------------------------------- the protocol
    @abstractmethod
    def sample_t(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        low: float | None = None,
        high: float | None = None,
    ) -> torch.Tensor:
        """Training times ``[batch_size]`` whose model timestep lies in ``[low, high)`` (model-timestep units).

        Reproducible for a seeded ``generator``; on ``device`` (default: the schedule's).
        """

    @abstractmethod
    def alpha_sigma(self, t: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)`` shaped like ``t``: ``x_t = alpha_t x0 + sigma_t noise``."""

    @abstractmethod
    def snr(self, t: float | torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ``(alpha_t / sigma_t)^2``, float64, shaped like ``t``."""

    @abstractmethod
    def model_timestep(self, t: float | torch.Tensor) -> torch.Tensor:
        """The timestep the network receives for time ``t``, shaped like ``t``."""

    @abstractmethod
    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The regression target ``[B, ...]`` of the network for clean ``x0`` and ``noise`` at ``t``."""

    @abstractmethod
    def to_x0(self, model_out: torch.Tensor, x_t: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """Clean-sample estimate ``[B, ...]`` from the network output at ``x_t``."""

    @abstractmethod
    def to_noise(self, model_out: torch.Tensor, x_t: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """Noise estimate ``[B, ...]`` from the network output at ``x_t``."""

    @abstractmethod
    def make_sampler(
        self,
        kind: str | None = None,
        timesteps: list[int] | list[float] | None = None,
        num_inference_steps: int | None = None,
        **overrides: Any,
    ) -> SchedulerMixin:
        """A configured diffusers sampler; ``kind=None`` is the schedule's natural one.

        ``timesteps`` are used exactly as given; ``num_inference_steps`` gives the grid diffusers'
        own scheduler produces for this config.
        """

    # ----------------------------------------------------------------- shared arithmetic
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """``x_t = alpha_t x0 + sigma_t noise`` (``[B, ...]``, dtype of ``x0``)."""
        alpha, sigma = self.alpha_sigma(t)
        return per_sample(alpha, x0) * x0 + per_sample(sigma, x0) * noise

    @staticmethod
    def _draw_indices(batch_size: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
        """``[batch_size]`` uniform integers in ``[0, count)`` drawn on the generator's device."""
        gen_device = generator.device if generator is not None else "cpu"
        return torch.randint(0, count, (batch_size,), generator=generator, device=gen_device)
