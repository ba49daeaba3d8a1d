"""Zero initialisation: a residual module ``x + f(x)`` whose last projection is zero starts as the identity.

That is how a temporal module is added to a pretrained image network without changing what the network
computes at the first step (AnimateDiff, DiffVSR's ``zero_module``, UltraVSR's ``nn.init.zeros_`` on the RTS
output convolutions): the output projection's weight *and* bias are zero, so ``f(x)`` is exactly ``0`` for any
finite input. Gradients still reach the zeroed projection (its input is not zero), so one optimizer step
makes the module contribute.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

__all__ = ["is_zero_module", "zero_module"]

M = TypeVar("M", bound=nn.Module)


def zero_module(module: M) -> M:
    """Set every parameter of ``module`` to zero in place and return it (for chaining in constructors)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.zero_()
    return module


def is_zero_module(module: nn.Module) -> bool:
    """True if ``module`` has parameters and all of them are exactly zero."""
    parameters = list(module.parameters())
    return bool(parameters) and all(not p.detach().any() for p in parameters)
