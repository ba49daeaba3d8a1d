"""Degradation-aware reconstruction scheduling (UltraVSR Sec. 3.2, Eq. 2-4): one step from ``z_LR`` to ``z_HR``.

The degradation factor ``d`` of a video (Eq. 2, from the DEM; 0 = maximal degradation, 1 = none) is read as
``d = sqrt(abar_t)`` of the DDPM forward process (Eq. 1): the LR latent is taken to be the HR latent noised
to the level ``d``. The UNet, called at the matching timestep ``t_rec`` (Eq. 4), predicts that noise ``est``
and Eq. 3 removes it in one step.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["degradation_range", "fixed_schedule", "reconstruct", "reconstruction_timestep"]


def degradation_range(alphas_cumprod: torch.Tensor) -> tuple[float, float]:
    """``(sqrt(abar_{T-1}), sqrt(abar_0))``: the ``d`` the schedule can express (SD 2.1: 0.0683 .. 0.99957)."""
    a = alphas_cumprod.double()
    return float(a[-1].sqrt()), float(a[0].sqrt())


def reconstruction_timestep(
    d: torch.Tensor, alphas_cumprod: torch.Tensor, match: Literal["alpha_bar", "sqrt_alpha_bar"] = "alpha_bar"
) -> torch.Tensor:
    """Eq. 4: ``t_rec = argmin_t |d^2 - abar_t|`` per video; ``d [B] -> t_rec [B]`` (long, on ``d``'s device).

    Eq. 4 prints ``|d - sqrt(alpha_t)|``; with ``d = sqrt(abar_t)`` (Sec. 3.2) the consistent reading, and the
    release's (``argmin |degra_factor - alphas_cumprod|`` with ``degra_factor = d**2``), compares ``d^2`` with
    ``abar_t`` (``match="alpha_bar"``). ``match="sqrt_alpha_bar"`` compares ``d`` with ``sqrt(abar_t)``
    (the same ordering of distances up to the factor ``d + sqrt(abar_t)``; it can pick a neighbouring step).
    """
    a = alphas_cumprod.to(device=d.device, dtype=torch.float64)
    d = d.to(torch.float64).reshape(-1, 1)
    distance = (d**2 - a[None]).abs() if match == "alpha_bar" else (d - a[None].sqrt()).abs()
    return distance.argmin(dim=1)


def fixed_schedule(timestep: int, alphas_cumprod: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Table 3 row A: ``t = timestep`` and ``d = sqrt(abar_t)`` for every video; ``([B] float32, [B] long)``."""
    if not 0 <= timestep < alphas_cumprod.shape[0]:
        raise ValueError(f"fixed timestep {timestep} is outside the schedule's [0, {alphas_cumprod.shape[0]})")
    d = alphas_cumprod.double()[timestep].sqrt().float()
    t = torch.full((batch_size,), timestep, dtype=torch.long, device=alphas_cumprod.device)
    return d.expand(batch_size).clone().to(alphas_cumprod.device), t


def reconstruct(z_lr: torch.Tensor, est: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Eq. 3: ``z_HR = (z_LR - sqrt(1 - d^2) est) / d``; ``z_lr, est [B, c, t, h, w]``, ``d [B]`` in ``(0, 1]``."""
    d = d.to(z_lr.dtype).reshape(-1, *([1] * (z_lr.ndim - 1)))
    return (z_lr - (1.0 - d**2).clamp_min(0).sqrt() * est) / d
