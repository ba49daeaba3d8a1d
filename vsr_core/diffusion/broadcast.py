"""Broadcast per-sample schedule coefficients over a batch of any rank."""

from __future__ import annotations

import torch

__all__ = ["per_sample"]


def per_sample(coef: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """``coef`` (a scalar or ``[B]``) shaped ``[B, 1, ..., 1]`` to broadcast over ``like`` ``[B, ...]``, in ``like``'s dtype/device.

    Coefficients are computed in float64 and rounded once to the data dtype here.
    """
    coef = torch.as_tensor(coef)
    if coef.ndim == 0:
        return coef.to(device=like.device, dtype=like.dtype)
    if coef.ndim != 1 or coef.shape[0] not in (1, like.shape[0]):
        raise ValueError(f"per-sample values must be a scalar or [B={like.shape[0]}], got shape {list(coef.shape)}")
    return coef.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))
