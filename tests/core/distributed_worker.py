"""Two-process CPU (gloo) training runs for tests/core/test_distributed.py.

Lightning launches the other rank by running this script again, so the tests start it with
``python distributed_worker.py <scenario> <out_dir>`` in a subprocess instead of inside pytest.
Each rank writes ``<out_dir>/rank<r>.pt`` with what the test asserts on.

Scenarios:
    fsdp: ModelParallelStrategy (FSDP2 over 2 ranks) with shard_method + activation
          checkpointing + EMA; trains, validates, checkpoints, then resumes from the checkpoint.
    ddp:  strategy="ddp" with the EMA callback; trains and checkpoints.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from vsr_core.callbacks import EMA, EMA_CHECKPOINT_KEY
from vsr_core.distributed import is_activation_checkpointed, shard_method


class Block(nn.Module):
    """A residual MLP block: the unit FSDP shards and checkpointing recomputes."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.fc(self.norm(x)))


class Backbone(nn.Module):
    """Trainable: input/output projections around blocks (odd sizes make uneven shards)."""

    def __init__(self, width: int = 9) -> None:
        super().__init__()
        self.proj_in = nn.Linear(4, width)
        self.blocks = nn.ModuleList([Block(width) for _ in range(3)])
        self.proj_out = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj_in(x)
        for block in self.blocks:
            h = block(h)
        return self.proj_out(h)


class FrozenCodec(nn.Module):
    """Frozen and used through ``encode`` only, like a VAE: stays replicated."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Linear(4, 4)
        self.requires_grad_(False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(x)


class Boring(L.LightningModule):
    """A method-shaped LightningModule: a backbone with blocks and a frozen codec."""

    def __init__(self, shard: bool) -> None:
        super().__init__()
        self.shard = shard
        self.backbone = Backbone()
        self.codec = FrozenCodec()
        self.losses: list[float] = []
        self.val_weights: list[torch.Tensor] = []

    def configure_model(self) -> None:
        if self.shard and not isinstance(self.backbone.blocks[0], torch.distributed.fsdp.FSDPModule):
            shard_method(self, self.device_mesh, (Block,), mixed_precision=True, activation_checkpointing=True)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = (self.backbone(self.codec.encode(batch)) - batch.flip(-1)).pow(2).mean()
        self.losses.append(loss.item())
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        weight = self.backbone.proj_in.weight
        full = weight.full_tensor() if isinstance(weight, torch.distributed.tensor.DTensor) else weight
        self.val_weights.append(full.detach().clone())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW((p for p in self.parameters() if p.requires_grad), lr=0.01)


def full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if isinstance(t, torch.distributed.tensor.DTensor) else t).detach().clone()


class Recorder(L.Callback):
    """Records the full trained and EMA values of ``backbone.proj_in.weight`` as training goes."""

    name = "backbone.proj_in.weight"

    def __init__(self, ema: EMA) -> None:
        self.ema = ema
        self.params: list[torch.Tensor] = []
        self.shadows: list[torch.Tensor] = []
        self.after_validation: list[torch.Tensor] = []

    def _record(self, pl_module: L.LightningModule) -> None:
        self.params.append(full(dict(pl_module.named_parameters())[self.name]))
        self.shadows.append(full(self.ema.shadow[self.name]))

    def on_train_start(self, trainer, pl_module) -> None:  # after a resumed run restored its state
        self._record(pl_module)

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self._record(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self.after_validation.append(full(dict(pl_module.named_parameters())[self.name]))


def trainer(strategy, steps: int, callbacks: list[L.Callback], root: Path) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_steps=steps,
        limit_val_batches=1,
        val_check_interval=2,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )


def main(scenario: str, out: Path) -> None:
    torch.manual_seed(0)
    data = torch.randn(2, 4).repeat(8, 1)  # every rank sees the same batch each step: loss must fall
    loaders = lambda: (DataLoader(data, batch_size=2), DataLoader(data, batch_size=2))  # noqa: E731
    if scenario == "fsdp":
        from lightning.pytorch.strategies import ModelParallelStrategy

        strategy = lambda: ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)  # noqa: E731
    else:
        strategy = lambda: "ddp"  # noqa: E731
    ema = EMA(decay=0.5)
    recorder = Recorder(ema)
    model = Boring(shard=scenario == "fsdp")
    first = trainer(strategy(), 3, [ema, recorder], out)
    first.fit(model, *loaders())
    ckpt = out / "run.ckpt"
    first.save_checkpoint(ckpt)
    result = {
        "world_size": first.world_size,
        "losses": model.losses,
        "param_types": {n: type(p).__name__ for n, p in model.named_parameters()},
        "local_numel": {
            n: (p.to_local() if hasattr(p, "to_local") else p).numel() for n, p in model.named_parameters()
        },
        "full_params": {n: full(p) for n, p in model.named_parameters()},
        "shadow_types": {n: type(s).__name__ for n, s in ema.shadow.items()},
        "shadow": {n: full(s) for n, s in ema.shadow.items()},
        "val_weights": model.val_weights,
        "recorded_params": recorder.params,
        "recorded_shadows": recorder.shadows,
        "after_validation": recorder.after_validation,
        "checkpointed_blocks": [is_activation_checkpointed(b) for b in model.backbone.blocks],
        "state_dict_keys": sorted(model.state_dict().keys()),
    }
    if scenario == "fsdp":
        ema2 = EMA(decay=0.5)
        recorder2 = Recorder(ema2)
        resumed_model = Boring(shard=True)
        resumed = trainer(strategy(), 4, [ema2, recorder2], out)
        resumed.fit(resumed_model, *loaders(), ckpt_path=ckpt)
        result["resumed_params"] = recorder2.params
        result["resumed_shadows"] = recorder2.shadows
        result["resumed_updates"] = ema2.num_updates
    if first.is_global_zero:
        metadata = torch.load(ckpt / "meta.pt" if ckpt.is_dir() else ckpt, weights_only=False)
        result["checkpoint_ema"] = metadata[EMA_CHECKPOINT_KEY]
    torch.save(result, out / f"rank{first.global_rank}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], Path(sys.argv[2]))
