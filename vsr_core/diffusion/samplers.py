"""Configured diffusers samplers with exact custom timesteps, and a tiny sampling loop.

How custom timesteps are honoured (diffusers 0.35-0.42):

* ``DDPMScheduler`` and ``DPMSolverMultistepScheduler`` accept ``set_timesteps(timesteps=[...])``.
* ``DDIMScheduler``, ``CogVideoXDDIMScheduler`` and ``CogVideoXDPMScheduler`` do not: their ``step``
  goes from ``t`` to ``t - num_train_timesteps // num_inference_steps``. They are given a schedule
  truncated to ``num_train_timesteps = timesteps[0] + 1`` and ``timestep_spacing="trailing"``, so
  ``set_timesteps(len(timesteps))`` produces ``N-1, N-1-k, ..., k-1`` with stride ``k = N / n``:
  exactly the evenly spaced schedules jump-start methods use (SATB-VR Table 4:
  ``[399, 319, 239, 159, 79]``). Other timesteps are refused for these kinds.

Every sampler is built on the *same* ``alphas_cumprod`` as the training schedule: the prefix
``alphas_cumprod[:timesteps[0] + 1]`` is passed as ``trained_betas`` (``beta_t = 1 - a_t / a_{t-1}``)
with ``rescale_betas_zero_snr=False`` and ``snr_shift_scale=1``, because rescaling / shifting
are already contained in the table. Other config keys (``prediction_type``, ``clip_sample``,
``set_alpha_to_one``, ``thresholding``, ...) carry over. A zero ``alpha_bar`` (the last step of a
zero-terminal-SNR schedule) is clamped to ``2**-24``, as diffusers' DPM-Solver does for such schedules.
"""

from __future__ import annotations

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

#: kind -> (scheduler class, accepts ``set_timesteps(timesteps=...)``, fixed config entries)
SAMPLER_KINDS: dict[str, tuple[type[SchedulerMixin], bool, dict[str, Any]]] = {
    "ddpm": (DDPMScheduler, True, {}),
    "ddim": (DDIMScheduler, False, {}),
    "dpmsolver++": (DPMSolverMultistepScheduler, True, {"algorithm_type": "dpmsolver++"}),
    "cogvideox_ddim": (CogVideoXDDIMScheduler, False, {}),
    "cogvideox_dpm": (CogVideoXDPMScheduler, False, {}),
}

#: The smallest alpha_bar a sampler sees (diffusers' DPM-Solver clamps zero terminal SNR the same way).
MIN_ALPHA_BAR = 2.0**-24


def _check_timesteps(timesteps: list[int], num_train_timesteps: int) -> list[int]:
    ts = [int(t) for t in timesteps]
    if not ts:
        raise ConfigError("timesteps must not be empty")
    if any(a <= b for a, b in pairwise(ts)) or ts[-1] < 0 or ts[0] >= num_train_timesteps:
        raise ConfigError(f"timesteps must strictly decrease inside [0, {num_train_timesteps}), got {ts}")
    return ts


def _is_trailing_grid(ts: list[int]) -> bool:
    span, n = ts[0] + 1, len(ts)
    return span % n == 0 and ts == [span - 1 - i * (span // n) for i in range(n)]


def betas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> list[float]:
    """``beta_t = 1 - a_t / a_{t-1}`` (``beta_0 = 1 - a_0``): the betas whose cumulative product is ``alphas_cumprod``."""
    a = alphas_cumprod.detach().to("cpu", torch.float64)
    prev = torch.cat([a.new_ones(1), a[:-1]])
    return (1.0 - a / prev).tolist()


def make_ddpm_sampler(
    kind: str,
    config: dict[str, Any],
    alphas_cumprod: torch.Tensor,
    timesteps: list[int],
    **overrides: Any,
) -> SchedulerMixin:
    """A diffusers scheduler of ``kind`` on ``alphas_cumprod`` whose ``.timesteps`` equal ``timesteps``.

    ``kind`` is one of :data:`SAMPLER_KINDS`: ``ddpm``, ``ddim``, ``dpmsolver++``,
    ``cogvideox_ddim``, ``cogvideox_dpm``. ``config`` is the training schedule's diffusers config
    (its sampling keys carry over), ``overrides`` are extra constructor arguments (e.g.
    ``solver_order=1``).
    """
    if kind not in SAMPLER_KINDS:
        raise ConfigError(f"unknown sampler kind {kind!r}; choose one of {', '.join(SAMPLER_KINDS)}")
    cls, takes_timesteps, fixed = SAMPLER_KINDS[kind]
    ts = _check_timesteps(timesteps, len(alphas_cumprod))
    if not takes_timesteps and not _is_trailing_grid(ts):
        raise ConfigError(
            f"sampler {kind!r} steps with a fixed stride and only takes evenly spaced timesteps ending at stride-1 "
            f"(e.g. [399, 319, 239, 159, 79]), got {ts}; use 'dpmsolver++' or 'ddpm' for arbitrary timesteps"
        )
    span = ts[0] + 1
    table = alphas_cumprod[:span].clamp_min(MIN_ALPHA_BAR)
    cfg = {
        **strip_meta(config),
        **fixed,
        "num_train_timesteps": span,
        "trained_betas": betas_from_alphas_cumprod(table),
        "rescale_betas_zero_snr": False,
        "snr_shift_scale": 1.0,
        "timestep_spacing": "trailing",
        "steps_offset": 0,
        **overrides,
    }
    sampler = cls.from_config(init_kwargs(cls, cfg))
    if takes_timesteps:
        sampler.set_timesteps(timesteps=ts)
    else:
        sampler.set_timesteps(len(ts))
    if sampler.timesteps.tolist() != ts:  # a diffusers change would show up here, not as silently wrong sampling
        raise ConfigError(f"{cls.__name__} produced timesteps {sampler.timesteps.tolist()} instead of {ts}")
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
