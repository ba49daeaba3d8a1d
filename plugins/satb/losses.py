"""SATB-VR losses: v-prediction diffusion loss (Eq. 5) and Denoiser-Driven Consistency (Eq. 6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["ddc_loss", "diffusion_loss", "input_only_loss"]


def diffusion_loss(v_pred: torch.Tensor, v_target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``L_diff = E‖v − F_d(N(x_b^t, t, ε), x_lq, t)‖²`` (Eq. 5), mean over all elements, in fp32.

    ``v_pred``, ``v_target``: ``[B, ...]``. ``weight`` ``[B]`` (optional) multiplies each sample's
    mean squared error before the batch mean (``1 − ᾱ_t`` turns the v error into the x0 error).
    """
    if weight is None:
        return F.mse_loss(v_pred.float(), v_target.float())
    per_sample = (v_pred.float() - v_target.float()).square().flatten(1).mean(1)
    return (per_sample * weight.float()).mean()


def ddc_loss(features_pred: Sequence[torch.Tensor], features_gt: Sequence[torch.Tensor]) -> torch.Tensor:
    """``L_ddc = E‖Φ(x̂_p) − Φ(x̂_gt)‖²`` (Eq. 6), averaged over the tapped blocks, in fp32.

    ``features_gt`` are targets (computed without gradients); gradients reach the predictor
    through ``features_pred``.
    """
    if len(features_pred) != len(features_gt) or not features_pred:
        raise ValueError("DDC needs the same non-empty list of block features for x_p and x_gt")
    losses = [F.mse_loss(p.float(), g.detach().float()) for p, g in zip(features_pred, features_gt)]
    return torch.stack(losses).mean()


def input_only_loss(
    source: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A loss of a model's output that trains what produced ``source`` but not the model ("F_d is detached", Eq. 6).

    ``loss_fn(probe)`` runs the model on a leaf copy of ``source``; only ``∂loss/∂probe`` is taken
    (``torch.autograd.grad``, so no parameter of the model receives a gradient) and sent back
    into ``source``'s graph through a zero-valued surrogate. Nothing about the model is toggled,
    so activation checkpointing recomputes exactly what it saved, and FSDP2 hooks run as usual.

    Returns:
        ``(value, surrogate)``: the loss value (detached) and a scalar that is 0 in the forward
        pass and carries ``∂loss/∂source`` in the backward pass. Add ``λ·(value + surrogate)``.
    """
    probe = source.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(probe)
    if not (source.requires_grad and loss.requires_grad):
        return loss.detach(), source.new_zeros(())
    (grad,) = torch.autograd.grad(loss, probe)
    surrogate = (source * grad.to(source.dtype)).sum()
    return loss.detach(), surrogate - surrogate.detach()
