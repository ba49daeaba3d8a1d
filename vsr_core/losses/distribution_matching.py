"""Distribution matching distillation of a one-step generator (VSD / DMD, as in OSEDiff).

The generator's latent output ``z`` ``[B, c, t, h, w]`` is noised at a time ``t`` drawn in
``[t_min, t_max)`` (``x_t = add_noise(z, eps, t)``) and denoised by a *real* score (the pretrained
teacher, optionally with classifier-free guidance) and a *fake* score (trained on the generator's
own outputs); both predictions are turned into clean-sample estimates ``x0_real`` / ``x0_fake``
with the schedule's ``to_x0``. The generator is pushed along

    g = w(t) (x0_fake - x0_real),   w(t) = 1 / mean|z - x0_real|   (per sample; DMD, Yin et al. 2024)

which is the VSD gradient of PS-SR Eq. 8 and UltraVSR Eq. 10 written in ``x0`` (an epsilon or
velocity difference ``phi_real - phi_fake`` is a positive multiple of ``x0_fake - x0_real``). The loss
``mse(z, (z - g).detach())`` has exactly this direction as its gradient: ``d loss / d z = 2 g / z.numel()``.

UltraVSR's temporal-consistency term (Eq. 11) applies the same construction to frame differences
``D(x) = x[:, :, :-1] - x[:, :, 1:]``: from the same ``x_t``, ``t`` and score evaluations (no extra
network pass) and the same ``w(t)`` (the equations share it), ``g_D = w(t) (D(x0_fake) - D(x0_real)) = D(g)``
and the loss ``mse(D(z), (D(z) - D(g)).detach())``; the two are combined as in Eq. 9,
``L_SJD = L_realistic + lambda L_consistency`` (``temporal_weight`` = lambda, 0.5 in UltraVSR).

The fake score learns with the plain denoising loss on ``z.detach()`` (:meth:`DistributionMatching.fake_score_loss`);
:func:`denoising_loss` is the same loss for any score and data (UltraVSR also trains its real score on
ground-truth latents). Every schedule with the protocol ``sample_t`` / ``add_noise`` / ``to_x0`` /
``target`` / ``model_timestep`` works: ``DDPMSchedule`` (epsilon, v, x0 prediction) and ``FlowMatchingSchedule``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from vsr_core.errors import ConfigError
from vsr_core.losses.scores import ScoreModel

__all__ = [
    "WEIGHTINGS",
    "DistributionMatching",
    "DistributionMatchingLoss",
    "denoising_loss",
    "distribution_matching_gradient",
    "frame_differences",
    "gradient_matching_loss",
    "guided",
]

#: ``"dmd"``: divide by ``mean|z - x0_real|`` per sample (DMD / OSEDiff); ``"none"``: ``w(t) = 1``.
WEIGHTINGS = ("dmd", "none")


class _Schedule(Protocol):  # the part of the noise-schedule protocol used here
    def sample_t(self, batch_size, generator=None, device=None, low=None, high=None) -> torch.Tensor: ...
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...
    def to_x0(self, model_out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...
    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...
    def model_timestep(self, t: torch.Tensor) -> torch.Tensor: ...


def _at_least_float32(x: torch.Tensor) -> torch.dtype:
    # bf16 / fp16 latents: the gradient and the loss in float32; float64 (tests) stays float64.
    return torch.promote_types(x.dtype, torch.float32)


def frame_differences(x: torch.Tensor) -> torch.Tensor:
    """``x[:, :, :-1] - x[:, :, 1:]``: ``[B, c, t, h, w]`` -> ``[B, c, t - 1, h, w]`` (UltraVSR Eq. 11)."""
    if x.ndim != 5 or x.shape[2] < 2:
        raise ValueError(f"frame differences need [B, c, t >= 2, h, w] latents, got shape {list(x.shape)}")
    return x[:, :, :-1] - x[:, :, 1:]


def guided(uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance ``uncond + s (cond - uncond)`` (diffusers' convention: ``s = 1`` is ``cond``)."""
    return uncond + guidance_scale * (cond - uncond)


def distribution_matching_gradient(
    z: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor, weighting: str = "dmd"
) -> torch.Tensor:
    """``g = w (x0_fake - x0_real)`` ``[B, ...]``, detached, in float32 or wider (PS-SR Eq. 8, UltraVSR Eq. 10).

    ``weighting="dmd"``: ``w = 1 / mean|z - x0_real|`` over all but the batch dimension (one weight per
    sample, DMD's normaliser); ``"none"``: ``w = 1``. A zero normaliser (``z == x0_real``) is
    clamped to 1e-12, so ``x0_fake == x0_real`` always gives ``g = 0`` exactly.
    """
    if weighting not in WEIGHTINGS:
        raise ConfigError(
            f"unknown distribution-matching weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}"
        )
    dtype = _at_least_float32(z)
    z, x0_real, x0_fake = z.detach().to(dtype), x0_real.detach().to(dtype), x0_fake.detach().to(dtype)
    g = x0_fake - x0_real
    if weighting == "dmd":
        dims = tuple(range(1, z.ndim))
        g = g / (z - x0_real).abs().mean(dim=dims, keepdim=True).clamp_min(1e-12)
    return g


def gradient_matching_loss(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``mse(x, (x - g).detach())``: a scalar (float32 or wider) whose gradient w.r.t. ``x`` is ``2 g / x.numel()``."""
    dtype = _at_least_float32(x)
    return F.mse_loss(x.to(dtype), (x.detach().to(dtype) - g.to(dtype)).detach())


def denoising_loss(
    score: ScoreModel,
    schedule: _Schedule,
    x0: torch.Tensor,
    condition: Any = None,
    generator: torch.Generator | None = None,
    t_min: float | None = None,
    t_max: float | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """The standard diffusion loss ``mean((score(x_t, timestep(t), c) - target(x0, noise, t))^2)`` (scalar).

    ``x0`` ``[B, c, t, h, w]`` (detach it yourself if no gradient should reach it); ``t`` ``[B]``
    (schedule-native) is drawn with ``schedule.sample_t`` in ``[t_min, t_max)`` (model-timestep units,
    default the whole schedule) and then ``noise`` ~ N(0, I), both from ``generator``, unless given.
    """
    if t is None:
        t = schedule.sample_t(x0.shape[0], generator=generator, device=x0.device, low=t_min, high=t_max)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = schedule.add_noise(x0, noise, t)
    out = score(x_t, schedule.model_timestep(t), condition)
    dtype = _at_least_float32(out)
    return F.mse_loss(out.to(dtype), schedule.target(x0, noise, t).to(dtype))


@dataclass
class DistributionMatchingLoss:
    """The generator's distribution-matching loss and its parts.

    ``loss = realistic + temporal_weight * consistency`` (UltraVSR Eq. 9; PS-SR Eq. 8 is ``realistic``
    alone), scalars with gradients to ``z``; ``consistency`` is ``None`` when ``temporal_weight == 0``;
    ``t`` ``[B]`` the schedule times used; ``grad`` ``[B, c, t, h, w]`` the detached ``g``.
    """

    loss: torch.Tensor
    realistic: torch.Tensor
    consistency: torch.Tensor | None
    t: torch.Tensor
    grad: torch.Tensor


class DistributionMatching:
    """VSD / DMD for a one-step generator: the generator loss and the fake score's own loss.

    Args:
        schedule: a noise schedule with the protocol methods (``DDPMSchedule``, ``FlowMatchingSchedule``).
        real_score: the teacher's :class:`~vsr_core.losses.scores.ScoreModel` (run without gradients here).
        fake_score: the fake score (trained with :meth:`fake_score_loss`).
        t_min, t_max: range ``[t_min, t_max)`` of the noising time in model-timestep units (DDPM
            integer timesteps, flow ``sigma * N``); default the whole schedule.
            OSEDiff uses DDPM ``[20, 980)``; PS-SR Eq. 8 ``t ~ U(T_min, T_max)``.
        guidance_scale: classifier-free guidance of the real score (1: a single conditional pass).
        weighting: ``"dmd"`` or ``"none"`` (see :func:`distribution_matching_gradient`).
        temporal_weight: lambda of UltraVSR Eq. 9 for the frame-difference term (0: off).
        fake_t_min, fake_t_max: time range of the fake score's denoising loss (default the whole schedule).
    """

    def __init__(
        self,
        schedule: _Schedule,
        real_score: ScoreModel,
        fake_score: ScoreModel,
        t_min: float | None = None,
        t_max: float | None = None,
        guidance_scale: float = 1.0,
        weighting: str = "dmd",
        temporal_weight: float = 0.0,
        fake_t_min: float | None = None,
        fake_t_max: float | None = None,
    ) -> None:
        if weighting not in WEIGHTINGS:
            raise ConfigError(
                f"unknown distribution-matching weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}"
            )
        if temporal_weight < 0:
            raise ConfigError(f"temporal_weight must be >= 0, got {temporal_weight}")
        self.schedule, self.real_score, self.fake_score = schedule, real_score, fake_score
        self.t_min, self.t_max, self.fake_t_min, self.fake_t_max = t_min, t_max, fake_t_min, fake_t_max
        self.guidance_scale, self.weighting, self.temporal_weight = (
            float(guidance_scale),
            weighting,
            float(temporal_weight),
        )

    # ----------------------------------------------------------------- score predictions
    @torch.no_grad()
    def predict_x0(
        self, x_t: torch.Tensor, t: torch.Tensor, condition: Any = None, uncond_condition: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0_real, x0_fake)`` ``[B, c, t, h, w]`` at ``x_t`` (no gradients).

        The real score is guided when ``guidance_scale != 1``: ``guided(real(x_t, c_uncond), real(x_t, c), s)``
        (two passes; guidance on the model output equals guidance on ``x0``, ``to_x0`` being affine in it).
        The fake score is called once with ``condition``.
        """
        timestep = self.schedule.model_timestep(t)
        real = self.real_score(x_t, timestep, condition)
        if self.guidance_scale != 1.0:
            if uncond_condition is None:
                raise ConfigError(
                    f"guidance_scale {self.guidance_scale} needs an unconditional condition (uncond_condition=...)"
                )
            real = guided(self.real_score(x_t, timestep, uncond_condition), real, self.guidance_scale)
        fake = self.fake_score(x_t, timestep, condition)
        return self.schedule.to_x0(real, x_t, t), self.schedule.to_x0(fake, x_t, t)

    # ----------------------------------------------------------------- losses
    def generator_loss(
        self,
        z: torch.Tensor,
        condition: Any = None,
        uncond_condition: Any = None,
        generator: torch.Generator | None = None,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> DistributionMatchingLoss:
        """The generator's loss for its latent output ``z`` ``[B, c, t, h, w]`` (gradients flow to ``z`` only).

        ``t`` ``[B]`` (schedule-native) is drawn in ``[t_min, t_max)`` and then ``noise`` ``[B, c, t, h, w]``
        ~ N(0, I), both from ``generator`` (e.g. ``VSRMethod.step_generator``), unless given.
        """
        if t is None:
            t = self.schedule.sample_t(
                z.shape[0], generator=generator, device=z.device, low=self.t_min, high=self.t_max
            )
        if noise is None:
            noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        x_t = self.schedule.add_noise(z.detach(), noise, t)
        x0_real, x0_fake = self.predict_x0(x_t, t, condition, uncond_condition)
        g = distribution_matching_gradient(z, x0_real, x0_fake, self.weighting)  # Eq. 8 / Eq. 10
        realistic = gradient_matching_loss(z, g)
        consistency = None
        loss = realistic
        if self.temporal_weight > 0:  # UltraVSR Eq. 11 (same x_t, t, scores and w(t): g_D = D(g))
            consistency = gradient_matching_loss(frame_differences(z), frame_differences(g))
            loss = realistic + self.temporal_weight * consistency  # Eq. 9
        return DistributionMatchingLoss(loss=loss, realistic=realistic, consistency=consistency, t=t, grad=g)

    def fake_score_loss(
        self,
        z: torch.Tensor,
        condition: Any = None,
        generator: torch.Generator | None = None,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The fake score's denoising loss on the generator's output ``z.detach()`` (scalar; no gradient to ``z``).

        Times are drawn in ``[fake_t_min, fake_t_max]`` (default the whole schedule, as in OSEDiff).
        """
        return denoising_loss(
            self.fake_score,
            self.schedule,
            z.detach(),
            condition,
            generator,
            self.fake_t_min,
            self.fake_t_max,
            t,
            noise,
        )
