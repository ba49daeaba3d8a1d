"""Flow-matching (rectified flow) schedule read from a diffusers ``FlowMatchEulerDiscreteScheduler`` config."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import nn

from vsr_core.diffusion.broadcast import per_sample
from vsr_core.diffusion.scheduler_config import PRESETS, init_kwargs, load_scheduler_config, strip_meta
from vsr_core.errors import ConfigError


def _flow_config(cfg: dict[str, Any]) -> dict[str, Any]:
    # Wan's diffusers folders ship UniPC / DPM-Solver configs in flow mode ("use_flow_sigmas",
    # "flow_shift"); their training schedule is the flow-matching one with shift = flow_shift.
    name = cfg.get("_class_name", "FlowMatchEulerDiscreteScheduler")
    if name == "FlowMatchEulerDiscreteScheduler":
        return strip_meta(cfg)
    if cfg.get("use_flow_sigmas") or cfg.get("prediction_type") == "flow_prediction":
        return {"num_train_timesteps": cfg.get("num_train_timesteps", 1000), "shift": cfg.get("flow_shift", 1.0)}
    raise ConfigError(f"{name} config is not a flow-matching schedule; use DDPMSchedule for it")


class FlowMatchingSchedule(nn.Module):
    """Flow matching ``x_sigma = (1 - sigma) x0 + sigma * noise`` with diffusers' shifted sigma grid.

    ``config`` is a preset (``wan``: shift 3, ``flow``: shift 1), a config dict, a scheduler folder /
    file / model folder (Wan's UniPC-in-flow-mode configs are read as ``shift = flow_shift``) or a
    scheduler instance; ``overrides`` updates it. The training grid ``sigmas`` ``[N]`` (descending,
    ``sigma_i = shift * s / (1 + (shift - 1) s)`` for ``s = (N - i) / N``) and ``timesteps = sigmas * N``
    are read from ``FlowMatchEulerDiscreteScheduler`` itself. ``sigma`` arguments are floats in
    ``[0, 1]``, scalars or ``[B]``, broadcast over ``[B, C, T, H, W]``:

    * ``x_sigma = (1 - sigma) x0 + sigma * noise``                      (:meth:`add_noise`, PS-SR Eq. 2)
    * ``x_sigma = (1 - sigma) x_hq + sigma * x_lq`` (LQ -> HQ flow)     (:meth:`interpolate`, PS-SR Eq. 4)
    * velocity ``v = noise - x0`` (``= x_lq - x_hq`` for the paired flow, PS-SR Eq. 7)
    * ``x0 = x_sigma - sigma v``, ``noise = x_sigma + (1 - sigma) v``
    * Euler step ``x_next = x_sigma + (sigma_next - sigma) v``          (PS-SR Eq. 3)
    """

    def __init__(self, config: str | dict[str, Any] | SchedulerMixin = "wan", overrides: dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = {**_flow_config(load_scheduler_config(config, "FlowMatchEulerDiscreteScheduler")), **(overrides or {})}
        if cfg.get("use_dynamic_shifting"):
            raise ConfigError("use_dynamic_shifting (resolution-dependent shift) is not supported; set a fixed shift")
        # Computed on the CPU even under a meta-device init context (_apply restores it after to_empty()).
        with torch.device("cpu"):
            scheduler = FlowMatchEulerDiscreteScheduler.from_config(init_kwargs(FlowMatchEulerDiscreteScheduler, cfg))
        self.config = {**dict(scheduler.config), "_class_name": "FlowMatchEulerDiscreteScheduler"}
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.shift = float(scheduler.config.shift)
        self._grid = (scheduler.sigmas.detach().float().clone(), scheduler.timesteps.detach().float().clone())
        self.register_buffer("sigmas", self._grid[0].clone(), persistent=False)
        self.register_buffer("timesteps", self._grid[1].clone(), persistent=False)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # Reduced-precision casts (.half(), bf16-true) would round the sigma grid: keep float32, follow the device.
        super()._apply(fn, recurse)
        self.sigmas = self._grid[0].to(self.sigmas.device)
        self.timesteps = self._grid[1].to(self.timesteps.device)
        return self

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> FlowMatchingSchedule:
        """A schedule from :data:`~vsr_core.diffusion.scheduler_config.PRESETS` (``wan`` or ``flow``)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown schedule preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(name, overrides)

    @classmethod
    def from_pretrained(cls, path_or_id: str, subfolder: str = "scheduler", **overrides: Any) -> FlowMatchingSchedule:
        """The schedule stored in ``<path>/<subfolder>/scheduler_config.json`` (a local model folder or hub id)."""
        from vsr_core.pretrained import resolve_pretrained

        return cls(str(resolve_pretrained(path_or_id, subfolder)), overrides)

    # ----------------------------------------------------------------- sigma <-> timestep
    def shift_sigma(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """``shift * s / (1 + (shift - 1) s)``: the static shift diffusers applies to sigmas (SD3 / Wan)."""
        s = torch.as_tensor(sigma, dtype=torch.float32)
        return self.shift * s / (1 + (self.shift - 1) * s)

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """The model's timestep input for ``sigma``: ``sigma * num_train_timesteps``."""
        return torch.as_tensor(sigma, dtype=torch.float32) * self.num_train_timesteps

    def sample_sigmas(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Training sigmas ``[batch_size]``: uniform indices into the shifted grid (diffusers' training scripts)."""
        gen_device = generator.device if generator is not None else "cpu"
        idx = torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator, device=gen_device)
        return self.sigmas[idx.to(self.sigmas.device)].to(device if device is not None else self.sigmas.device)

    # ----------------------------------------------------------------- schedule protocol (minimal; see ddpm.py)
    def sample_t(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        low: float | None = None,
        high: float | None = None,
    ) -> torch.Tensor:
        """Schedule-native training times ``[batch_size]``: sigmas drawn uniformly from the grid points whose
        model timestep ``sigma * N`` lies in ``[low, high]`` (default: the whole grid)."""
        keep = torch.ones_like(self.timesteps, dtype=torch.bool)
        if low is not None:
            keep &= self.timesteps >= low
        if high is not None:
            keep &= self.timesteps <= high
        grid = self.sigmas[keep]
        if grid.numel() == 0:
            raise ConfigError(f"no sigma of the {self.num_train_timesteps}-step grid has a timestep in [{low}, {high}]")
        gen_device = generator.device if generator is not None else "cpu"
        idx = torch.randint(0, grid.numel(), (batch_size,), generator=generator, device=gen_device)
        return grid[idx.to(grid.device)].to(device if device is not None else grid.device)

    def model_timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """What the network receives for ``sigma``: ``sigma * num_train_timesteps`` (:meth:`timestep`)."""
        return self.timestep(sigma)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The regression target: the velocity ``noise - x0``."""
        return self.velocity(x0, noise)

    def to_x0(self, model_out: torch.Tensor, x_sigma: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Clean-sample estimate from a velocity prediction: ``x_sigma - sigma v``."""
        return self.x0_from_velocity(x_sigma, model_out, sigma)

    # ----------------------------------------------------------------- interpolation and conversions
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """``(1 - sigma) x0 + sigma * noise`` (equals ``FlowMatchEulerDiscreteScheduler.scale_noise``)."""
        s = per_sample(sigma, x0)
        return (1 - s) * x0 + s * noise

    def interpolate(self, x_hq: torch.Tensor, x_lq: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """LQ -> HQ flow of PS-SR: ``(1 - sigma) x_hq + sigma * x_lq`` (``x_lq`` = the LQ latents at sigma 1)."""
        return self.add_noise(x_hq, x_lq, sigma)

    @staticmethod
    def velocity(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The regression target ``d x_sigma / d sigma = noise - x0`` (``x_lq - x_hq`` for the paired flow)."""
        return noise - x0

    def x0_from_velocity(self, x_sigma: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        return x_sigma - per_sample(sigma, x_sigma) * v

    def noise_from_velocity(self, x_sigma: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        return x_sigma + (1 - per_sample(sigma, x_sigma)) * v

    def step(
        self, x_sigma: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor | float, sigma_next: torch.Tensor | float
    ) -> torch.Tensor:
        """One Euler step ``x + (sigma_next - sigma) v`` (what ``FlowMatchEulerDiscreteScheduler.step`` does)."""
        return x_sigma + (per_sample(sigma_next, x_sigma) - per_sample(sigma, x_sigma)) * v

    # ----------------------------------------------------------------- sampler
    def make_sampler(
        self,
        kind: str = "euler",
        sigmas: list[float] | None = None,
        timesteps: list[float] | None = None,
        num_inference_steps: int | None = None,
        apply_shift: bool = True,
        **overrides: Any,
    ) -> FlowMatchEulerDiscreteScheduler:
        """A ``FlowMatchEulerDiscreteScheduler`` on this schedule (``kind="euler"``, the only kind).

        Give ``sigmas`` (descending in ``(0, 1]``), or ``timesteps`` (converted to ``sigmas = t / N``),
        or ``num_inference_steps`` (diffusers' even spacing). diffusers shifts the given sigmas with
        ``shift``; ``apply_shift=False`` uses them exactly as given. A final sigma 0 is appended.
        """
        if kind != "euler":
            raise ConfigError(f"unknown flow-matching sampler kind {kind!r}; only 'euler' is available")
        if sum(v is not None for v in (sigmas, timesteps, num_inference_steps)) != 1:
            raise ConfigError("make_sampler needs exactly one of sigmas, timesteps or num_inference_steps")
        if timesteps is not None:
            sigmas = [float(t) / self.num_train_timesteps for t in timesteps]
        if sigmas is not None:
            sigmas = [float(s) for s in sigmas]
            if any(a <= b for a, b in pairwise(sigmas)) or sigmas[-1] <= 0 or sigmas[0] > 1:
                raise ConfigError(f"sigmas must strictly decrease inside (0, 1], got {sigmas}")
        cfg = {**strip_meta(self.config), **overrides}
        if not apply_shift:
            cfg["shift"] = 1.0
        sampler = FlowMatchEulerDiscreteScheduler.from_config(init_kwargs(FlowMatchEulerDiscreteScheduler, cfg))
        if sigmas is not None:
            sampler.set_timesteps(sigmas=sigmas)
        else:
            sampler.set_timesteps(num_inference_steps=num_inference_steps)
        return sampler

    def extra_repr(self) -> str:
        return f"num_train_timesteps={self.num_train_timesteps}, shift={self.shift}"
