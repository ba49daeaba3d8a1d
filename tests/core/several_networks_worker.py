"""Two-process CPU (gloo) runs of the three-network test method, for tests/core/test_optimization.py.

``python several_networks_worker.py <ddp|fsdp> <out_dir>``. Each rank writes ``<out_dir>/rank<r>.pt``.

    ddp:  6 steps straight with gradient clipping, accumulation over 2 batches, a StepLR per group and
          EMA; then 3 steps, checkpoint, resume to 6. Records the final weights of both runs.
    fsdp: ModelParallelStrategy (FSDP2 over 2 ranks, every top-level network sharded) for 3 steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from vsr_core.callbacks import EMA
from vsr_core.testing import SyntheticDataModule, ThreeNetworkMethod


def step_lr(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)


def full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if isinstance(t, torch.distributed.tensor.DTensor) else t).detach().clone()


def run(strategy, root: Path, max_steps: int, ckpt: Path | None = None) -> tuple[ThreeNetworkMethod, EMA, L.Trainer]:
    torch.manual_seed(0)
    method = ThreeNetworkMethod(learning_rate=1e-2, lr_scheduler=step_lr)
    ema = EMA(decay=0.5)
    saver = ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=3, save_top_k=-1)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_steps=max_steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accumulate_grad_batches=2,
        gradient_clip_val=1.0,
        callbacks=[ema, saver],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    # 24 clips, 2 ranks, batches of 2: 6 batches (3 update cycles) per rank and epoch, so the
    # checkpoint at step 3 ends an epoch and the synthetic loader resumes exactly.
    data = SyntheticDataModule(num_clips=24, frames=3, size=16, scale=2, batch_size=2)
    trainer.fit(method, datamodule=data, ckpt_path=ckpt)
    return method, ema, trainer


def main(scenario: str, out: Path) -> None:
    if scenario == "ddp":
        straight, ema, trainer = run("ddp", out / "straight", 6)
        resumed, _, _ = run("ddp", out / "resumed", 6, ckpt=out / "straight" / "step=3.ckpt")
        result = {
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "straight": {k: v.detach().clone() for k, v in straight.state_dict().items()},
            "resumed": {k: v.detach().clone() for k, v in resumed.state_dict().items()},
            "ema_names": sorted(ema.shadow),
            "generator_names": sorted(straight.generator_parameter_names()),
            "lrs": [opt.param_groups[0]["lr"] for opt in straight.optimizers()],
        }
    else:
        from lightning.pytorch.strategies import ModelParallelStrategy

        torch.manual_seed(0)
        before = ThreeNetworkMethod()
        before.ensure_training_modules()
        start = {k: v.detach().clone() for k, v in before.state_dict().items()}
        method, ema, trainer = run(
            ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1), out / "fsdp", 3
        )
        result = {
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "start": start,
            "trained": {n: full(p) for n, p in method.named_parameters()},
            "param_types": {n: type(p).__name__ for n, p in method.named_parameters()},
            "ema_names": sorted(ema.shadow),
        }
    torch.save(result, out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], Path(sys.argv[2]))
