"""EMA callback on one CPU process: the average, evaluation with EMA weights, exact resume."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from vsr_core.callbacks import EMA, EMA_CHECKPOINT_KEY
from vsr_core.errors import ConfigError


class Boring(L.LightningModule):
    """A trainable layer, a frozen layer and a buffer; records the weight validation/test saw."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 4)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)
        self.register_buffer("calls", torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.calls += 1
        return (self.layer(self.frozen(batch)) - batch.flip(-1)).pow(2).mean()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.seen.append(self.layer.weight.detach().clone())

    def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.seen.append(self.layer.weight.detach().clone())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD((p for p in self.parameters() if p.requires_grad), lr=0.1, momentum=0.9)


class Trajectory(L.Callback):
    """The trained weights after every optimizer step (index 0: at fit start)."""

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []

    def _record(self, pl_module: L.LightningModule) -> None:
        self.weights.append({n: p.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad})

    def on_fit_start(self, trainer, pl_module) -> None:
        self._record(pl_module)

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self._record(pl_module)


def loader(samples: int = 6) -> DataLoader:
    return DataLoader(torch.randn(samples, 4, generator=torch.Generator().manual_seed(3)), batch_size=2)


def make_trainer(tmp_path: Path, callbacks: list[L.Callback], steps: int, **kwargs) -> L.Trainer:
    options = dict(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    options.update(kwargs)
    return L.Trainer(callbacks=callbacks, **options)


def reference_ema(
    weights: list[dict[str, torch.Tensor]], decay: float, warmup=False, update_every=1, start_step=0
) -> dict[str, torch.Tensor]:
    """The EMA written out step by step, independently of the callback."""
    average = {n: w.clone() for n, w in weights[0].items()}
    updates = 0
    for step in range(1, len(weights)):
        current = weights[step]
        if step < start_step:
            average = {n: w.clone() for n, w in current.items()}
        elif step % update_every == 0:
            d = min(decay, (1 + updates) / (10 + updates)) if warmup else decay
            average = {n: d * average[n] + (1 - d) * current[n] for n in average}
            updates += 1
    return average


@pytest.mark.parametrize(
    "options",
    [
        dict(decay=0.7),
        dict(decay=0.99, warmup=True),
        dict(decay=0.6, update_every=2),
        dict(decay=0.5, start_step=3),
    ],
    ids=["plain", "warmup", "every2", "start3"],
)
def test_ema_is_the_moving_average_of_trainable_weights(tmp_path, options):
    torch.manual_seed(0)
    ema, trajectory = EMA(**options), Trajectory()
    make_trainer(tmp_path, [ema, trajectory], steps=6).fit(Boring(), loader())

    expected = reference_ema(trajectory.weights, **options)
    assert set(ema.shadow) == {"layer.weight", "layer.bias"}  # the frozen layer is not averaged
    for name, value in expected.items():
        assert ema.shadow[name].dtype == torch.float32
        torch.testing.assert_close(ema.shadow[name], value, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(ema.shadow["layer.weight"], trajectory.weights[-1]["layer.weight"])


def test_gradient_accumulation_updates_once_per_optimizer_step(tmp_path):
    torch.manual_seed(0)
    ema, trajectory = EMA(decay=0.8), Trajectory()
    # 4 batches per epoch, 2 per optimizer step: steps after batches 2, 4 and 6
    make_trainer(tmp_path, [ema, trajectory], steps=3, accumulate_grad_batches=2).fit(Boring(), loader(8))
    assert ema.num_updates == 3 and len(trajectory.weights) == 1 + 6  # recorded after every batch
    optimizer_steps = trajectory.weights[:1] + trajectory.weights[2::2]
    expected = reference_ema(optimizer_steps, decay=0.8)
    torch.testing.assert_close(ema.shadow["layer.weight"], expected["layer.weight"])


def test_validation_and_test_see_ema_weights_and_training_keeps_its_own(tmp_path):
    torch.manual_seed(0)
    model, ema = Boring(), EMA(decay=0.9)
    trainer = make_trainer(tmp_path, [ema], steps=4, limit_val_batches=1, val_check_interval=2)
    trainer.fit(model, loader(8), loader())  # validates after steps 2 and 4 (the last)
    assert len(model.seen) == 2
    trained = model.layer.weight.detach().clone()
    assert torch.equal(model.seen[-1], ema.shadow["layer.weight"])
    assert not torch.equal(ema.shadow["layer.weight"], trained)

    model.seen.clear()
    trainer.test(model, loader(), verbose=False)
    assert all(torch.equal(seen, ema.shadow["layer.weight"]) for seen in model.seen)
    assert torch.equal(model.layer.weight, trained)  # swapped back after test

    off = EMA(decay=0.9, use_ema_for_validation=False)
    model.seen.clear()
    make_trainer(tmp_path, [off], steps=2, limit_val_batches=1, val_check_interval=2).fit(model, loader(), loader())
    assert torch.equal(model.seen[0], model.layer.weight)


def test_resume_restores_trained_and_ema_weights_exactly(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    torch.manual_seed(0)
    straight_model, straight_ema = Boring(), EMA(decay=0.9, warmup=True)
    # 3 batches per epoch: the step-3 checkpoint closes epoch 0 and the resumed run replays epoch 1
    saver = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1, filename="{step}")
    make_trainer(tmp_path, [straight_ema, saver], steps=6, enable_checkpointing=True).fit(straight_model, loader())
    ckpt = tmp_path / "step=3.ckpt"

    saved = torch.load(ckpt, weights_only=False)
    assert set(saved[EMA_CHECKPOINT_KEY]) == {"layer.weight", "layer.bias"} < set(saved["state_dict"])
    assert all(value.device.type == "cpu" for value in saved[EMA_CHECKPOINT_KEY].values())
    assert not torch.equal(saved[EMA_CHECKPOINT_KEY]["layer.weight"], saved["state_dict"]["layer.weight"])

    resumed_model, resumed_ema = Boring(), EMA(decay=0.9, warmup=True)
    make_trainer(tmp_path, [resumed_ema], steps=6).fit(resumed_model, loader(), ckpt_path=ckpt)

    assert resumed_ema.num_updates == straight_ema.num_updates == 6
    assert resumed_model.calls == 6
    for name, value in straight_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], value), name
    for name, value in straight_ema.shadow.items():
        assert torch.equal(resumed_ema.shadow[name], value), name


def test_exporter_recipe_and_test_from_checkpoint(tmp_path):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [EMA(decay=0.5)], steps=3)
    trainer.fit(Boring(), loader())
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    checkpoint = torch.load(tmp_path / "run.ckpt", weights_only=False)

    state = dict(checkpoint["state_dict"])
    state.update(checkpoint[EMA_CHECKPOINT_KEY])  # the documented export recipe
    exported = Boring()
    exported.load_state_dict(state)
    assert torch.equal(exported.layer.weight, checkpoint[EMA_CHECKPOINT_KEY]["layer.weight"])

    # a fresh trainer testing from the checkpoint evaluates the EMA weights too
    fresh = Boring()
    make_trainer(tmp_path, [EMA(decay=0.5)], steps=1).test(
        fresh, loader(), ckpt_path=tmp_path / "run.ckpt", verbose=False
    )
    assert torch.equal(fresh.seen[0], checkpoint[EMA_CHECKPOINT_KEY]["layer.weight"])
    assert torch.equal(fresh.layer.weight, checkpoint["state_dict"]["layer.weight"])


def test_resuming_a_checkpoint_without_ema_starts_from_its_weights(tmp_path):
    torch.manual_seed(0)
    plain = make_trainer(tmp_path, [], steps=3)
    plain.fit(Boring(), loader())
    plain.save_checkpoint(tmp_path / "plain.ckpt")
    loaded = torch.load(tmp_path / "plain.ckpt", weights_only=False)["state_dict"]

    ema, trajectory = EMA(decay=0.5), Trajectory()
    with pytest.warns(UserWarning, match="no EMA weights"):
        make_trainer(tmp_path, [ema, trajectory], steps=4).fit(Boring(), loader(), ckpt_path=tmp_path / "plain.ckpt")
    assert torch.equal(trajectory.weights[0]["layer.weight"], loaded["layer.weight"])
    expected = 0.5 * trajectory.weights[0]["layer.weight"] + 0.5 * trajectory.weights[1]["layer.weight"]
    torch.testing.assert_close(ema.shadow["layer.weight"], expected)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(decay=1.0), "decay must be in"),
        (dict(update_every=0), "update_every must be at least 1"),
        (dict(start_step=-1), "start_step must be non-negative"),
    ],
)
def test_bad_options_raise_one_line_config_errors(options, message):
    with pytest.raises(ConfigError, match=message) as err:
        EMA(**options)
    assert "\n" not in str(err.value)


def test_flat_parameter_strategies_are_refused():
    from types import SimpleNamespace

    from lightning.pytorch.strategies import FSDPStrategy

    # Lightning's FSDP (FSDP1) refuses the CPU, so hand the hook a trainer holding one, unset up
    trainer = SimpleNamespace(strategy=FSDPStrategy.__new__(FSDPStrategy))
    with pytest.raises(ConfigError, match="supports DDP and FSDP2"):
        EMA().setup(trainer, Boring(), "fit")
