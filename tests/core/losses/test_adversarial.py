"""GAN losses and R1 by value: logits real = [2, 0.5, -1], fake = [-2, 0, 1.5], worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from vsr_core.errors import ConfigError
from vsr_core.losses import d_loss, g_loss, r1_penalty

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_hinge():
    # relu(1 - real) = [0, 0.5, 2] -> 5/6; relu(1 + fake) = [0, 1, 2.5] -> 7/6
    assert d_loss(REAL, FAKE, "hinge").item() == pytest.approx(5 / 6 + 7 / 6)
    assert g_loss(FAKE, "hinge").item() == pytest.approx(0.5 / 3)  # -mean([-2, 0, 1.5])


def test_non_saturating():
    d_real = (softplus(-2.0) + softplus(-0.5) + softplus(1.0)) / 3  # -log sigmoid(real)
    d_fake = (softplus(-2.0) + softplus(0.0) + softplus(1.5)) / 3  # -log(1 - sigmoid(fake))
    assert d_loss(REAL, FAKE, "non_saturating").item() == pytest.approx(d_real + d_fake)
    g = (softplus(2.0) + softplus(0.0) + softplus(-1.5)) / 3  # -log sigmoid(fake)
    assert g_loss(FAKE, "non_saturating").item() == pytest.approx(g)
    # as logs of probabilities, PS-SR Eq. 9's form
    p = torch.sigmoid
    assert d_loss(REAL, FAKE, "non_saturating").item() == pytest.approx(
        -(p(REAL).log().mean() + (1 - p(FAKE)).log().mean()).item(), rel=1e-6
    )


def test_least_squares():
    # (real - 1)^2 = [1, 0.25, 4] -> 5.25/3; fake^2 = [4, 0, 2.25] -> 6.25/3; (fake - 1)^2 = [9, 1, 0.25] -> 10.25/3
    assert d_loss(REAL, FAKE, "least_squares").item() == pytest.approx(5.25 / 3 + 6.25 / 3)
    assert g_loss(FAKE, "least_squares").item() == pytest.approx(10.25 / 3)


def test_several_heads_average_their_losses_and_shapes_do_not_matter():
    real2, fake2 = torch.tensor([[[0.0]]]), torch.tensor([[[3.0]]])  # hinge: 1 + 4 = 5; g: -3
    assert d_loss([REAL, real2], [FAKE, fake2], "hinge").item() == pytest.approx((2.0 + 5.0) / 2)
    assert g_loss([FAKE, fake2], "hinge").item() == pytest.approx((0.5 / 3 - 3.0) / 2)
    patch = REAL.reshape(1, 1, 3, 1, 1)  # [B, 1, t, h, w] patch logits: the mean over all of them
    assert d_loss(patch, FAKE.reshape(1, 1, 3, 1, 1), "hinge").item() == pytest.approx(2.0)


def test_gradients_push_the_right_way():
    fake = FAKE.clone().requires_grad_(True)
    for kind in ("hinge", "non_saturating", "least_squares"):
        fake.grad = None
        g_loss(fake, kind).backward()
        assert (fake.grad[fake.detach() < 1] < 0).all()  # the generator raises fake logits below the target


def test_r1_penalty_by_value():
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    x = torch.randn(4, 2, 2, requires_grad=True)
    logits = (x * w).sum(dim=(1, 2))  # D(x) = <w, x>: d D / d x = w for every sample
    penalty = r1_penalty(x, logits)
    assert penalty.item() == pytest.approx(1 + 4 + 0.25 + 9)
    penalty.backward()  # create_graph: the penalty trains D
    torch.testing.assert_close(w.grad, 2 * w.detach())

    x2 = torch.randn(3, 5, requires_grad=True)
    quad = [x2.square().sum(dim=1), torch.zeros(3) + 0 * x2.sum()]  # D(x) = |x|^2 -> 2x; second head constant
    expected = (2 * x2.detach()).square().sum(dim=1).mean()
    torch.testing.assert_close(r1_penalty(x2, quad), expected)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="unknown GAN loss"):
        d_loss(REAL, FAKE, "wasserstein")
    with pytest.raises(ConfigError, match="unknown GAN loss"):
        g_loss(FAKE, "lsgan")
    with pytest.raises(ValueError, match="same number"):
        d_loss([REAL, REAL], [FAKE], "hinge")
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(torch.randn(2, 3), torch.randn(2))
