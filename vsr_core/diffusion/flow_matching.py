"""Flow-matching (rectified flow) schedule read from a diffusers ``FlowMatchEulerDiscreteScheduler`` config."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from vsr_core.diffusion.base import NoiseSchedule
from vsr_core.diffusion.broadcast import per_sample
from vsr_core.diffusion.scheduler_config import init_kwargs, load_scheduler_config, strip_meta
from vsr_core.errors import ConfigError

__all__ = ["FLOW_SAMPLER_KINDS", "FlowMatchingSchedule"]

#: The flow-matching sampler kinds (``FlowMatchEulerDiscreteScheduler``).
FLOW_SAMPLER_KINDS = ("euler",)

#: Sampler config entries that would move explicit sigmas away from the values given.
_EXACT_SIGMAS = {
    "shift": 1.0,
    "use_dynamic_shifting": False,
    "shift_terminal": None,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
}


def _flow_config(cfg: dict[str, Any]) -> dict[str, Any]:
    # Wan's diffusers folders ship UniPC / DPM-Solver configs in flow mode ("use_flow_sigmas",
    # "flow_shift"); their training schedule is the flow-matching one with shift = flow_shift.
    name = cfg.get("_class_name", "FlowMatchEulerDiscreteScheduler")
    if name == "FlowMatchEulerDiscreteScheduler":
        return strip_meta(cfg)
    if cfg.get("use_flow_sigmas") or cfg.get("prediction_type") == "flow_prediction":
        return {"num_train_timesteps": cfg.get("num_train_timesteps", 1000), "shift": cfg.get("flow_shift", 1.0)}
    raise ConfigError(f"{name} config is not a flow-matching schedule; use DDPMSchedule for it")


def _as_sigma(sigma: float | torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma)
    if not sigma.is_floating_point():
        if sigma.ndim > 0:  # a long tensor is almost surely a batch of DDPM timestep indices
            raise ConfigError("flow-matching times are float sigmas in [0, 1]; got an integer tensor")
        sigma = sigma.double()
    return sigma


class FlowMatchingSchedule(NoiseSchedule):
    """Flow matching ``x_sigma = (1 - sigma) x0 + sigma * noise`` with diffusers' shifted sigma grid.

    ``config`` is a preset (``wan``: shift 3, ``flow``: shift 1), a config dict, a scheduler folder /
    file / model folder (Wan's UniPC-in-flow-mode configs are read as ``shift = flow_shift``) or a
    scheduler instance; ``overrides`` updates it. The training grid ``sigmas`` ``[N]`` (descending,
    ``sigma_i = shift * s / (1 + (shift - 1) s)`` for ``s = (N - i) / N``) and ``timesteps = sigmas * N``
    are read from ``FlowMatchEulerDiscreteScheduler`` itself.

    The time ``t`` of the protocol is ``sigma``: floats in ``[0, 1]``, scalars or ``[B]``, broadcast
    over ``[B, C, T, H, W]``; the network receives ``sigma * N`` (:meth:`model_timestep`) and predicts
    the velocity (``prediction_type = "flow"``):

    * ``x_sigma = (1 - sigma) x0 + sigma * noise``                      (:meth:`add_noise`, PS-SR Eq. 2)
    * ``x_sigma = (1 - sigma) x_hq + sigma * x_lq`` (LQ -> HQ flow)     (:meth:`interpolate`, PS-SR Eq. 4)
    * target ``v = noise - x0`` (``= x_lq - x_hq`` for the paired flow, PS-SR Eq. 7)
    * ``x0 = x_sigma - sigma v``, ``noise = x_sigma + (1 - sigma) v``   (:meth:`to_x0`, :meth:`to_noise`)
    * ``snr = ((1 - sigma) / sigma)^2``
    * Euler step ``x_next = x_sigma + (sigma_next - sigma) v``          (PS-SR Eq. 3)
    """

    default_class = "FlowMatchEulerDiscreteScheduler"
    prediction_type = "flow"

    def __init__(
        self, config: str | dict[str, Any] | SchedulerMixin = "wan", overrides: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        cfg = {**_flow_config(load_scheduler_config(config, self.default_class)), **(overrides or {})}
        if cfg.get("use_dynamic_shifting"):
            raise ConfigError("use_dynamic_shifting (resolution-dependent shift) is not supported; set a fixed shift")
        # Computed on the CPU even under a meta-device init context (_apply restores it after to_empty()).
        with torch.device("cpu"):
            scheduler = FlowMatchEulerDiscreteScheduler.from_config(init_kwargs(FlowMatchEulerDiscreteScheduler, cfg))
        self.config = {**dict(scheduler.config), "_class_name": self.default_class}
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

    # ----------------------------------------------------------------- sigma <-> timestep
    def shift_sigma(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """``shift * s / (1 + (shift - 1) s)``: the static shift diffusers applies to sigmas (SD3 / Wan)."""
        s = torch.as_tensor(sigma, dtype=torch.float32)
        return self.shift * s / (1 + (self.shift - 1) * s)

    def model_timestep(self, t: float | torch.Tensor) -> torch.Tensor:
        """The network's timestep input for ``sigma = t``: ``sigma * num_train_timesteps`` (float32, shaped like ``t``)."""
        return _as_sigma(t).float() * self.num_train_timesteps

    def sample_t(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        low: float | None = None,
        high: float | None = None,
    ) -> torch.Tensor:
        """Training sigmas ``[batch_size]`` (float32): uniform picks from the shifted grid (diffusers' training scripts).

        Only grid entries whose model timestep ``sigma * N`` lies in ``[low, high)`` are drawn; the
        default is the whole grid, ``sigma = 1`` (model timestep ``N``) included. An explicit
        ``high=N`` therefore leaves ``sigma = 1`` out.
        """
        keep = torch.ones_like(self.timesteps, dtype=torch.bool)
        if low is not None:
            keep &= self.timesteps >= low
        if high is not None:
            keep &= self.timesteps < high
        if (low is not None and low < 0) or not bool(keep.any()):
            raise ConfigError(
                f"no training sigma has a model timestep in [{low}, {high}); the grid spans "
                f"[{self.timesteps.min().item():g}, {self.timesteps.max().item():g}]"
            )
        grid = self.sigmas[keep]
        idx = self._draw_indices(batch_size, len(grid), generator)
        return grid[idx.to(grid.device)].to(device if device is not None else self.sigmas.device)

    # ----------------------------------------------------------------- interpolation and conversions
    def alpha_sigma(self, t: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1 - sigma, sigma)`` shaped like ``t``."""
        sigma = _as_sigma(t)
        return 1 - sigma, sigma

    def snr(self, t: float | torch.Tensor) -> torch.Tensor:
        """``((1 - sigma) / sigma)^2`` in float64 (infinite at ``sigma = 0``, 0 at ``sigma = 1``)."""
        sigma = _as_sigma(t).double()
        return ((1 - sigma) / sigma) ** 2

    def interpolate(self, x_hq: torch.Tensor, x_lq: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """LQ -> HQ flow of PS-SR: ``(1 - sigma) x_hq + sigma * x_lq`` (``x_lq`` = the LQ latents at sigma 1)."""
        return self.add_noise(x_hq, x_lq, sigma)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: float | torch.Tensor | None = None) -> torch.Tensor:
        """The regression target ``d x_sigma / d sigma = noise - x0`` (``x_lq - x_hq`` for the paired flow); ``t`` is unused."""
        return noise - x0

    def to_x0(self, model_out: torch.Tensor, x_t: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """``x0 = x_sigma - sigma v`` for the velocity ``v = model_out``."""
        return x_t - per_sample(_as_sigma(t), x_t) * model_out

    def to_noise(self, model_out: torch.Tensor, x_t: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """``noise = x_sigma + (1 - sigma) v`` for the velocity ``v = model_out``."""
        return x_t + (1 - per_sample(_as_sigma(t), x_t)) * model_out

    def step(
        self, x_sigma: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor | float, sigma_next: torch.Tensor | float
    ) -> torch.Tensor:
        """One Euler step ``x + (sigma_next - sigma) v`` (what ``FlowMatchEulerDiscreteScheduler.step`` does)."""
        return x_sigma + (per_sample(sigma_next, x_sigma) - per_sample(sigma, x_sigma)) * v

    # ----------------------------------------------------------------- sampler
    def make_sampler(
        self,
        kind: str | None = None,
        timesteps: list[float] | None = None,
        num_inference_steps: int | None = None,
        *,
        sigmas: list[float] | None = None,
        **overrides: Any,
    ) -> FlowMatchEulerDiscreteScheduler:
        """A ``FlowMatchEulerDiscreteScheduler`` on this schedule (``kind="euler"``, the only kind and the default).

        Give exactly one of ``timesteps`` (model timesteps, ``sigma = t / N``), ``sigmas``
        (descending in ``(0, 1]``) or ``num_inference_steps``. Explicit ``timesteps`` / ``sigmas`` are
        used exactly as given, never shifted (timestep 699 stays sigma 0.699); the sampler's config
        then has ``shift = 1``. ``num_inference_steps`` gives diffusers' own shifted grid. A final
        sigma 0 is appended.
        """
        kind = kind or FLOW_SAMPLER_KINDS[0]
        if kind not in FLOW_SAMPLER_KINDS:
            raise ConfigError(f"unknown flow-matching sampler kind {kind!r}; only 'euler' is available")
        if sum(v is not None for v in (sigmas, timesteps, num_inference_steps)) != 1:
            raise ConfigError("make_sampler needs exactly one of sigmas, timesteps or num_inference_steps")
        cfg = {**strip_meta(self.config), **overrides}
        exact_t: list[float] | None = None
        if timesteps is not None:
            exact_t = [float(t) for t in timesteps]
            sigmas = [t / self.num_train_timesteps for t in exact_t]
        if sigmas is not None:
            sigmas = [float(s) for s in sigmas]
            if not sigmas or any(a <= b for a, b in pairwise(sigmas)) or sigmas[-1] <= 0 or sigmas[0] > 1:
                raise ConfigError(f"sigmas must strictly decrease inside (0, 1], got {sigmas}")
            cfg.update(_EXACT_SIGMAS)
        sampler = FlowMatchEulerDiscreteScheduler.from_config(init_kwargs(FlowMatchEulerDiscreteScheduler, cfg))
        if sigmas is None:
            sampler.set_timesteps(num_inference_steps=num_inference_steps)
            return sampler
        # Passing the timesteps too keeps them exactly as given (not re-derived as float32 sigma * N).
        sampler.set_timesteps(sigmas=sigmas, timesteps=exact_t)
        expected = torch.tensor([*sigmas, 0.0], dtype=torch.float32)
        if not torch.equal(sampler.sigmas.cpu(), expected):  # a diffusers change would show up here
            raise ConfigError(
                f"FlowMatchEulerDiscreteScheduler produced sigmas {sampler.sigmas.tolist()} instead of {sigmas}"
            )
        return sampler

    def extra_repr(self) -> str:
        return f"num_train_timesteps={self.num_train_timesteps}, shift={self.shift}"
