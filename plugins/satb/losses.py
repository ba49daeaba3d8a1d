"""SATB-VR losses: v-prediction diffusion loss (Eq. 5) and Denoiser-Driven Consistency (Eq. 6)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def diffusion_loss(v_pred: torch.Tensor, v_target: torch.Tensor) -> torch.Tensor:
    """``L_diff = E‖v − F_d(N(x_b^t, t, ε), x_lq, t)‖²`` (Eq. 5), mean over all elements, in fp32."""
    return F.mse_loss(v_pred.float(), v_target.float())


def ddc_loss(features_pred: Sequence[torch.Tensor], features_gt: Sequence[torch.Tensor]) -> torch.Tensor:
    """``L_ddc = E‖Φ(x̂_p) − Φ(x̂_gt)‖²`` (Eq. 6), averaged over the tapped blocks, in fp32.

    ``features_gt`` are targets (computed without gradients); gradients reach the predictor
    through ``features_pred``.
    """
    if len(features_pred) != len(features_gt) or not features_pred:
        raise ValueError("DDC needs the same non-empty list of block features for x_p and x_gt")
    losses = [F.mse_loss(p.float(), g.detach().float()) for p, g in zip(features_pred, features_gt)]
    return torch.stack(losses).mean()


@contextmanager
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Run a forward with the modules' parameters excluded from autograd ("F_d is detached", Eq. 6).

    Parameters are marked ``requires_grad=False`` for the duration, so the graph built inside has
    no edges to them: a loss computed from it back-propagates into the *inputs* only (here: the
    predictor output) and leaves the denoiser's gradients untouched. Restored on exit.
    """
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
