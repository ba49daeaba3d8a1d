"""Real and fake scores as two LoRA adapters on one base, or as separate modules.

The toy backbone is one linear layer over channels, ``W x + b``; with a LoRA adapter of rank r and
alpha = r (scale 1) it computes ``W x + b + B A x``, written out by hand below.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vsr_core.diffusion import DDPMSchedule
from vsr_core.errors import ConfigError
from vsr_core.lora import add_lora
from vsr_core.losses import DistributionMatching, ModuleScore, activate_adapters, adapter_scores, use_adapters

C = 3


class ChannelLinear(nn.Module):
    """``[B, C, t, h, w] -> [B, C, t, h, w]``: a linear map over channels (the timestep and condition are unused)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(C, C)

    def forward(self, x_t, timestep, condition):
        return self.proj(x_t.movedim(1, -1)).movedim(-1, 1)


def apply(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("oc,bcthw->bothw", matrix, x)


def lora_delta(net: ChannelLinear, name: str) -> torch.Tensor:
    return net.proj.lora_B[name].weight @ net.proj.lora_A[name].weight  # [C, C], scale alpha / r = 1


def make_net(fake_zero: bool = False) -> ChannelLinear:
    torch.manual_seed(0)
    net = ChannelLinear()
    add_lora(net, rank=2, target_modules=["proj"], adapter_name="default")  # the generator's adapter
    add_lora(net, rank=2, target_modules=["proj"], adapter_name="fake")  # leaves only "fake" active
    with torch.no_grad():
        for name in ("default", "fake"):
            net.proj.lora_A[name].weight.normal_()
            if name == "default" or not fake_zero:
                net.proj.lora_B[name].weight.normal_()
    activate_adapters(net, "default")
    return net


def flags(net: nn.Module) -> dict[str, bool]:
    return {n: p.requires_grad for n, p in net.named_parameters()}


def test_real_is_the_base_fake_is_base_plus_fake_lora_generator_untouched():
    net = make_net()
    x = torch.randn(2, C, 2, 2, 2)
    w, b = net.proj.base_layer.weight.detach(), net.proj.base_layer.bias.detach().reshape(1, C, 1, 1, 1)
    before = flags(net)
    real, fake = adapter_scores(net)
    with torch.no_grad():
        out_real, out_fake = real(x, torch.tensor([5, 5]), None), fake(x, torch.tensor([5, 5]), None)
        out_gen = net(x, None, None)
    torch.testing.assert_close(out_real, apply(w, x) + b)
    torch.testing.assert_close(out_fake, apply(w + lora_delta(net, "fake"), x) + b)
    torch.testing.assert_close(out_gen, apply(w + lora_delta(net, "default"), x) + b)  # "default" active again
    assert flags(net) == before


def test_switching_adapters_keeps_requires_grad_as_set_by_the_method():
    net = make_net()
    net.proj.lora_A["fake"].weight.requires_grad_(False)  # e.g. Lightning toggled the generator's optimizer
    net.proj.lora_B["fake"].weight.requires_grad_(False)
    before = flags(net)
    real, fake = adapter_scores(net)
    x = torch.randn(1, C, 1, 1, 1)
    fake(x, torch.tensor([1]), None)
    real(x, torch.tensor([1]), None)
    with use_adapters(net, ["default", "fake"]):
        assert flags(net) == before
    assert flags(net) == before


def test_use_adapters_restores_on_error_and_disabled_state():
    net = make_net()
    x = torch.randn(1, C, 1, 1, 1)
    expected = net(x, None, None)
    with pytest.raises(RuntimeError, match="boom"), use_adapters(net, None):
        raise RuntimeError("boom")
    torch.testing.assert_close(net(x, None, None), expected)
    activate_adapters(net, None)  # base only, then a block with "fake" must come back to base only
    base = net(x, None, None)
    with use_adapters(net, "fake"):
        assert not torch.allclose(net(x, None, None), base)
    torch.testing.assert_close(net(x, None, None), base)


def test_fake_lora_starting_at_zero_gives_exactly_zero_generator_gradient():
    net = make_net(fake_zero=True)  # B = 0: fake == real, as right after add_lora
    real, fake = adapter_scores(net)
    dm = DistributionMatching(DDPMSchedule("sd"), real, fake, temporal_weight=0.5)
    z = torch.randn(2, C, 3, 2, 2, requires_grad=True)
    dm.generator_loss(z, generator=torch.Generator().manual_seed(0)).loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_fake_score_loss_trains_only_the_fake_adapter():
    net = make_net()
    real, fake = adapter_scores(net)
    dm = DistributionMatching(DDPMSchedule("sd"), real, fake)
    z = torch.randn(2, C, 3, 2, 2, requires_grad=True)
    dm.fake_score_loss(z, generator=torch.Generator().manual_seed(0)).backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert grads["proj.lora_A.fake.weight"] is not None and grads["proj.lora_B.fake.weight"].abs().sum() > 0
    assert grads["proj.lora_A.default.weight"] is None and grads["proj.lora_B.default.weight"] is None
    assert z.grad is None


def test_generator_loss_through_adapters_matches_the_formula():
    net = make_net()
    real, fake = adapter_scores(net)
    schedule = DDPMSchedule("sd")
    w, b = net.proj.base_layer.weight.detach(), net.proj.base_layer.bias.detach().reshape(1, C, 1, 1, 1)
    z = torch.randn(2, C, 3, 2, 2, dtype=torch.float32, requires_grad=True)
    noise = torch.randn(z.shape)
    t = torch.tensor([100, 600])
    DistributionMatching(schedule, real, fake).generator_loss(z, t=t, noise=noise).loss.backward()
    a = schedule.alphas_cumprod[t].float().reshape(-1, 1, 1, 1, 1)
    x_t = a.sqrt() * z.detach() + (1 - a).sqrt() * noise

    def x0(eps):
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    x0_real, x0_fake = x0(apply(w, x_t) + b), x0(apply(w + lora_delta(net, "fake"), x_t) + b)
    g = (x0_fake - x0_real) / (z.detach() - x0_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    torch.testing.assert_close(z.grad, 2 * g / z.numel(), rtol=1e-4, atol=1e-9)


def test_separate_modules_with_a_custom_call():
    unet = ChannelLinear()
    seen = {}

    def call(module, x_t, timestep, condition):  # e.g. unet(x, t, encoder_hidden_states=c).sample
        seen.update(timestep=timestep, condition=condition)
        return module(x_t, timestep, condition) * 2

    score = ModuleScore(unet, call)
    x = torch.randn(1, C, 1, 1, 1)
    out = score(x, torch.tensor([3]), "text")
    torch.testing.assert_close(out, 2 * unet(x, None, None))
    assert seen["condition"] == "text" and seen["timestep"].item() == 3


def test_bad_adapter_arrangements():
    with pytest.raises(ConfigError, match="no LoRA adapters"):
        adapter_scores(ChannelLinear())
    with pytest.raises(ConfigError, match="'critic'"):
        adapter_scores(make_net(), fake_adapter="critic")
    with pytest.raises(ConfigError, match="'nope'"):
        activate_adapters(make_net(), ["default", "nope"])
