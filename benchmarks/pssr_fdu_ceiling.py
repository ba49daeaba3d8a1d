"""How sharp can PS-SR's frequency-domain update (Eq. 13-14) make T steps with a perfect draft?

No training: the draft's prediction at every step is replaced by the ground truth (an oracle
draft), the base output by bicubic upsampling moved a fraction ``m`` of the way towards the
ground truth (``m = 0``: bicubic; the tiny preset's T = 1 output has the sharpness of about
``m = 0.3``). After ``T - 1`` updates the output's sharpness (Tenengrad, as in
``benchmarks/pssr_learning_check.py``) is the most any draft can give at that alpha, for both
readings of where alpha sits (``frequency.alpha_scales``: ``blend`` = Eq. 14 as printed, ``draft``).
On the built-in held-out sample clips::

    python benchmarks/pssr_fdu_ceiling.py [--mix 0 0.3] [--alphas 0.6 1] [--steps 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # in-tree plugin, importable without installation
sys.path.insert(0, str(ROOT / "benchmarks"))

from pssr_learning_check import sharpness

from pssr.frequency import ALPHA_SCALES, frequency_update
from vsr_core.data import SampleClips, VideoDataModule
from vsr_core.video_ops import upsample_frames


def oracle_updates(
    base: torch.Tensor, truth: torch.Tensor, alpha: float, steps: int, alpha_scales: str
) -> torch.Tensor:
    """``steps - 1`` frequency updates of ``base`` with ``truth`` as every draft prediction (``[B,3,T,H,W]``)."""
    x = base
    for _ in range(steps - 1):
        x = frequency_update(x, truth, alpha, alpha_scales=alpha_scales)
    return x


def ceiling(datamodule: VideoDataModule, mixes: list[float], alphas: list[float], steps: int) -> dict[str, float]:
    """Mean sharpness per row name over the validation clips (ground truth, each base, each update)."""
    scores: dict[str, list[float]] = {}

    def add(name: str, video: torch.Tensor) -> None:
        scores.setdefault(name, []).extend(sharpness(video.clamp(-1, 1)).tolist())

    for batch in datamodule.val_dataloader():
        batch = datamodule.on_after_batch_transfer(batch, 0)
        truth, bicubic = batch["hq"], upsample_frames(batch["lq"], datamodule.scale)
        add("ground truth", truth)
        for m in mixes:
            base = bicubic + m * (truth - bicubic)
            add(f"base m={m:g} (T=1)", base)
            for alpha in alphas:
                for reading in ALPHA_SCALES:
                    add(
                        f"base m={m:g}, T={steps}, α {alpha:g} ({reading})",
                        oracle_updates(base, truth, alpha, steps, reading),
                    )
    return {name: sum(v) / len(v) for name, v in scores.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mix", type=float, nargs="+", default=[0.0, 0.3], help="base = bicubic + m (GT - bicubic)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.6, 1.0])
    parser.add_argument("--steps", type=int, default=4, help="T: base step + T - 1 oracle draft steps")
    parser.add_argument("--val-crop-size", type=int, default=192)
    parser.add_argument("--val-clips", type=int, default=None)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be >= 2 (T = 1 has no frequency update)")
    datamodule = VideoDataModule(
        train=SampleClips("train"),
        val=SampleClips("val"),
        clip_frames=5,
        val_crop_size=args.val_crop_size,
        scale=4,
        degradation="simple",
        val_batch_size=1,
        num_workers=0,
        persistent_workers=False,
        pin_memory=False,
        seed=0,
        val_clips=args.val_clips,
    )
    datamodule.setup("fit")
    results = ceiling(datamodule, args.mix, args.alphas, args.steps)
    print("| row | sharpness ↑ |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
