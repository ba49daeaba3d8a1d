"""One step of CogVideoX's stochastic DPM-Solver++(2M) with the step noise given, not drawn.

diffusers' ``CogVideoXDPMScheduler.step`` draws its noise from a generator and ignores
``variance_noise``. The long-video engine gives every latent tile and window the *same* noise
where they overlap (its shared timeline noise), so the tiles of one step can be fused; this is
the same update with that noise passed in. With the noise diffusers would draw it equals
diffusers' step (tested), so the release's sampler is unchanged.
"""

from __future__ import annotations

import torch
from diffusers import CogVideoXDPMScheduler

__all__ = ["cogvideox_dpm_step"]


def cogvideox_dpm_step(
    solver: CogVideoXDPMScheduler,
    v: torch.Tensor,
    previous_x0: torch.Tensor | None,
    t: int,
    t_back: int | None,
    t_next: int,
    sample: torch.Tensor,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_{t_next}, x̂_0)`` from ``x_t = sample`` and the v-prediction ``v`` (all ``[B, F, C, h, w]``).

    ``previous_x0`` is the clean estimate of the previous step (at ``t_back``; ``None`` on the first
    step), ``t_next < 0`` steps to the clean sample (``solver.final_alpha_cumprod``), ``noise`` is
    standard normal like ``sample``. The update is diffusers' (first order on the first and last
    step, second order in between).
    """
    a = solver.alphas_cumprod
    alpha_t = a[t]
    alpha_next = a[t_next] if t_next >= 0 else solver.final_alpha_cumprod
    alpha_back = a[t_back] if t_back is not None else None
    x0 = alpha_t**0.5 * sample - (1 - alpha_t) ** 0.5 * v  # v-prediction -> clean estimate
    h, r, _, _ = solver.get_variables(alpha_t, alpha_next, alpha_back)
    mult = list(solver.get_mult(h, r, alpha_t, alpha_next, alpha_back))
    mult_noise = (1 - alpha_next) ** 0.5 * (1 - (-2 * h).exp()) ** 0.5
    if previous_x0 is None or t_next < 0:
        denoised = x0
    else:
        denoised = mult[2] * x0 - mult[3] * previous_x0
    noise = noise.to(sample.device, sample.dtype)
    return mult[0] * sample - mult[1] * denoised + mult_noise * noise, x0
