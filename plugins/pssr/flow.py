"""Flow matching between paired latents (PS-SR Eq. 2-7) and the speculative timesteps (Eq. 5-6).

The flow runs from the LQ latent ``z_L`` to the HQ latent ``z_H`` (Eq. 4):
``z_sigma = (1 - sigma) z_H + sigma z_L``, velocity ``z_L - z_H`` (Eq. 7), Euler step
``z_{t-1} = z_t - (sigma_t - sigma_{t-1}) phi`` (Eq. 3). The paper starts the base at ``sigma_T = 1``
(``z_T = z_L``, Eq. 5 with ``1 - sigma_{T-1}``). The release instead runs the base at timestep 699
on ``z_L`` itself and converts with ``x0 = z_L - 0.699 phi``: it treats ``z_L`` as the state at
``sigma_L = 0.699``. Both readings are one straight line ``z_H -> z_L`` reaching ``z_L`` at ``sigma_L``:

    z_sigma = z_H + (sigma / sigma_L) (z_L - z_H),     target v = (z_L - z_H) / sigma_L,     x0 = z_sigma - sigma v

which is the core schedule's flow ``(1 - sigma) z_H + sigma e`` towards the point ``e`` the line
reaches at ``sigma = 1``, ``e = z_H + (z_L - z_H) / sigma_L`` (:func:`lq_endpoint`; ``e = z_L`` for
the paper's ``sigma_L = 1``). So the core's ``interpolate`` / ``target`` / ``to_x0`` / ``step`` are used
unchanged, and the x0 conversion is always consistent with the L2 target (Eq. 7).

Timesteps are model timesteps (``sigma * 1000``), never shifted: base 699 (release; 1000 is the
paper's reading), draft steps 599, 499, 399 for ``T = 4``.
"""

from __future__ import annotations

import torch

from vsr_core.errors import ConfigError

__all__ = ["draft_timesteps", "landing_velocity", "lq_endpoint", "max_steps", "paired_state", "velocity_target"]


def lq_endpoint(z_hq: torch.Tensor, z_lq: torch.Tensor, sigma_lq: float) -> torch.Tensor:
    """``e = z_H + (z_L - z_H) / sigma_L`` ``[B, c, t, h, w]``: where the ``z_H -> z_L`` line is at sigma 1."""
    if sigma_lq == 1.0:
        return z_lq
    return z_hq + (z_lq - z_hq) / sigma_lq


def paired_state(
    schedule, z_hq: torch.Tensor, z_lq: torch.Tensor, sigma: torch.Tensor, sigma_lq: float
) -> torch.Tensor:
    """Eq. 4: the paired-flow state at ``sigma`` ``[B]`` (``z_L`` at ``sigma_L``, ``z_H`` at 0)."""
    return schedule.interpolate(z_hq, lq_endpoint(z_hq, z_lq, sigma_lq), sigma)


def velocity_target(schedule, z_hq: torch.Tensor, z_lq: torch.Tensor, sigma_lq: float) -> torch.Tensor:
    """Eq. 7's target ``(z_L - z_H) / sigma_L`` ``[B, c, t, h, w]`` (``z_L - z_H`` for the paper's sigma_L = 1)."""
    return schedule.target(z_hq, lq_endpoint(z_hq, z_lq, sigma_lq))


def landing_velocity(z_t: torch.Tensor, z_hq: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """``(z_t - z_H) / sigma_t``: the velocity whose x0 estimate from ``z_t`` is exactly ``z_H``.

    On the paired line it equals :func:`velocity_target`; the release's trajectory training (states
    off the line) regresses it (its ``mse(x0, z_H)`` is ``sigma_t^2`` times this velocity loss).
    """
    sigma = torch.as_tensor(sigma, dtype=z_t.dtype, device=z_t.device)
    return (z_t - z_hq) / sigma.reshape(-1, *([1] * (z_t.ndim - 1))) if sigma.ndim else (z_t - z_hq) / sigma


def max_steps(base_timestep: int, last_timestep: int) -> int:
    """The largest ``T`` the schedule defines: every integer timestep in ``[last, base)`` once, plus the base step."""
    return base_timestep - last_timestep + 1


def draft_timesteps(base_timestep: int, last_timestep: int, num_steps: int) -> list[int]:
    """The ``T - 1`` draft timesteps after the base step at ``base_timestep`` (Eq. 6).

    Rule: evenly spaced from the base timestep down to ``last_timestep``, rounded to integers,
    ``t_k = round(base - k (base - last) / (T - 1))`` for ``k = 1 .. T - 1``. With the release's
    base 699 and last 399: ``T = 4`` gives 599, 499, 399 (the release's list), ``T = 2`` gives 399,
    ``T = 8`` gives 656, 613, 570, 528, 485, 442, 399. ``T = 1`` has no draft step.

    Raises:
        ConfigError: ``T < 1``, or more steps than distinct integer timesteps (see :func:`max_steps`).
    """
    if not 0 < last_timestep < base_timestep <= 1000:
        raise ConfigError(
            f"timesteps must satisfy 0 < last draft timestep < base timestep <= 1000, got {last_timestep} and {base_timestep}"
        )
    largest = max_steps(base_timestep, last_timestep)
    if not 1 <= num_steps <= largest:
        raise ConfigError(
            f"num_inference_steps must be in [1, {largest}] (1 base step + draft steps at distinct timesteps from "
            f"{base_timestep} down to {last_timestep}); got {num_steps}"
        )
    if num_steps == 1:
        return []
    span = (base_timestep - last_timestep) / (num_steps - 1)
    return [int(round(base_timestep - k * span)) for k in range(1, num_steps)]
