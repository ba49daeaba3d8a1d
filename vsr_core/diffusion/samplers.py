"""Configured diffusers samplers on a training table, with diffusers' own grids or exact timesteps, and a sampling loop.

Two ways to say which timesteps a sampler visits (diffusers 0.35-0.42):

* ``num_inference_steps=n``: the sampler's own ``set_timesteps(n)`` with the config's
  ``timestep_spacing`` (``leading`` / ``trailing`` / ``linspace``) and ``steps_offset``, i.e. exactly
  the grid and the stepping of the base model's diffusers pipeline (SD x4 upscaler, DDIM, 50 steps:
  ``[981, 961, ..., 1]``).
* ``timesteps=[...]``: exactly these, in this order. ``DDPMScheduler`` and ``DPMSolverMultistepScheduler``
  take them through ``set_timesteps(timesteps=...)``. ``DDIMScheduler``, ``CogVideoXDDIMScheduler``
  and ``CogVideoXDPMScheduler`` step from ``t`` to ``t - num_train_timesteps // num_inference_steps``
  (a fixed stride); their subclasses here (:class:`ExactTimestepsMixin`) step from each given
  timestep to the next one instead, the last one to the clean sample, as ``DDPMScheduler`` does for
  custom timesteps. On an evenly spaced grid both rules give the same steps.

Every sampler is built on the *same* ``alphas_cumprod`` as the training schedule: the table is passed
as ``trained_betas`` (``beta_t = 1 - a_t / a_{t-1}``) with ``rescale_betas_zero_snr=False`` and
``snr_shift_scale=1``, because rescaling / shifting are already contained in it. Other config keys
(``prediction_type``, ``clip_sample``, ``set_alpha_to_one``, ``timestep_spacing``, ``steps_offset``,
``thresholding``, ...) carry over; keys the base config left unset take the sampler class's own
default, as in diffusers' ``Sampler.from_config(pipe.scheduler.config)`` (the SD x4 upscaler's config
has no ``timestep_spacing``: ``leading`` for DDIM / DDPM, ``linspace`` for DPM-Solver). A zero ``alpha_bar`` (the last step of a zero-terminal-SNR schedule)
is clamped to ``2**-24``, as diffusers' DPM-Solver does for such schedules.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import torch
from diffusers import (
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from vsr_core.diffusion.scheduler_config import init_kwargs, strip_meta
from vsr_core.errors import ConfigError

__all__ = [
    "MIN_ALPHA_BAR",
    "SAMPLER_KINDS",
    "ExactCogVideoXDDIMScheduler",
    "ExactCogVideoXDPMScheduler",
    "ExactDDIMScheduler",
    "ExactTimestepsMixin",
    "betas_from_alphas_cumprod",
    "make_ddpm_sampler",
    "sample",
]

#: The smallest alpha_bar a sampler sees (diffusers' DPM-Solver clamps zero terminal SNR the same way).
MIN_ALPHA_BAR = 2.0**-24


class ExactTimestepsMixin:
    """Makes a fixed-stride diffusers sampler (DDIM, CogVideoX DDIM / DPM) step through any given timesteps.

    After :meth:`use_timesteps`, ``step(..., timestep=t, ...)`` goes from ``t`` to the next given
    timestep (from the last one to the clean sample, ``final_alpha_cumprod``). diffusers computes the
    previous timestep inside ``step`` as ``t - config.num_train_timesteps // num_inference_steps``, so
    for the duration of the call the config presents that stride exactly (``num_train_timesteps =
    stride``, ``num_inference_steps = 1``); nothing else in these ``step`` methods reads either
    value. ``set_timesteps(n)`` restores diffusers' own grid and stride.
    """

    _next_timestep: dict[int, int] | None = None

    def set_timesteps(self, *args: Any, **kwargs: Any) -> None:
        self._next_timestep = None
        super().set_timesteps(*args, **kwargs)  # type: ignore[misc]

    def use_timesteps(self, timesteps: list[int], device: torch.device | str | None = None) -> None:
        """Visit exactly ``timesteps`` (strictly decreasing integers) in this order."""
        self.num_inference_steps = len(timesteps)
        self.timesteps = torch.tensor(timesteps, dtype=torch.long, device=device)
        self._next_timestep = dict(zip(timesteps, [*timesteps[1:], -1], strict=True))

    def step(self, *args: Any, **kwargs: Any) -> Any:
        parent_step = super().step  # type: ignore[misc]
        if self._next_timestep is None:
            return parent_step(*args, **kwargs)
        t = int(inspect.signature(parent_step).bind(*args, **kwargs).arguments["timestep"])
        if t not in self._next_timestep:
            raise ValueError(f"timestep {t} is not one of this sampler's timesteps {list(self._next_timestep)}")
        config, steps = self._internal_dict, self.num_inference_steps
        self.register_to_config(num_train_timesteps=t - self._next_timestep[t])
        self.num_inference_steps = 1
        try:
            return parent_step(*args, **kwargs)
        finally:
            self._internal_dict, self.num_inference_steps = config, steps


class ExactDDIMScheduler(ExactTimestepsMixin, DDIMScheduler):
    """``DDIMScheduler`` that also steps exactly through custom timesteps (:class:`ExactTimestepsMixin`)."""


class ExactCogVideoXDDIMScheduler(ExactTimestepsMixin, CogVideoXDDIMScheduler):
    """``CogVideoXDDIMScheduler`` that also steps exactly through custom timesteps (:class:`ExactTimestepsMixin`)."""


class ExactCogVideoXDPMScheduler(ExactTimestepsMixin, CogVideoXDPMScheduler):
    """``CogVideoXDPMScheduler`` that also steps exactly through custom timesteps (:class:`ExactTimestepsMixin`)."""


#: kind -> (diffusers class, fixed config entries). The sampler is an instance of that class.
SAMPLER_KINDS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "cogvideox_ddim": (CogVideoXDDIMScheduler, {}),
    "cogvideox_dpm": (CogVideoXDPMScheduler, {}),
}

#: The class actually built for a kind: the fixed-stride ones get exact custom timesteps.
_BUILT_CLASS: dict[str, type[SchedulerMixin]] = {
    "ddim": ExactDDIMScheduler,
    "cogvideox_ddim": ExactCogVideoXDDIMScheduler,
    "cogvideox_dpm": ExactCogVideoXDPMScheduler,
}


def _check_timesteps(timesteps: list[int], num_train_timesteps: int) -> list[int]:
    if any(isinstance(t, float) and not float(t).is_integer() for t in timesteps):
        raise ConfigError(f"DDPM-family timesteps are integers, got {list(timesteps)}")
    ts = [int(t) for t in timesteps]
    if not ts:
        raise ConfigError("timesteps must not be empty")
    if any(a <= b for a, b in pairwise(ts)) or ts[-1] < 0 or ts[0] >= num_train_timesteps:
        raise ConfigError(f"timesteps must strictly decrease inside [0, {num_train_timesteps}), got {ts}")
    return ts


def betas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> list[float]:
    """``beta_t = 1 - a_t / a_{t-1}`` (``beta_0 = 1 - a_0``): the betas whose cumulative product is ``alphas_cumprod``."""
    a = alphas_cumprod.detach().to("cpu", torch.float64)
    prev = torch.cat([a.new_ones(1), a[:-1]])
    return (1.0 - a / prev).tolist()


def make_ddpm_sampler(
    kind: str,
    config: dict[str, Any],
    alphas_cumprod: torch.Tensor,
    timesteps: list[int] | None = None,
    num_inference_steps: int | None = None,
    **overrides: Any,
) -> SchedulerMixin:
    """A diffusers scheduler of ``kind`` on ``alphas_cumprod`` ``[N]``, with exactly one of ``timesteps`` / ``num_inference_steps``.

    ``kind`` is one of :data:`SAMPLER_KINDS`: ``ddpm``, ``ddim``, ``dpmsolver++``,
    ``cogvideox_ddim``, ``cogvideox_dpm``. ``config`` is the training schedule's diffusers config
    (its sampling keys carry over, ``timestep_spacing`` and ``steps_offset`` included),
    ``overrides`` are extra constructor arguments (e.g. ``solver_order=1``,
    ``timestep_spacing="trailing"``). ``timesteps`` (strictly decreasing integers in ``[0, N)``)
    become the sampler's ``.timesteps`` exactly; ``num_inference_steps`` gives diffusers' own grid.
    """
    if kind not in SAMPLER_KINDS:
        raise ConfigError(f"unknown sampler kind {kind!r}; choose one of {', '.join(SAMPLER_KINDS)}")
    if (timesteps is None) == (num_inference_steps is None):
        raise ConfigError("make_sampler needs exactly one of timesteps or num_inference_steps")
    stock, fixed = SAMPLER_KINDS[kind]
    cls = _BUILT_CLASS.get(kind, stock)
    n_train = len(alphas_cumprod)
    table = alphas_cumprod.clamp_min(MIN_ALPHA_BAR)
    # As diffusers' from_config: keys the base config did not set take this class's defaults.
    given = {k: v for k, v in strip_meta(config).items() if k not in config.get("_use_default_values", ())}
    cfg = {
        **given,
        **fixed,
        "num_train_timesteps": n_train,
        "trained_betas": betas_from_alphas_cumprod(table),
        "rescale_betas_zero_snr": False,
        "snr_shift_scale": 1.0,
        **overrides,
    }
    sampler = cls.from_config(init_kwargs(cls, cfg))
    if timesteps is not None:
        ts = _check_timesteps(timesteps, n_train)
        if isinstance(sampler, ExactTimestepsMixin):
            sampler.use_timesteps(ts)
        else:
            sampler.set_timesteps(timesteps=ts)
        if sampler.timesteps.tolist() != ts:  # a diffusers change would show up here, not as silently wrong sampling
            raise ConfigError(f"{cls.__name__} produced timesteps {sampler.timesteps.tolist()} instead of {ts}")
        return sampler
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
        raise ConfigError(f"num_inference_steps must be an integer, got {num_inference_steps!r}")
    if not 1 <= num_inference_steps <= n_train:
        raise ConfigError(f"num_inference_steps must be between 1 and {n_train}, got {num_inference_steps}")
    try:
        sampler.set_timesteps(num_inference_steps)
    except ValueError as err:  # e.g. an unknown timestep_spacing in the config
        raise ConfigError(f"{cls.__name__} cannot place {num_inference_steps} steps: {err}") from None
    grid = sampler.timesteps.tolist()
    if max(grid) >= n_train or min(grid) < 0:
        # leading spacing + steps_offset can step past the table (1000 steps with offset 1 start at 1000).
        raise ConfigError(
            f"{num_inference_steps} steps with timestep_spacing={sampler.config.timestep_spacing!r} and "
            f"steps_offset={sampler.config.steps_offset} leave [0, {n_train}): {grid[:3]}...; use fewer steps"
        )
    return sampler


def sample(
    sampler: SchedulerMixin,
    model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run ``sampler`` from ``x`` (the sample at ``sampler.timesteps[0]``) over all its timesteps.

    ``model_fn(x_t, t)`` returns the model output for the sampler's ``prediction_type`` (``t`` is the
    0-d timestep tensor). Works for every kind of :data:`SAMPLER_KINDS` and for
    ``FlowMatchEulerDiscreteScheduler``; returns the final sample. Gradients are not disabled here:
    wrap the call in ``torch.no_grad()`` for plain inference.
    """
    old_x0 = None
    timesteps = sampler.timesteps
    for i, t in enumerate(timesteps):
        # Flow-matching samplers have no input scaling; the DDPM family's is the identity but called for form.
        model_in = sampler.scale_model_input(x, t) if hasattr(sampler, "scale_model_input") else x
        out = model_fn(model_in, t)
        if isinstance(sampler, CogVideoXDPMScheduler):
            # CogVideoX's DPM-Solver++(2M) carries the previous x0 estimate and timestep itself.
            back = timesteps[i - 1] if i > 0 else None
            x, old_x0 = sampler.step(out, old_x0, t, back, x, generator=generator, return_dict=False)
        else:
            x = sampler.step(out, t, x, generator=generator, return_dict=False)[0]
    return x
