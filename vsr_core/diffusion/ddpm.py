"""Discrete-time DDPM schedule (epsilon / v / x0 prediction) read from a diffusers scheduler config."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from vsr_core.diffusion.base import NoiseSchedule
from vsr_core.diffusion.broadcast import per_sample
from vsr_core.diffusion.samplers import SAMPLER_KINDS, make_ddpm_sampler
from vsr_core.diffusion.scheduler_config import init_kwargs, load_scheduler_config, scheduler_class, strip_meta
from vsr_core.errors import ConfigError

__all__ = ["PREDICTION_TYPES", "DDPMSchedule"]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

#: Sampler kind used when ``make_sampler(kind=None)`` and the config's own class is none of SAMPLER_KINDS.
FALLBACK_SAMPLER = "dpmsolver++"


class DDPMSchedule(NoiseSchedule):
    """Training-side quantities of a DDPM schedule, computed by the diffusers scheduler itself.

    ``config`` is a preset name (``cogvideox``, ``cogvideox-2b``, ``sd``, ``sd-v``, ``sd2.1-base``,
    ``sd-x4-upscaler``, ``sd-x4-upscaler-low-res``), a scheduler config dict, a
    ``scheduler_config.json`` / scheduler folder / model folder, or a scheduler instance; ``overrides``
    updates it (e.g. ``{"prediction_type": "v_prediction"}``). The scheduler class named by
    ``_class_name`` is instantiated and its ``alphas_cumprod`` read, so ``beta_schedule``,
    ``rescale_betas_zero_snr`` (Lin et al. 2024, Alg. 1) and CogVideoX's ``snr_shift_scale``
    (``alpha_bar / (s + (1 - s) alpha_bar)``) are exactly diffusers'.

    The time ``t`` of the protocol is the integer timestep index (an int or a ``[B]`` long tensor,
    broadcast over ``[B, C, T, H, W]``); the network receives it unchanged. With
    ``a = alphas_cumprod[t]`` (float64 buffer ``[num_train_timesteps]``):

    * ``x_t = sqrt(a) x0 + sqrt(1 - a) eps``             (:meth:`add_noise`; ``alpha_sigma = (sqrt(a), sqrt(1 - a))``)
    * ``v = sqrt(a) eps - sqrt(1 - a) x0``               (:meth:`velocity`, Salimans & Ho 2022)
    * ``x0 = sqrt(a) x_t - sqrt(1 - a) v``, ``eps = sqrt(1 - a) x_t + sqrt(a) v``
    * ``x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)``, ``eps = (x_t - sqrt(a) x0) / sqrt(1 - a)``
    * ``snr(t) = a / (1 - a)`` (0 at the last step of a zero-terminal-SNR schedule).
    """

    default_class = "DDPMScheduler"

    def __init__(
        self, config: str | dict[str, Any] | SchedulerMixin = "cogvideox", overrides: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        cfg = {**load_scheduler_config(config, self.default_class), **(overrides or {})}
        cls = scheduler_class(cfg["_class_name"])
        if (
            cls.__name__.startswith("FlowMatch")
            or cfg.get("use_flow_sigmas")
            or cfg.get("prediction_type") == "flow_prediction"
        ):
            raise ConfigError(f"{cls.__name__} config is a flow-matching schedule; use FlowMatchingSchedule for it")
        # Computed on the CPU even under a meta-device init context (_apply restores it after to_empty()).
        with torch.device("cpu"):
            scheduler = cls.from_config(init_kwargs(cls, strip_meta(cfg)))
        if not hasattr(scheduler, "alphas_cumprod"):
            raise ConfigError(
                f"{cls.__name__} has no alphas_cumprod; DDPMSchedule needs a DDPM-family scheduler config"
            )
        # Keys the source config left to the class default stay marked as such (as diffusers' own
        # from_config does), so a sampler of another class takes *its* default for them.
        defaults = set(cfg.get("_use_default_values", [])) | set(scheduler.config.get("_use_default_values", []))
        defaults -= set(overrides or {})
        self.config = {**dict(scheduler.config), "_class_name": cls.__name__, "_use_default_values": sorted(defaults)}
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

    # ----------------------------------------------------------------- per-timestep coefficients
    def alpha_bar(self, t: int | torch.Tensor) -> torch.Tensor:
        """``alphas_cumprod[t]`` in float64, shaped like ``t``, on the schedule's device."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device)
        if t.is_floating_point():
            raise ConfigError("DDPM timesteps are integers in [0, num_train_timesteps); got a float tensor")
        return self.alphas_cumprod[t.long()]

    def alpha_sigma(self, t: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sqrt(a), sqrt(1 - a))`` in float64, shaped like ``t``."""
        a = self.alpha_bar(t)
        return a.sqrt(), (1.0 - a).sqrt()

    def snr(self, t: int | torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ``a / (1 - a)`` (float64, shaped like ``t``)."""
        a = self.alpha_bar(t)
        return a / (1.0 - a)

    def model_timestep(self, t: int | torch.Tensor) -> torch.Tensor:
        """The network's timestep input: the index ``t`` itself (long, shaped like ``t``)."""
        t = torch.as_tensor(t)
        if t.is_floating_point():
            raise ConfigError("DDPM timesteps are integers in [0, num_train_timesteps); got a float tensor")
        return t.long()

    def _coefs(self, t: int | torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha, sigma = self.alpha_sigma(t)
        return per_sample(alpha, like), per_sample(sigma, like)

    # ----------------------------------------------------------------- forward process and conversions
    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """``v = sqrt(a) noise - sqrt(1 - a) x0`` (equals ``DDPMScheduler.get_velocity``)."""
        s, n = self._coefs(t, x0)
        return s * noise - n * x0

    def x0_from_v(self, x_t: torch.Tensor, v: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """``x0 = sqrt(a) x_t - sqrt(1 - a) v``."""
        s, n = self._coefs(t, x_t)
        return s * x_t - n * v

    def eps_from_v(self, x_t: torch.Tensor, v: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """``eps = sqrt(1 - a) x_t + sqrt(a) v``."""
        s, n = self._coefs(t, x_t)
        return n * x_t + s * v

    def x0_from_eps(self, x_t: torch.Tensor, eps: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Undefined (division by 0) where ``a = 0``, i.e. the last step of a zero-terminal-SNR schedule."""
        s, n = self._coefs(t, x_t)
        return (x_t - n * eps) / s

    def eps_from_x0(self, x_t: torch.Tensor, x0: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """``eps = (x_t - sqrt(a) x0) / sqrt(1 - a)``."""
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

    def to_noise(self, model_out: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
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
    def sample_t(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        low: int | None = None,
        high: int | None = None,
    ) -> torch.Tensor:
        """Uniform integer timesteps in ``[low, high)`` (default ``[0, num_train_timesteps)``), ``[batch_size]`` long."""
        low = 0 if low is None else int(low)
        high = self.num_train_timesteps if high is None else int(high)
        if not 0 <= low < high <= self.num_train_timesteps:
            raise ConfigError(f"timestep range [{low}, {high}) is not inside [0, {self.num_train_timesteps})")
        t = low + self._draw_indices(batch_size, high - low, generator)
        return t.to(device if device is not None else self.alphas_cumprod.device)

    def trailing_timesteps(self, num_inference_steps: int, start: int | None = None) -> list[int]:
        """Evenly spaced timesteps ending at ``stride - 1``: ``start, start - k, ..., k - 1`` (diffusers' ``trailing`` spacing).

        ``start`` (default ``num_train_timesteps - 1``) is the first timestep, e.g. SATB-VR's jump-start 399
        with 5 steps gives ``[399, 319, 239, 159, 79]``.
        """
        span = (self.num_train_timesteps - 1 if start is None else start) + 1
        if not 1 <= num_inference_steps <= span <= self.num_train_timesteps:
            raise ConfigError(f"cannot place {num_inference_steps} steps below timestep {span - 1}")
        return [int(v) for v in np.round(np.arange(span, 0, -span / num_inference_steps)).astype(np.int64) - 1]

    def default_sampler_kind(self) -> str:
        """The kind of :data:`SAMPLER_KINDS` whose class is the config's own (else ``dpmsolver++``)."""
        native = {cls.__name__: kind for kind, (cls, _) in SAMPLER_KINDS.items()}
        return native.get(self.scheduler_class.__name__, FALLBACK_SAMPLER)

    def make_sampler(
        self,
        kind: str | None = None,
        timesteps: list[int] | None = None,
        num_inference_steps: int | None = None,
        **overrides: Any,
    ) -> SchedulerMixin:
        """A diffusers sampler on this schedule's table (see :func:`~vsr_core.diffusion.samplers.make_ddpm_sampler`).

        ``timesteps`` are used exactly as given; ``num_inference_steps`` gives the grid diffusers'
        own scheduler of ``kind`` builds from this config (its ``timestep_spacing`` and
        ``steps_offset``). ``kind=None`` is :meth:`default_sampler_kind` (the base model's own
        scheduler class, e.g. ``cogvideox_ddim`` for CogVideoX, ``ddim`` for the SD x4 upscaler).
        """
        return make_ddpm_sampler(
            kind or self.default_sampler_kind(),
            self.config,
            self.alphas_cumprod,
            None if timesteps is None else list(timesteps),
            num_inference_steps=num_inference_steps,
            **overrides,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.scheduler_class.__name__}, num_train_timesteps={self.num_train_timesteps}, "
            f"prediction_type={self.prediction_type}, "
            f"rescale_betas_zero_snr={self.config.get('rescale_betas_zero_snr', False)}"
        )
