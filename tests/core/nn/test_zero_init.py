"""Zero initialisation makes a residual module the exact identity, and training moves it away."""

from __future__ import annotations

import torch
from torch import nn

from vsr_core.nn.zero_init import is_zero_module, zero_module


def test_zero_module_zeroes_weight_and_bias_in_place() -> None:
    layer = nn.Linear(4, 3)
    assert not is_zero_module(layer)
    assert zero_module(layer) is layer
    assert is_zero_module(layer) and not layer.weight.any() and not layer.bias.any()
    assert not is_zero_module(nn.SiLU())  # no parameters: nothing to call zero


def test_zeroed_residual_branch_is_identity_then_learns() -> None:
    torch.manual_seed(0)
    branch = nn.Sequential(nn.Linear(4, 8), nn.SiLU(), zero_module(nn.Linear(8, 4)))
    x = torch.randn(5, 4)
    assert torch.equal(x + branch(x), x)
    loss = (x + branch(x) - torch.randn(5, 4)).pow(2).mean()
    loss.backward()
    assert branch[2].weight.grad.abs().sum() > 0  # the zeroed projection still receives a gradient
    torch.optim.SGD(branch.parameters(), lr=0.1).step()
    assert not torch.equal(x + branch(x), x)
