"""The auxiliary predictor F_p (Sec. 3.2, Eq. 3): ``x_p^{τ_s} = F_p(x_lq, τ_s)``.

A full copy of the pretrained base transformer (as in the release), fine-tuned with its own LoRA.
It only corrects the offset between the LQ latent and the clean latent; the noise of Eq. 3 is
resampled afterwards, not predicted. Two output parameterizations:

* ``v_at_lq`` (the release): the transformer reads ``x_lq`` as if it were a noisy sample at a fixed
  timestep ``t_p`` (399) and its v-prediction is converted to a clean estimate,
  ``x_p = √ᾱ_{t_p} x_lq − √(1−ᾱ_{t_p}) v̂``. At initialization this is the base model's own one-step
  denoising of the LQ latent — a meaningful start. With ``timestep="tau_s"`` the predictor reads
  ``τ_s`` instead (the paper's ``F_p(x_lq, τ_s)``).
* ``x0``: the transformer output is ``x_p`` directly.
* ``residual``: ``x_p = x_lq + output`` — the offset correction of Sec. 3.2 taken literally. The
  tiny preset uses it with a zero-initialized output layer, so its random predictor starts at
  ``x_lq`` (Table 2 (f)'s starting point) instead of at noise.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

__all__ = ["PARAMETERIZATIONS", "AuxiliaryPredictor"]

PARAMETERIZATIONS = ("v_at_lq", "x0", "residual")


class AuxiliaryPredictor(nn.Module):
    """``forward(x_lq [B,F,C,H,W], tau_s [B], text [B,L,D], rotary, schedule) -> x_p [B,F,C,H,W]``.

    Args:
        transformer: a ``CogVideoXTransformer3DModel`` (copy of the base, with or without LoRA).
        parameterization: ``v_at_lq`` or ``x0`` (see the module docstring).
        timestep: fixed timestep the transformer is evaluated at (399 in the release), or
            ``tau_s``: each sample's ``τ_s``.
    """

    def __init__(
        self, transformer: nn.Module, parameterization: str = "v_at_lq", timestep: int | Literal["tau_s"] = 399
    ) -> None:
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"predictor parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
            )
        self.transformer = transformer
        self.parameterization = parameterization
        self.timestep = timestep

    def forward(
        self,
        x_lq: torch.Tensor,
        tau_s: torch.Tensor,
        text: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None,
        schedule: Any,
    ) -> torch.Tensor:
        """``schedule`` is the base model's ``DDPMSchedule`` (its ``x0_from_v`` converts v̂)."""
        t = tau_s if self.timestep == "tau_s" else torch.full_like(tau_s, self.timestep)
        out = self.transformer(
            hidden_states=x_lq, encoder_hidden_states=text, timestep=t, image_rotary_emb=rotary, return_dict=False
        )[0]
        if self.parameterization == "x0":
            return out
        if self.parameterization == "residual":
            return x_lq + out.to(x_lq.dtype)
        # x_lq plays the noisy sample x_t at t: x0 = √ᾱ_t x_t − √(1−ᾱ_t) v (the release's get_velocity call).
        return schedule.x0_from_v(x_lq, out.to(x_lq.dtype), t)
