"""Discrete-time DDPM schedule (epsilon / v / x0 prediction) read from a diffusers scheduler config."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import nn

from vsr_core.diffusion.broadcast import per_sample
from vsr_core.diffusion.samplers import make_ddpm_sampler
from vsr_core.diffusion.scheduler_config import PRESETS, init_kwargs, load_scheduler_config, scheduler_class, strip_meta
from vsr_core.errors import ConfigError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class DDPMSchedule(nn.Module):
    """Training-side quantities of a DDPM schedule, computed by the diffusers scheduler itself.

    ``config`` is a preset name (``cogvideox``, ``cogvideox-2b``, ``sd``, ``sd-v``,
    ``sd-x4-upscaler``), a scheduler config dict, a ``scheduler_config.json`` / scheduler folder /
    model folder, or a scheduler instance; ``overrides`` updates it (e.g.
    ``{"prediction_type": "v_prediction"}``). The scheduler class named by ``_class_name`` is
    instantiated and its ``alphas_cumprod`` read, so ``beta_schedule``, ``rescale_betas_zero_snr``
    (Lin et al. 2024, Alg. 1) and CogVideoX's ``snr_shift_scale``
    (``alpha_bar / (s + (1 - s) alpha_bar)``) are exactly diffusers'.

    With ``a = alphas_cumprod[t]`` (float64 buffer ``[num_train_timesteps]``) and ``t`` an int or a
    ``[B]`` tensor broadcast over ``[B, C, T, H, W]``:

    * ``x_t = sqrt(a) x0 + sqrt(1 - a) eps``             (:meth:`add_noise`)
    * ``v = sqrt(a) eps - sqrt(1 - a) x0``               (:meth:`velocity`, Salimans & Ho 2022)
    * ``x0 = sqrt(a) x_t - sqrt(1 - a) v``, ``eps = sqrt(1 - a) x_t + sqrt(a) v``
    * ``x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)``, ``eps = (x_t - sqrt(a) x0) / sqrt(1 - a)``
    * ``snr(t) = a / (1 - a)`` (0 at the last step of a zero-terminal-SNR schedule).
    """

    def __init__(
        self, config: str | dict[str, Any] | SchedulerMixin = "cogvideox", overrides: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        cfg = {**load_scheduler_config(config, "DDPMScheduler"), **(overrides or {})}
        cls = scheduler_class(cfg["_class_name"])
        if cls.__name__.startswith("FlowMatch") or cfg.get("use_flow_sigmas") or cfg.get("prediction_type") == "flow_prediction":
            raise ConfigError(f"{cls.__name__} config is a flow-matching schedule; use FlowMatchingSchedule for it")
        # Computed on the CPU even under a meta-device init context (_apply restores it after to_empty()).
        with torch.device("cpu"):
            scheduler = cls.from_config(init_kwargs(cls, strip_meta(cfg)))
        if not hasattr(scheduler, "alphas_cumprod"):
            raise ConfigError(f"{cls.__name__} has no alphas_cumprod; DDPMSchedule needs a DDPM-family scheduler config")
        self.config = {**dict(scheduler.config), "_class_name": cls.__name__}
        self.scheduler_class = cls
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.prediction_type = str(scheduler.config.prediction_type)
        if self.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"prediction_type {self.prediction_type!r} is not one of {', '.join(PREDICTION_TYPES)}")
        # Non-persistent: derived from the config, moves with .to(device) but stays out of checkpoints.
        self._alphas_cumprod64 = scheduler.alphas_cumprod.detach().to(torch.float64).clone()
        self.register_buffer("alphas_cumprod", self._alphas_cumprod64.clone(), persistent=False)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # .half() / .to(torch.bfloat16) / bf16-true precision cast floating buffers: keep the table in
        # float64 and let only its device follow.
        super()._apply(fn, recurse)
        self.alphas_cumprod = self._alphas_cumprod64.to(self.alphas_cumprod.device)
        return self

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DDPMSchedule:
        """A schedule from :data:`~vsr_core.diffusion.scheduler_config.PRESETS`, e.g. ``preset("cogvideox")``."""
        if name not in PRESETS:
            raise ConfigError(f"unknown schedule preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(name, overrides)

    @classmethod
    def from_pretrained(cls, path_or_id: str, subfolder: str = "scheduler", **overrides: Any) -> DDPMSchedule:
        """The schedule stored in ``<path>/<subfolder>/scheduler_config.json`` (a local model folder or hub id)."""
        from vsr_core.pretrained import resolve_pretrained

        return cls(str(resolve_pretrained(path_or_id, subfolder)), overrides)

    # ----------------------------------------------------------------- per-timestep coefficients
    def alpha_bar(self, t: int | torch.Tensor) -> torch.Tensor:
        """``alphas_cumprod[t]`` in float64, shaped like ``t``."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device)
        if t.is_floating_point():
            raise ConfigError("DDPM timesteps are integers in [0, num_train_timesteps); got a float tensor")
        return self.alphas_cumprod[t.long()]

    def snr(self, t: int | torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ``a / (1 - a)`` (float64, shaped like ``t``)."""
        a = self.alpha_bar(t)
        return a / (1.0 - a)

    def _coefs(self, t: int | torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.alpha_bar(t)
        return per_sample(a.sqrt(), like), per_sample((1.0 - a).sqrt(), like)

    # ----------------------------------------------------------------- forward process and conversions
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(a) x0 + sqrt(1 - a) noise`` (equals ``DDPMScheduler.add_noise``)."""
        s, n = self._coefs(t, x0)
        return s * x0 + n * noise

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """``v = sqrt(a) noise - sqrt(1 - a) x0`` (equals ``DDPMScheduler.get_velocity``)."""
        s, n = self._coefs(t, x0)
        return s * noise - n * x0

    def x0_from_v(self, x_t: torch.Tensor, v: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        s, n = self._coefs(t, x_t)
        return s * x_t - n * v

    def eps_from_v(self, x_t: torch.Tensor, v: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        s, n = self._coefs(t, x_t)
        return n * x_t + s * v

    def x0_from_eps(self, x_t: torch.Tensor, eps: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Undefined (division by 0) where ``a = 0``, i.e. the last step of a zero-terminal-SNR schedule."""
        s, n = self._coefs(t, x_t)
        return (x_t - n * eps) / s

    def eps_from_x0(self, x_t: torch.Tensor, x0: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        s, n = self._coefs(t, x_t)
        return (x_t - s * x0) / n

    def v_from_x0(self, x_t: torch.Tensor, x0: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """The ``v`` a perfect model outputs at ``x_t`` for clean sample ``x0``: ``(sqrt(a) x_t - x0) / sqrt(1 - a)``."""
        s, n = self._coefs(t, x_t)
        return (s * x_t - x0) / n

    def to_x0(self, model_out: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Clean-sample estimate from the model output, according to ``prediction_type``."""
        if self.prediction_type == "v_prediction":
            return self.x0_from_v(x_t, model_out, t)
        if self.prediction_type == "epsilon":
            return self.x0_from_eps(x_t, model_out, t)
        return model_out

    def to_eps(self, model_out: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Noise estimate from the model output, according to ``prediction_type``."""
        if self.prediction_type == "v_prediction":
            return self.eps_from_v(x_t, model_out, t)
        if self.prediction_type == "epsilon":
            return model_out
        return self.eps_from_x0(x_t, model_out, t)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """The regression target of the model for ``prediction_type``: ``v``, ``noise`` or ``x0``."""
        if self.prediction_type == "v_prediction":
            return self.velocity(x0, noise, t)
        return noise if self.prediction_type == "epsilon" else x0

    # ----------------------------------------------------------------- training / sampling helpers
    def sample_timesteps(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        low: int = 0,
        high: int | None = None,
    ) -> torch.Tensor:
        """Uniform integer timesteps in ``[low, high)`` (default the whole schedule), ``[batch_size]`` long."""
        high = self.num_train_timesteps if high is None else high
        if not 0 <= low < high <= self.num_train_timesteps:
            raise ConfigError(f"timestep range [{low}, {high}) is not inside [0, {self.num_train_timesteps})")
        gen_device = generator.device if generator is not None else "cpu"
        t = torch.randint(low, high, (batch_size,), generator=generator, device=gen_device)
        return t.to(device if device is not None else self.alphas_cumprod.device)

    # ----------------------------------------------------------------- schedule protocol (minimal; see flow_matching.py)
    def sample_t(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        low: int | None = None,
        high: int | None = None,
    ) -> torch.Tensor:
        """Schedule-native training times ``[batch_size]``: integer timesteps in ``[low, high)`` (:meth:`sample_timesteps`)."""
        return self.sample_timesteps(batch_size, generator, device, 0 if low is None else int(low), high)

    def model_timestep(self, t: int | torch.Tensor) -> torch.Tensor:
        """What the network receives for ``t``: the integer timestep itself."""
        return torch.as_tensor(t)

    def trailing_timesteps(self, num_inference_steps: int, start: int | None = None) -> list[int]:
        """Evenly spaced timesteps ending at ``stride - 1``: ``start, start - k, ..., k - 1`` (diffusers' ``trailing`` spacing).

        ``start`` (default ``num_train_timesteps - 1``) is the first timestep, e.g. SATB-VR's jump-start 399
        with 5 steps gives ``[399, 319, 239, 159, 79]``.
        """
        span = (self.num_train_timesteps - 1 if start is None else start) + 1
        if not 1 <= num_inference_steps <= span <= self.num_train_timesteps:
            raise ConfigError(f"cannot place {num_inference_steps} steps below timestep {span - 1}")
        return [int(v) for v in np.round(np.arange(span, 0, -span / num_inference_steps)).astype(np.int64) - 1]

    def make_sampler(
        self,
        kind: str = "dpmsolver++",
        timesteps: list[int] | None = None,
        num_inference_steps: int | None = None,
        **overrides: Any,
    ) -> SchedulerMixin:
        """A diffusers sampler on this schedule whose ``timesteps`` are exactly ``timesteps``.

        See :func:`vsr_core.diffusion.samplers.make_ddpm_sampler` for the kinds and how custom
        timesteps are honoured.
        """
        if timesteps is None:
            if num_inference_steps is None:
                raise ConfigError("make_sampler needs timesteps or num_inference_steps")
            timesteps = self.trailing_timesteps(num_inference_steps)
        return make_ddpm_sampler(kind, self.config, self.alphas_cumprod, list(timesteps), **overrides)

    def extra_repr(self) -> str:
        return (
            f"{self.scheduler_class.__name__}, num_train_timesteps={self.num_train_timesteps}, "
            f"prediction_type={self.prediction_type}, rescale_betas_zero_snr={self.config.get('rescale_betas_zero_snr', False)}"
        )
