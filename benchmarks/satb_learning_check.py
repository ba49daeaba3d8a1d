"""SATB-VR learning check: does the tiny preset, trained for minutes on a CPU, beat bicubic upsampling?

Trains ``satb.SATBVR`` (tiny preset, the model arguments of ``plugins/satb/configs/tiny.yaml``, changed
by ``--set``) on the built-in training sample clips with the ``simple`` degradation for ``--steps`` steps
(cosine learning rate; at most ``--minutes`` of wall time) on ``--threads`` CPU threads, then evaluates on the held-out validation sample clips (same
degradation, deterministic) at 1 and 5 denoiser steps against bicubic upsampling of the same LQ
input, and prints a table of PSNR, SSIM and temporal flicker.

    python benchmarks/satb_learning_check.py                              # 1000 steps, ~8 minutes on 2 idle cores
    python benchmarks/satb_learning_check.py --steps 200                  # quick look
    python benchmarks/satb_learning_check.py --set recipe.blend=none      # an ablation, same budget
    python benchmarks/satb_learning_check.py --set recipe.timestep_sampling=jump_start --set recipe.diff_weighting=v

On a machine other jobs keep busy use ``--threads 1``: two OpenMP threads on two busy cores ran
about 15x slower per step than one (38 s vs 2.3 s, measured 2026-12-02).

Temporal flicker is the mean absolute difference between the frame-to-frame changes of the output
and those of the ground truth, in 8-bit levels (lower is better; 0 = the true temporal changes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import yaml
from lightning.pytorch import Callback, Trainer, seed_everything

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # in-tree plugin, importable without installation

from learning_check_common import sample_clips_data, temporal_flicker, wall_time_trainer

from satb import SATBVR
from vsr_core.data import VideoDataModule
from vsr_core.metrics import psnr, ssim
from vsr_core.video_ops import upsample_frames


class Progress(Callback):
    """Prints the step count, wall time and machine load every ``every`` steps (the box is shared)."""

    def __init__(self, every: int, started: float) -> None:
        self.every, self.started = every, started

    def on_train_batch_end(self, trainer: Trainer, *args: object) -> None:
        if trainer.global_step % self.every == 0:
            load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
            print(f"step {trainer.global_step}: {(time.time() - self.started) / 60:.1f} min, load {load}", flush=True)


def evaluate(method: SATBVR, datamodule: VideoDataModule, steps: list[int], seed: int) -> dict[str, dict[str, float]]:
    """Mean PSNR / SSIM / flicker over the validation clips for bicubic and each step count."""
    method.eval()
    scores: dict[str, dict[str, list[float]]] = {}

    def add(name: str, output: torch.Tensor, hq: torch.Tensor) -> None:
        row = scores.setdefault(name, {"psnr": [], "ssim": [], "flicker": []})
        output = output.clamp(-1, 1)
        row["psnr"] += psnr(output, hq).flatten().tolist()
        row["ssim"] += ssim(output, hq).flatten().tolist()
        row["flicker"] += temporal_flicker(output, hq).tolist()

    for index, batch in enumerate(datamodule.val_dataloader()):
        batch = datamodule.on_after_batch_transfer(batch, 0)
        hq, lq = batch["hq"], batch["lq"]
        add("bicubic", upsample_frames(lq, method.scale), hq)
        for n in steps:
            with torch.no_grad():
                add(
                    f"SATB-VR {n} step{'s' if n > 1 else ''}",
                    method.restore(lq, num_inference_steps=n, generator=torch.Generator().manual_seed(seed + index)),
                    hq,
                )
    return {name: {k: sum(v) / len(v) for k, v in row.items()} for name, row in scores.items()}


def print_table(results: dict[str, dict[str, float]], header: str) -> None:
    print(f"\n{header}")
    print(f"| {'method':<18} | {'PSNR (dB) ↑':>11} | {'SSIM ↑':>7} | {'flicker ↓':>9} |")
    print(f"|{'-' * 20}|{'-' * 13}|{'-' * 9}|{'-' * 11}|")
    for name, row in results.items():
        print(f"| {name:<18} | {row['psnr']:>11.2f} | {row['ssim']:>7.4f} | {row['flicker']:>9.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps (cosine learning rate over them)")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-time cap of the training (a safety stop)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model init argument of the config (VALUE is YAML; KEY.FIELD sets a field of an option group)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: tiny.yaml's")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--clip-frames", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=48)
    parser.add_argument(
        "--config", type=Path, default=ROOT / "plugins/satb/configs/tiny.yaml", help="model init_args from here"
    )
    parser.add_argument("--val-clips", type=int, default=None, help="validation clips to evaluate (default all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(args.seed, workers=True, verbose=False)
    started = time.time()
    options = dict(yaml.safe_load(args.config.read_text())["model"]["init_args"])
    options.pop("val_sampling", None)
    if args.learning_rate is not None:
        options["learning_rate"] = args.learning_rate
    for item in args.set:
        key, _, value = item.partition("=")
        *groups, name = key.split(".")
        target = options
        for group in groups:
            target = target.setdefault(group, {})
        target[name] = yaml.safe_load(value)
    budget = args.minutes * 60

    def cosine_over_steps(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        # Cosine annealing (as the paper trains) over a fixed step count, so a loaded machine trains
        # the same number of steps, only slower (the wall-time cap is a safety stop).
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / args.steps)))
        )

    print(f"model options: {json.dumps(options, default=str)}", flush=True)
    method = SATBVR(**options, lr_scheduler=cosine_over_steps)
    datamodule = sample_clips_data(
        clip_frames=args.clip_frames, crop_size=args.crop_size, batch_size=args.batch_size, seed=args.seed,
        val_clips=args.val_clips,
    )  # fmt: skip
    trainer = wall_time_trainer(budget, max_steps=args.steps, callbacks=[Progress(100, started)])
    load_at_start = os.getloadavg()
    trainer.fit(method, datamodule=datamodule)
    trained = time.time() - started
    steps = trainer.global_step
    loss = trainer.callback_metrics.get("train/loss")
    datamodule.setup("validate")
    results = evaluate(method, datamodule, [1, 5], args.seed)
    header = (
        f"SATB-VR tiny preset: {steps} steps in {trained / 60:.1f} min on {args.threads} CPU threads "
        f"(last loss {float(loss) if loss is not None else math.nan:.3f}); "
        f"validation sample clips, 'simple' degradation, x4, {args.clip_frames} frames, {args.crop_size}px crops"
    )
    print_table(results, header)
    if args.json:
        record = {
            "steps": steps,
            "train_seconds": trained,
            "load_at_start": load_at_start,
            "load_at_end": os.getloadavg(),
            "options": options,
            "results": results,
        }
        args.json.write_text(json.dumps(record, indent=2, default=str))
    beats = all(results[name]["psnr"] > results["bicubic"]["psnr"] for name in results if name != "bicubic")
    print(
        f"\nPSNR above bicubic at every step count: {'yes' if beats else 'NO'} (total {(time.time() - started) / 60:.1f} min)"
    )
    return 0 if beats else 1


if __name__ == "__main__":
    raise SystemExit(main())
