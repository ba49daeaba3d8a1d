"""Distribution matching (VSD / DMD): the generator gradient and the fake score's loss, by hand on tiny tensors.

The scores are affine maps ``out = a * x_t + b`` whose clean-sample estimates are written out here
from the schedules' formulas (DDPM: ``x_t = sqrt(A) z + sqrt(1 - A) n``; flow: ``x_t = (1 - s) z + s n``),
with ``A = alphas_cumprod[t]`` read from the schedule's table; everything runs in float64.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vsr_core.diffusion import DDPMSchedule, FlowMatchingSchedule
from vsr_core.errors import ConfigError
from vsr_core.losses import DistributionMatching, ModuleScore, denoising_loss

SHAPE = (2, 2, 3, 2, 2)  # [B, c, t, h, w]
KINDS = ("ddpm-eps", "ddpm-v", "flow")


def schedule_of(kind: str):
    if kind == "ddpm-eps":
        return DDPMSchedule("sd")
    if kind == "ddpm-v":
        return DDPMSchedule("sd", {"prediction_type": "v_prediction"})
    return FlowMatchingSchedule("wan")


def fixed_time(kind: str) -> torch.Tensor:
    return torch.tensor([150, 731]) if kind.startswith("ddpm") else torch.tensor([0.25, 0.8], dtype=torch.float64)


def column(values: torch.Tensor) -> torch.Tensor:
    return values.to(torch.float64).reshape(-1, 1, 1, 1, 1)


def hand_noised(kind: str, schedule, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if kind == "flow":
        s = column(t)
        return (1 - s) * z + s * noise
    a = column(schedule.alphas_cumprod[t])
    return a.sqrt() * z + (1 - a).sqrt() * noise


def hand_x0(kind: str, schedule, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if kind == "flow":  # x0 = x_t - sigma v
        return x_t - column(t) * out
    a = column(schedule.alphas_cumprod[t])
    if kind == "ddpm-eps":  # x0 = (x_t - sqrt(1 - A) eps) / sqrt(A)
        return (x_t - (1 - a).sqrt() * out) / a.sqrt()
    return a.sqrt() * x_t - (1 - a).sqrt() * out  # v: x0 = sqrt(A) x_t - sqrt(1 - A) v


def hand_model_timestep(kind: str, t: torch.Tensor) -> torch.Tensor:
    return t if kind.startswith("ddpm") else t * 1000


class Affine:
    """``out = a * x_t + b``; records the timesteps it was called with."""

    def __init__(self, a: float, b: float) -> None:
        self.a, self.b, self.timesteps = a, b, []

    def __call__(self, x_t, timestep, condition):
        self.timesteps.append(torch.as_tensor(timestep).clone())
        return self.a * x_t + self.b


def tensors(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    noise = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    return z, noise


def hand_g(kind, schedule, z, noise, t, real: Affine, fake: Affine, weighting="dmd"):
    x_t = hand_noised(kind, schedule, z, noise, t)
    x0_real = hand_x0(kind, schedule, real.a * x_t + real.b, x_t, t)
    x0_fake = hand_x0(kind, schedule, fake.a * x_t + fake.b, x_t, t)
    g = x0_fake - x0_real
    if weighting == "dmd":
        g = g / (z - x0_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    return g


def frame_diff_adjoint(h: torch.Tensor, frames: int) -> torch.Tensor:
    """D^T h for D(x)_k = x_k - x_{k+1}: (D^T h)_k = h_k - h_{k-1} (h_{-1} = h_{T-1} = 0), written frame by frame."""
    out = torch.zeros(*h.shape[:2], frames, *h.shape[3:], dtype=h.dtype)
    for k in range(frames):
        if k < frames - 1:
            out[:, :, k] += h[:, :, k]
        if k > 0:
            out[:, :, k] -= h[:, :, k - 1]
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_real_equal_to_fake_gives_exactly_zero_gradient(kind):
    schedule = schedule_of(kind)
    score = Affine(0.7, 0.1)
    dm = DistributionMatching(schedule, score, score, temporal_weight=0.5)
    z = torch.randn(SHAPE, dtype=torch.float32, requires_grad=True)
    out = dm.generator_loss(z, generator=torch.Generator().manual_seed(3))
    out.loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))
    assert out.loss.item() == 0.0 and out.consistency.item() == 0.0
    assert torch.equal(out.grad, torch.zeros_like(out.grad))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("weighting", ["dmd", "none"])
def test_gradient_is_the_formula(kind, weighting):
    schedule = schedule_of(kind)
    real, fake = Affine(0.5, 0.1), Affine(0.8, -0.2)
    z, noise = tensors()
    t = fixed_time(kind)
    z.requires_grad_(True)
    dm = DistributionMatching(schedule, real, fake, weighting=weighting)
    out = dm.generator_loss(z, t=t, noise=noise)
    out.loss.backward()

    g = hand_g(kind, schedule, z.detach(), noise, t, real, fake, weighting)
    assert g.abs().min() > 0  # a real check: the scores differ everywhere
    torch.testing.assert_close(out.grad, g, rtol=1e-10, atol=0)
    torch.testing.assert_close(z.grad, 2 * g / z.numel(), rtol=1e-10, atol=0)
    torch.testing.assert_close(out.loss, g.square().mean(), rtol=1e-10, atol=0)
    # both scores saw x_t at the network's timestep (DDPM: t itself; flow: sigma * 1000)
    torch.testing.assert_close(real.timesteps[0].double(), hand_model_timestep(kind, t).double())
    torch.testing.assert_close(fake.timesteps[0].double(), hand_model_timestep(kind, t).double())


def test_descent_moves_z_towards_the_real_estimate():
    # Sign: one small step against the gradient brings z closer to x0_real (real score "x0 = 0"), away from fake.
    schedule = schedule_of("flow")

    def real(x_t, ts, c):  # v = x_t / s -> x0 = 0
        return x_t / torch.as_tensor(ts / 1000).reshape(-1, 1, 1, 1, 1)

    def fake(x_t, ts, c):  # v = 0 -> x0 = x_t
        return torch.zeros_like(x_t)

    z, noise = tensors()
    z.requires_grad_(True)
    dm = DistributionMatching(schedule, real, fake, weighting="none")
    dm.generator_loss(z, t=fixed_time("flow"), noise=noise).loss.backward()
    stepped = z.detach() - 10.0 * z.grad
    assert stepped.norm() < z.detach().norm()


@pytest.mark.parametrize("kind", KINDS)
def test_frame_difference_term_ultravsr_eq11(kind):
    schedule = schedule_of(kind)
    real, fake = Affine(0.5, 0.1), Affine(0.8, -0.2)
    z, noise = tensors(1)
    t = fixed_time(kind)
    z.requires_grad_(True)
    lam = 0.5
    dm = DistributionMatching(schedule, real, fake, temporal_weight=lam)
    out = dm.generator_loss(z, t=t, noise=noise)
    out.loss.backward()

    g = hand_g(kind, schedule, z.detach(), noise, t, real, fake)
    g_diff = g[:, :, :-1] - g[:, :, 1:]  # (x0_fake - x0_real)[:-1] - [1:], times the same w(t)
    expected = 2 * g / z.numel() + lam * frame_diff_adjoint(2 * g_diff / g_diff.numel(), SHAPE[2])
    torch.testing.assert_close(z.grad, expected, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(out.realistic, g.square().mean(), rtol=1e-10, atol=0)
    torch.testing.assert_close(out.consistency, g_diff.square().mean(), rtol=1e-10, atol=0)
    torch.testing.assert_close(out.loss, out.realistic + lam * out.consistency, rtol=1e-12, atol=0)
    assert len(real.timesteps) == 1 and len(fake.timesteps) == 1  # no extra network passes for Eq. 11


@pytest.mark.parametrize("kind", KINDS)
def test_classifier_free_guidance_of_the_real_score(kind):
    schedule = schedule_of(kind)
    z, noise = tensors(2)
    t = fixed_time(kind)
    cond, uncond = torch.full(SHAPE, 0.3, dtype=torch.float64), torch.full(SHAPE, -0.4, dtype=torch.float64)
    calls = []

    def real(x_t, ts, c):  # out = 0.5 x_t + c
        calls.append(c)
        return 0.5 * x_t + c

    fake = Affine(0.9, 0.05)
    s = 3.0
    z.requires_grad_(True)
    dm = DistributionMatching(schedule, real, fake, guidance_scale=s)
    out = dm.generator_loss(z, condition=cond, uncond_condition=uncond, t=t, noise=noise)
    out.loss.backward()

    x_t = hand_noised(kind, schedule, z.detach(), noise, t)
    guided_out = (0.5 * x_t + uncond) + s * (
        (0.5 * x_t + cond) - (0.5 * x_t + uncond)
    )  # = 0.5 x_t + uncond + s (c - u)
    x0_real = hand_x0(kind, schedule, guided_out, x_t, t)
    x0_fake = hand_x0(kind, schedule, 0.9 * x_t + 0.05, x_t, t)
    g = (x0_fake - x0_real) / (z.detach() - x0_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    torch.testing.assert_close(z.grad, 2 * g / z.numel(), rtol=1e-10, atol=0)
    assert len(calls) == 2 and {id(c) for c in calls} == {id(cond), id(uncond)}

    calls.clear()  # guidance 1: one conditional pass, and it is the unguided gradient
    z.grad = None
    DistributionMatching(schedule, real, fake).generator_loss(z, condition=cond, t=t, noise=noise).loss.backward()
    assert len(calls) == 1 and calls[0] is cond


def test_guidance_needs_an_unconditional_condition():
    dm = DistributionMatching(schedule_of("ddpm-eps"), Affine(1, 0), Affine(1, 0), guidance_scale=4.0)
    with pytest.raises(ConfigError, match="uncond_condition"):
        dm.generator_loss(torch.randn(SHAPE), condition=torch.zeros(SHAPE), generator=torch.Generator().manual_seed(0))


def test_time_range_is_respected_ddpm():
    schedule = schedule_of("ddpm-eps")
    real, fake = Affine(0.5, 0.0), Affine(0.6, 0.0)
    dm = DistributionMatching(schedule, real, fake, t_min=200, t_max=260, fake_t_min=900, fake_t_max=905)
    z = torch.randn(64, 1, 2, 2, 2)
    out = dm.generator_loss(z, generator=torch.Generator().manual_seed(0))
    drawn = real.timesteps[0]
    assert drawn.min() >= 200 and drawn.max() < 260 and len(set(drawn.tolist())) > 10
    assert torch.equal(fake.timesteps[0], drawn) and torch.equal(out.t, drawn)
    dm.fake_score_loss(z, generator=torch.Generator().manual_seed(1))
    fake_drawn = fake.timesteps[1]
    assert fake_drawn.min() >= 900 and fake_drawn.max() < 905


def test_time_range_is_respected_flow():
    schedule = schedule_of("flow")
    real, fake = Affine(0.5, 0.0), Affine(0.6, 0.0)
    dm = DistributionMatching(schedule, real, fake, t_min=300, t_max=700)
    out = dm.generator_loss(torch.randn(64, 1, 2, 2, 2), generator=torch.Generator().manual_seed(0))
    timesteps = real.timesteps[0]  # what the network received: sigma * 1000
    assert timesteps.min() >= 300 and timesteps.max() <= 700 and len(set(timesteps.tolist())) > 10
    torch.testing.assert_close(timesteps, out.t * 1000)
    on_grid = (out.t[:, None] == schedule.sigmas[None, :]).any(dim=1)
    assert on_grid.all()  # sigmas of the training grid


def test_draws_t_then_noise_from_the_generator():
    schedule = schedule_of("ddpm-v")
    real, fake = Affine(0.5, 0.1), Affine(0.8, -0.2)
    dm = DistributionMatching(schedule, real, fake, t_min=20, t_max=980)
    z = torch.randn(SHAPE, dtype=torch.float64)
    drawn = dm.generator_loss(z, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    t = schedule.sample_t(SHAPE[0], generator=gen, low=20, high=980)
    noise = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    given = dm.generator_loss(z, t=t, noise=noise)
    assert torch.equal(drawn.t, t)
    torch.testing.assert_close(drawn.loss, given.loss, rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_fake_score_loss_is_the_denoising_loss(kind):
    schedule = schedule_of(kind)

    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(0.6, dtype=torch.float64))

        def forward(self, x_t, timestep, condition):
            return self.scale * x_t

    net = Scale()
    dm = DistributionMatching(schedule, Affine(1.0, 0.0), ModuleScore(net))
    z, noise = tensors(4)
    t = fixed_time(kind)
    z.requires_grad_(True)
    loss = dm.fake_score_loss(z, t=t, noise=noise)
    loss.backward()

    x_t = hand_noised(kind, schedule, z.detach(), noise, t)
    if kind == "ddpm-eps":
        target = noise
    elif kind == "ddpm-v":  # v = sqrt(A) n - sqrt(1 - A) z
        a = column(schedule.alphas_cumprod[t])
        target = a.sqrt() * noise - (1 - a).sqrt() * z.detach()
    else:  # velocity n - z
        target = noise - z.detach()
    residual = 0.6 * x_t - target
    torch.testing.assert_close(loss, residual.square().mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(net.scale.grad, (2 * residual * x_t).mean(), rtol=1e-10, atol=0)
    assert z.grad is None  # the generator gets nothing from the fake score's loss


def test_denoising_loss_trains_a_real_score_on_ground_truth():
    # UltraVSR trains its real TRU too: the same loss on ground-truth latents, gradients to the score.
    schedule = schedule_of("ddpm-eps")
    weight = nn.Parameter(torch.tensor(0.0))

    def score(x_t, ts, c):
        return weight * x_t

    x0 = torch.randn(SHAPE)
    loss = denoising_loss(score, schedule, x0, generator=torch.Generator().manual_seed(0), t_min=0, t_max=10)
    loss.backward()
    assert weight.grad is not None and weight.grad != 0


def test_bad_options():
    with pytest.raises(ConfigError, match="weighting"):
        DistributionMatching(schedule_of("flow"), Affine(1, 0), Affine(1, 0), weighting="sds")
    with pytest.raises(ConfigError, match="temporal_weight"):
        DistributionMatching(schedule_of("flow"), Affine(1, 0), Affine(1, 0), temporal_weight=-1)
