"""GAN losses for the discriminator and the generator, and the R1 gradient penalty.

``real_logits`` / ``fake_logits`` are raw discriminator outputs of any shape (patch logits
``[B, 1, t, h, w]``, ``[B]``, ...) or a sequence of such tensors (a multi-head discriminator: the loss
is the mean of the per-tensor losses). With ``m(.)`` the mean over all elements:

==================  ==========================================  ======================
kind                discriminator loss                          generator loss
==================  ==========================================  ======================
``hinge``           ``m(relu(1 - real)) + m(relu(1 + fake))``   ``-m(fake)``
``non_saturating``  ``m(softplus(-real)) + m(softplus(fake))``  ``m(softplus(-fake))``
``least_squares``   ``m((real - 1)^2) + m(fake^2)``             ``m((fake - 1)^2)``
==================  ==========================================  ======================

``non_saturating`` is the log loss of Goodfellow et al. (2014) and PS-SR Eq. 9
(``softplus(-x) = -log sigmoid(x)``, ``softplus(x) = -log(1 - sigmoid(x))``) with the generator's
non-saturating ``-log D(G(z))``; ``hinge`` is Lim & Ye (2017) / Miyato et al. (2018);
``least_squares`` is LSGAN (Mao et al. 2017, targets a=0, b=1, c=1) without the 1/2 factors.
For the discriminator step, pass ``fake_logits`` of detached generator outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vsr_core.errors import ConfigError

__all__ = ["GAN_LOSSES", "d_loss", "g_loss", "r1_penalty"]

GAN_LOSSES = ("hinge", "non_saturating", "least_squares")

Logits = torch.Tensor | Sequence[torch.Tensor]


def _check(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ConfigError(f"unknown GAN loss {kind!r}; choose one of {', '.join(GAN_LOSSES)}")


def _as_list(logits: Logits) -> list[torch.Tensor]:
    return [logits] if isinstance(logits, torch.Tensor) else list(logits)


def _d_single(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    real, fake = real.float(), fake.float()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "non_saturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    return (real - 1).square().mean() + fake.square().mean()


def _g_single(fake: torch.Tensor, kind: str) -> torch.Tensor:
    fake = fake.float()
    if kind == "hinge":
        return -fake.mean()
    if kind == "non_saturating":
        return F.softplus(-fake).mean()
    return (fake - 1).square().mean()


def d_loss(real_logits: Logits, fake_logits: Logits, kind: str = "hinge") -> torch.Tensor:
    """The discriminator's loss (scalar, float32) for ``kind`` in :data:`GAN_LOSSES` (table in the module doc)."""
    _check(kind)
    reals, fakes = _as_list(real_logits), _as_list(fake_logits)
    if len(reals) != len(fakes) or not reals:
        raise ValueError(f"real and fake logits must be the same number of tensors, got {len(reals)} and {len(fakes)}")
    return torch.stack([_d_single(r, f, kind) for r, f in zip(reals, fakes, strict=True)]).mean()


def g_loss(fake_logits: Logits, kind: str = "hinge") -> torch.Tensor:
    """The generator's adversarial loss (scalar, float32) on the discriminator's logits of generated samples."""
    _check(kind)
    fakes = _as_list(fake_logits)
    if not fakes:
        raise ValueError("g_loss needs at least one logits tensor")
    return torch.stack([_g_single(f, kind) for f in fakes]).mean()


def r1_penalty(real_inputs: torch.Tensor, real_logits: Logits) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): ``mean_b ||d sum(D(x)) / d x_b||^2`` over the batch of real inputs (scalar).

    ``real_inputs`` ``[B, ...]`` must have had ``requires_grad_(True)`` before the discriminator ran on
    them; the gradient keeps its graph (``create_graph=True``), so the penalty trains the discriminator.
    Weight it with ``gamma / 2`` as in StyleGAN2.
    """
    if not real_inputs.requires_grad:
        raise ValueError("r1_penalty needs real_inputs.requires_grad_(True) before the discriminator forward")
    total = sum(logits.float().sum() for logits in _as_list(real_logits))
    (grad,) = torch.autograd.grad(total, real_inputs, create_graph=True)
    return grad.float().square().reshape(grad.shape[0], -1).sum(dim=1).mean()
