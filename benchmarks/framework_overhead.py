"""Framework overhead: a training step through the full vsr/Lightning path vs a bare PyTorch loop.

Both run the same tiny reference method on the same in-memory batches with the same optimizer;
the Lightning side is timed from one ``on_train_batch_start`` to the next, so it includes
everything the framework does per step (loss logging and its NaN guard, progress bar, throughput
monitor, optimizer wrapping). Prints the median step times and their ratio (target <= 1.15).

    python benchmarks/framework_overhead.py [--steps 60] [--frames 8] [--size 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import RichProgressBar
from torch.utils.data import DataLoader

from reference import ReferenceVSR
from vsr_core.callbacks import ThroughputMonitor
from vsr_core.testing import SyntheticClips


class StepTimer(Callback):
    """Records the wall time between consecutive training batch starts."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())


def make_loader(args: argparse.Namespace) -> DataLoader:
    data = SyntheticClips(num_clips=args.steps * args.batch_size, frames=args.frames, size=args.size, scale=4)
    batches = [data[i] for i in range(len(data))]  # pre-generated: measure the step, not the data
    return DataLoader(batches, batch_size=args.batch_size, num_workers=0)


def make_method() -> ReferenceVSR:
    torch.manual_seed(0)
    return ReferenceVSR(scale=4, channels=32, num_blocks=2, learning_rate=1e-3)


def bare_loop(args: argparse.Namespace) -> list[float]:
    method = make_method()
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-3, weight_decay=0.0)
    times = []
    start = time.perf_counter()
    for batch in make_loader(args):
        restored = method.restore(batch["lq"])
        loss = torch.nn.functional.l1_loss(restored, batch["hq"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # Lightning's progress bar reads the loss each step too
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times


def lightning_loop(args: argparse.Namespace) -> list[float]:
    method = make_method()
    timer = StepTimer()
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[timer, RichProgressBar(), ThroughputMonitor()],
        limit_val_batches=0,
        log_every_n_steps=10,
    )
    trainer.fit(method, train_dataloaders=make_loader(args))
    return [b - a for a, b in zip(timer.starts, timer.starts[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="HQ crop size (LQ is size/4)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating bare/Lightning runs (evens out machine noise)"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    bare_times, lightning_times = [], []
    for _ in range(args.rounds):
        bare_times += bare_loop(args)[args.warmup :]
        lightning_times += lightning_loop(args)[args.warmup :]
    bare, lightning = statistics.median(bare_times), statistics.median(lightning_times)
    print(
        f"\nframework overhead: reference tiny step, batch {args.batch_size} x {args.frames} frames x {args.size}^2, "
        f"{args.rounds} x {args.steps} steps ({args.warmup} warm-up each), {args.threads} threads"
    )
    print(f"{'path':<24}{'median step (ms)':>18}")
    print(f"{'bare PyTorch loop':<24}{bare * 1e3:>18.2f}")
    print(f"{'vsr + Lightning':<24}{lightning * 1e3:>18.2f}")
    ratio = lightning / bare
    print(f"ratio (target <= 1.15): {ratio:.3f}  {'OK' if ratio <= 1.15 else 'ABOVE TARGET'}")


if __name__ == "__main__":
    main()
