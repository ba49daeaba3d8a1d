"""Blur kernels (Real-ESRGAN's mixed Gaussian family and 2D sinc), built batched on the data device.

Kernels of different sizes share one ``grid x grid`` support: a size-``k`` kernel is zero outside
its centred ``k x k`` window, exactly like Real-ESRGAN's padding of every kernel to 21x21, so one
grouped convolution blurs every frame with its own kernel.
"""

from __future__ import annotations

import math

import torch
from kornia.filters import filter2d

from vsr_core.data.degradations.params import KERNEL_FAMILIES, BlurParams, DriftParams
from vsr_core.data.degradations.random_draws import RandomDraws, drift_values, per_frame

__all__ = ["bivariate_kernels", "blur", "sample_blur_kernels", "sample_sinc_kernels", "sinc_kernels"]

_FAMILY_CODES = {"gaussian": 0, "generalized": 1, "plateau": 2}


def _grid(grid: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    ax = torch.arange(grid, device=device, dtype=torch.float32) - (grid - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _support(size: torch.Tensor, xx: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
    half = (size.float() - 1)[:, None, None] / 2
    return (xx.abs()[None] <= half) & (yy.abs()[None] <= half)


def bivariate_kernels(
    size: torch.Tensor,
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    rotation: torch.Tensor,
    beta: torch.Tensor,
    plateau: torch.Tensor,
    grid: int,
) -> torch.Tensor:
    """Normalised anisotropic (generalized) Gaussian or plateau kernels ``[N, grid, grid]``.

    All arguments are ``[N]``: odd ``size`` (<= grid), ``sigma_x``/``sigma_y`` in pixels along the
    rotated axes, ``rotation`` in radians, shape exponent ``beta`` (1 = Gaussian) and ``plateau``
    (bool). With ``q = x^T Sigma^-1 x`` (``Sigma = R diag(sx^2, sy^2) R^T``) the kernel is
    ``exp(-q^beta / 2)`` (generalized Gaussian) or ``1 / (1 + q^beta)`` (plateau), as Real-ESRGAN.
    """
    xx, yy = _grid(grid, size.device)
    cos, sin = torch.cos(rotation)[:, None, None], torch.sin(rotation)[:, None, None]
    # Coordinates in the kernel's principal axes: q = (u/sx)^2 + (v/sy)^2 equals x^T Sigma^-1 x.
    u = cos * xx[None] + sin * yy[None]
    v = -sin * xx[None] + cos * yy[None]
    q = (u / sigma_x[:, None, None]) ** 2 + (v / sigma_y[:, None, None]) ** 2
    qb = q.pow(beta[:, None, None])
    kernel = torch.where(plateau[:, None, None], 1.0 / (qb + 1.0), torch.exp(-0.5 * qb))
    kernel = kernel * _support(size, xx, yy)
    return kernel / kernel.sum(dim=(-2, -1), keepdim=True)


def sinc_kernels(size: torch.Tensor, omega: torch.Tensor, grid: int) -> torch.Tensor:
    """Normalised circular low-pass (2D sinc) kernels ``[N, grid, grid]`` with cut-off ``omega`` [N].

    ``k(r) = omega * J1(omega r) / (2 pi r)``, centre ``omega^2 / (4 pi)`` (Real-ESRGAN's
    ``circular_lowpass_kernel``); negative side lobes are kept: they make the ringing.
    """
    xx, yy = _grid(grid, size.device)
    r = torch.sqrt(xx**2 + yy**2)[None]
    w = omega[:, None, None]
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    kernel = w * torch.special.bessel_j1(w * safe_r) / (2 * math.pi * safe_r)
    kernel = torch.where(r > 0, kernel, w**2 / (4 * math.pi))
    kernel = kernel * _support(size, xx, yy)
    return kernel / kernel.sum(dim=(-2, -1), keepdim=True)


def sample_blur_kernels(
    draws: RandomDraws, clips: int, frames: int, params: BlurParams, drift: DriftParams | None
) -> tuple[torch.Tensor, list[bool]]:
    """Per-frame kernels ``[clips*frames, K, K]`` (K = largest size) and per-clip "apply" flags.

    Every frame of a clip gets the same kernel unless ``drift`` is set, which moves its sigmas,
    rotation, beta and sinc cut-off smoothly over the clip. A fixed number of values is drawn per
    clip whatever the kernel type, so the stream of later stages does not depend on the choice.
    """
    p = params
    apply = draws.host_bernoulli(clips, p.prob)
    size = draws.choice(clips, p.kernel_sizes)
    use_sinc = draws.uniform(clips) < p.sinc_prob
    kind = draws.categorical(clips, p.kernel_probs)
    sigma_x = draws.uniform(clips, *p.sigma)
    sigma_y = draws.uniform(clips, *p.sigma)
    rotation = draws.uniform(clips, *p.rotation)
    beta_g = draws.split_uniform(clips, *p.beta_gaussian)
    beta_p = draws.split_uniform(clips, *p.beta_plateau)
    omega = torch.where(size < 13, draws.uniform(clips, *p.sinc_omega_small), draws.uniform(clips, *p.sinc_omega))

    families = [KERNEL_FAMILIES[name] for name in p.kernel_types]
    isotropic = torch.tensor([iso for iso, _ in families], device=draws.device)[kind]
    family = torch.tensor([_FAMILY_CODES[f] for _, f in families], device=draws.device)[kind]
    omega_range = (min(p.sinc_omega[0], p.sinc_omega_small[0]), max(p.sinc_omega[1], p.sinc_omega_small[1]))

    def frame(values: torch.Tensor, step: float, value_range: tuple[float, float]) -> torch.Tensor:
        # Per-frame values [B*T]: the clip's value on every frame, or a smooth drift when enabled.
        if drift is None:
            return per_frame(values, frames)
        return drift_values(draws, values, frames, step, *value_range)

    step = drift or DriftParams()
    sigma_x = frame(sigma_x, step.sigma, p.sigma)
    sigma_y = frame(sigma_y, step.sigma, p.sigma)
    rotation = frame(rotation, step.rotation, p.rotation)
    beta_g = frame(beta_g, step.beta_gaussian, (min(p.beta_gaussian[0], 1.0), max(p.beta_gaussian[1], 1.0)))
    beta_p = frame(beta_p, step.beta_plateau, (min(p.beta_plateau[0], 1.0), max(p.beta_plateau[1], 1.0)))
    omega = frame(omega, step.sinc_omega, omega_range)

    size, use_sinc = per_frame(size, frames), per_frame(use_sinc, frames)
    isotropic, family = per_frame(isotropic, frames), per_frame(family, frames)
    sigma_y = torch.where(isotropic, sigma_x, sigma_y)
    rotation = torch.where(isotropic, torch.zeros_like(rotation), rotation)
    beta = torch.where(family == 1, beta_g, torch.where(family == 2, beta_p, torch.ones_like(beta_g)))

    grid = max(p.kernel_sizes)
    mixed = bivariate_kernels(size, sigma_x, sigma_y, rotation, beta, family == 2, grid)
    sinc = sinc_kernels(size, omega, grid)
    return torch.where(use_sinc[:, None, None], sinc, mixed), apply


def sample_sinc_kernels(
    draws: RandomDraws,
    clips: int,
    frames: int,
    prob: float,
    sizes: tuple[int, ...],
    omega: tuple[float, float],
    drift: DriftParams | None,
) -> tuple[torch.Tensor, list[bool]]:
    """Final-stage sinc kernels ``[clips*frames, K, K]`` and per-clip apply flags (probability ``prob``)."""
    apply = draws.host_bernoulli(clips, prob)
    size = draws.choice(clips, sizes)
    cutoff = draws.uniform(clips, *omega)
    if drift is None:
        cutoff = per_frame(cutoff, frames)
    else:
        cutoff = drift_values(draws, cutoff, frames, drift.sinc_omega, *omega)
    return sinc_kernels(per_frame(size, frames), cutoff, max(sizes)), apply


def blur(frames: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter each frame ``[N, C, h, w]`` with its own kernel ``[N, K, K]`` (one grouped conv).

    Reflect padding as Real-ESRGAN's ``filter2D``; frames too small to reflect by ``K//2`` pixels
    (after a strong downscale) fall back to replicate padding.
    """
    half = kernels.shape[-1] // 2
    border = "reflect" if min(frames.shape[-2:]) > half else "replicate"
    return filter2d(frames, kernels.to(frames.dtype), border_type=border)
