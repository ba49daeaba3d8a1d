"""VSRMethod behaviour every plugin inherits: losses, optimizers, seeding, parameter report."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.errors import ConfigError, NonFiniteLossError
from vsr_core.testing import BoringMethod, SyntheticDataModule, tiny_trainer


class NaNAtStepTwo(BoringMethod):
    """Boring method whose loss turns NaN at global step 2."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = F.l1_loss(self.restore(batch["lq"]), batch["hq"])
        bad = loss * float("nan") if self.global_step == 2 else loss
        self.log_losses({"l1": bad}, total=bad)
        return bad


class TwoOptimizers(BoringMethod):
    """A GAN-shaped method: manual optimization over two parameter groups."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.automatic_optimization = False
        self.critic = nn.Conv3d(3, 1, 3, padding=1)

    def parameter_groups(self):
        return {"generator": list(self.net.parameters()), "critic": list(self.critic.parameters())}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt_g, opt_c = self.optimizers()
        fake = self.restore(batch["lq"])
        loss_c = self.critic(fake.detach()).mean() - self.critic(batch["hq"]).mean()
        opt_c.zero_grad()
        self.manual_backward(loss_c)
        opt_c.step()
        loss_g = F.l1_loss(fake, batch["hq"]) - 0.01 * self.critic(fake).mean()
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        self.log_losses({"critic": loss_c, "generator": loss_g})


def test_non_finite_loss_stops_with_step_and_name(tmp_path):
    method = NaNAtStepTwo(width=4)
    trainer = tiny_trainer(tmp_path, max_steps=5, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"step 2: loss 'l1' is nan"):
        trainer.fit(method, datamodule=SyntheticDataModule(num_clips=8, frames=3, size=16))


def test_one_optimizer_per_parameter_group_with_overrides(tmp_path):
    method = TwoOptimizers(width=4, learning_rate=1e-3, optimizer_overrides={"critic": {"lr": 1e-5}})
    critic_before = method.critic.weight.detach().clone()
    head_before = method.net[2].weight.detach().clone()
    trainer = tiny_trainer(tmp_path, max_steps=4, limit_val_batches=0)
    trainer.fit(method, datamodule=SyntheticDataModule(num_clips=4, frames=3, size=16))
    generator_opt, critic_opt = method.optimizers()
    assert generator_opt.param_groups[0]["lr"] == 1e-3
    assert critic_opt.param_groups[0]["lr"] == 1e-5
    assert not torch.equal(method.critic.weight, critic_before)
    assert not torch.equal(method.net[2].weight, head_before)
    assert {id(p) for p in critic_opt.param_groups[0]["params"]} == {id(p) for p in method.critic.parameters()}


def test_unknown_override_group_is_a_config_error():
    method = BoringMethod(width=4, optimizer_overrides={"discriminator": {"lr": 1.0}})
    with pytest.raises(ConfigError, match="has parameter groups \\['model'\\]"):
        method.configure_optimizers()


def test_optimizer_callable_and_scheduler_are_used():
    method = BoringMethod(
        width=4,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.5),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
    )
    config = method.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD)
    assert config["lr_scheduler"]["interval"] == "step"


def test_step_generator_depends_on_step_and_stream_only():
    method = BoringMethod(width=4)
    a = torch.randn(4, generator=method.step_generator(stream=0))
    b = torch.randn(4, generator=method.step_generator(stream=0))
    c = torch.randn(4, generator=method.step_generator(stream=1))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_parameter_report_counts_frozen_and_trainable():
    method = BoringMethod(width=4)
    method.net[0].requires_grad_(False)
    total, trainable = method.parameter_report()["net"]
    stem = sum(p.numel() for p in method.net[0].parameters())
    assert total == sum(p.numel() for p in method.net.parameters())
    assert trainable == total - stem


def test_invalid_scale_is_a_config_error():
    with pytest.raises(ConfigError, match="scale must be a positive integer"):
        BoringMethod(scale=0)


class Blocked(BoringMethod):
    """BoringMethod whose convolutions are its 'blocks' (what FSDP shards and compile compiles)."""

    fsdp_block_classes = (nn.Conv2d,)


def test_compile_blocks_compiles_each_block_in_place_and_keeps_outputs():
    method = Blocked(width=4).eval()
    lq = torch.rand(1, 3, 2, 8, 8) * 2 - 1
    with torch.no_grad():
        eager = method.restore(lq)
    keys = list(method.state_dict())
    assert method.compile_blocks(backend="eager") == 2  # the two Conv2d of the net
    assert all(m._compiled_call_impl is not None for m in method.modules() if isinstance(m, nn.Conv2d))
    assert method.compile_blocks(backend="eager") == 0  # already compiled: nothing twice
    assert list(method.state_dict()) == keys  # in place: checkpoints and exports keep their names
    with torch.no_grad():
        torch.testing.assert_close(method.restore(lq), eager)


def test_compile_option_compiles_when_the_model_is_configured(monkeypatch):
    calls = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, **kw: calls.append(type(self).__name__))
    method = Blocked(width=4, compile=True)
    method.configure_model()
    assert calls == ["Conv2d", "Conv2d"]


class FrozenBaseWithAdapter(BoringMethod):
    """A frozen 'pretrained' stem (rebuilt from init args) with a LoRA adapter on it."""

    def __init__(self, adapter_trainable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from vsr_core.lora import add_lora

        self.stem = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        add_lora(self.stem, rank=2, target_modules=["0"])
        self.stem.requires_grad_(False)
        for name, p in self.stem.named_parameters():
            p.requires_grad_(adapter_trainable and "lora_" in name)
        self.mark_rebuildable(self.stem)


@pytest.mark.parametrize("adapter_trainable", [True, False])
def test_rebuildable_keys_are_the_frozen_base_weights_never_an_adapter(adapter_trainable):
    method = FrozenBaseWithAdapter(adapter_trainable=adapter_trainable, width=4)
    expected = {"stem.0.base_layer.weight", "stem.0.base_layer.bias", "stem.1.weight", "stem.1.bias"}
    assert method.rebuildable_state_keys() == expected  # the adapter (stem.0.lora_A/B) stays, frozen or not
    checkpoint = {"state_dict": method.state_dict()}
    method.on_save_checkpoint(checkpoint)
    saved = set(checkpoint["state_dict"])
    assert {"stem.0.lora_A.default.weight", "stem.0.lora_B.default.weight"} <= saved
    assert not saved & expected
    fresh = FrozenBaseWithAdapter(adapter_trainable=adapter_trainable, width=4)
    fresh.load_state_dict(checkpoint["state_dict"])  # the frozen base may be missing, nothing else
