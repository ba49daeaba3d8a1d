"""SATB-VR schedule math: SNR (Eq. 11), jump-start timesteps (Tab. 4), trajectory blending (Eq. 4).

Timesteps are diffusers indices ``0 … T-1`` (``T = 1000`` for CogVideoX). The paper writes the same
steps 1-based (``τ_s ~ U{1..T}``); its Table 4 already uses the 0-based indices (``199``, ``399``).
The blending takes the base model's ``vsr_core.diffusion.DDPMSchedule`` (its ``alpha_bar`` gives ``ᾱ_t``
and its ``snr`` the SNR ``γ_t = ᾱ_t / (1 − ᾱ_t)`` of Eq. 11), so it always follows the noise schedule
the denoiser was trained with.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from vsr_core.diffusion import DDPMSchedule
from vsr_core.errors import ConfigError

__all__ = [
    "BLEND_KINDS",
    "blend_weight",
    "jump_start_span",
    "jump_start_timesteps",
    "max_inference_steps",
    "sample_jump_start_timesteps",
    "sample_training_timesteps",
    "satb_blend",
]

BlendKind = Literal["satb", "none", "linear", "cosine"]
BLEND_KINDS: tuple[str, ...] = ("satb", "none", "linear", "cosine")


def jump_start_span(num_steps: int) -> int:
    """Length of the trajectory the few-step sampler covers: τ_s = span - 1 (released rule)."""
    if num_steps <= 2:
        return 200
    if num_steps == 3:
        return 300
    return 400


def max_inference_steps() -> int:
    """Largest step count whose stride ``span // n`` is still at least one timestep."""
    return jump_start_span(10**9)


def jump_start_timesteps(num_steps: int) -> list[int]:
    """Inference timesteps ``[τ_s, …, τ_1]`` for ``num_steps`` denoiser evaluations (Sec. 3.2, Tab. 4).

    A larger step budget starts later (τ_s = 199 / 299 / 399 for 1–2 / 3 / ≥4 steps) and the rest of
    the trajectory is split uniformly: ``stride = span // n``, timesteps ``i·stride − 1`` for
    ``i = n … 1``. This reproduces Table 4 exactly for 1, 2, 3, 4, 5, 8 and 10 steps.

    Raises:
        ConfigError: ``num_steps`` below 1 or above 400 (the stride would be zero).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int):
        raise ConfigError(f"the number of inference steps must be an integer, got {num_steps!r}")
    if num_steps < 1 or num_steps > max_inference_steps():
        raise ConfigError(f"steps must be between 1 and {max_inference_steps()}, got {num_steps}")
    stride = jump_start_span(num_steps) // num_steps
    return [i * stride - 1 for i in range(num_steps, 0, -1)]


def blend_weight(
    schedule: DDPMSchedule,
    tau_s: torch.Tensor,
    t: torch.Tensor,
    kind: BlendKind = "satb",
) -> torch.Tensor:
    """Weight ``w ∈ [0, 1]`` of the predictor output in ``x_b^t = x_gt + w·(x_p − x_gt)``, per sample.

    * ``satb``: ``w = γ_{τ_s} / γ_t`` (Eq. 4 with Eq. 11's ``γ = schedule.snr``, derived in App. A.1,
      Eq. 24–27). It equals 1 at ``t = τ_s`` and decays monotonically toward 0 as ``t`` decreases
      (SNR grows). Written as
      ``ᾱ_τ(1−ᾱ_t) / (ᾱ_t(1−ᾱ_τ))`` so it stays finite near ``ᾱ → 1``; ``t = τ_s`` is set to exactly 1
      so the zero-terminal-SNR step (``γ = 0``) does not produce 0/0.
    * ``linear``: ``w = t / τ_s``; ``cosine``: ``w = 1 − cos(π t / (2 τ_s))`` — the heuristic,
      schedule-agnostic alternatives of Table 2 (d), (e); same endpoints as SATB.
    * ``none``: ``w = 1`` — naive joint training on the predictor output at every step (Tab. 2 (c)).

    Args:
        schedule: the base model's noise schedule (``ᾱ_t = schedule.alpha_bar(t)``).
        tau_s: ``[B]`` integer start timesteps.
        t: ``[B]`` integer timesteps with ``t <= tau_s``.
    Returns:
        ``[B]`` float64 weights on ``t``'s device.
    """
    if kind not in BLEND_KINDS:
        raise ConfigError(f"blend must be one of {', '.join(BLEND_KINDS)}, got {kind!r}")
    tau_s = torch.as_tensor(tau_s, dtype=torch.long, device=torch.as_tensor(t).device)
    t = torch.as_tensor(t, dtype=torch.long, device=tau_s.device)
    if (t > tau_s).any():
        raise ValueError("blending needs t <= tau_s for every sample")
    same = t == tau_s
    if kind == "none":
        return torch.ones(t.shape, dtype=torch.float64, device=t.device)
    if kind == "satb":
        a_tau, a_t = schedule.alpha_bar(tau_s).to(t.device), schedule.alpha_bar(t).to(t.device)
        ratio = a_tau * (1.0 - a_t) / (a_t * (1.0 - a_tau)).clamp_min(torch.finfo(torch.float64).tiny)
        return torch.where(same, torch.ones_like(ratio), ratio.clamp(0.0, 1.0))
    fraction = t.double() / tau_s.double().clamp_min(1.0)
    weight = fraction if kind == "linear" else 1.0 - torch.cos(0.5 * math.pi * fraction)
    return torch.where(same, torch.ones_like(weight), weight)


def satb_blend(
    x_gt: torch.Tensor,
    x_p: torch.Tensor,
    tau_s: torch.Tensor,
    t: torch.Tensor,
    schedule: DDPMSchedule,
    kind: BlendKind = "satb",
) -> torch.Tensor:
    """SNR-Aware Trajectory Blending anchor ``x_b^t = x_gt + (γ_{τ_s}/γ_t)(x_p − x_gt)`` (Eq. 4 / 25).

    Args:
        x_gt: ``[B, ...]`` ground-truth latent.
        x_p: ``[B, ...]`` predictor output ``x_p^{τ_s}`` (gradients flow through it).
        tau_s, t: ``[B]`` integer timesteps, ``t <= tau_s``.
        schedule: the base model's noise schedule.
        kind: ``satb`` (the paper) or an ablation of Table 2 (see :func:`blend_weight`).
    Returns:
        ``[B, ...]`` blended anchor, dtype of ``x_gt``.
    """
    w = blend_weight(schedule, tau_s.to(x_gt.device), t.to(x_gt.device), kind).to(x_gt.dtype)
    w = w.view(-1, *([1] * (x_gt.ndim - 1)))
    return x_gt + w * (x_p - x_gt)


def sample_training_timesteps(
    batch_size: int,
    tau_max: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``τ_s ~ U{0..tau_max−1}`` and ``t ~ U{0..τ_s}`` per sample (Sec. 3.3, 0-based indices).

    Returns:
        ``(tau_s, t)``, two ``[batch_size]`` long tensors on ``device``.
    """
    gen_device = generator.device if generator is not None else torch.device(device)
    tau_s = torch.randint(0, tau_max, (batch_size,), generator=generator, device=gen_device)
    u = torch.rand(batch_size, generator=generator, device=gen_device, dtype=torch.float64)
    t = torch.floor(u * (tau_s + 1).double()).long().clamp_max(tau_s)
    return tau_s.to(device), t.to(device)


def sample_jump_start_timesteps(
    batch_size: int,
    step_counts: list[int],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``τ_s = t =`` the first timestep of :func:`jump_start_timesteps` ``(n)``, ``n ~ U(step_counts)``.

    Not the paper's sampling (that is :func:`sample_training_timesteps`): it trains the denoiser only
    at the points where the solver starts (``x_b = x_p`` there by Eq. 4, so the blend plays no part);
    a model trained so is restored only from those start points (docs/methods/satb.md).

    Returns:
        ``(tau_s, t)``, two equal ``[batch_size]`` long tensors on ``device``.
    """
    if not step_counts:
        raise ConfigError("train_step_counts must name at least one step count, e.g. [1, 5]")
    starts = torch.tensor([jump_start_timesteps(n)[0] for n in step_counts], dtype=torch.long)
    gen_device = generator.device if generator is not None else torch.device(device)
    pick = torch.randint(0, len(starts), (batch_size,), generator=generator, device=gen_device)
    tau_s = starts[pick.cpu()].to(device)
    return tau_s, tau_s.clone()
