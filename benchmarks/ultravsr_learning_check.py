"""UltraVSR learning check: does the tiny preset, trained for minutes on a CPU, beat bicubic upsampling?

Two stages within ``--minutes`` of wall time on ``--threads`` CPU threads:

1. the tiny analogue of SD 2.1's pretraining (``benchmarks/ultravsr_tiny_base.py``): the tiny preset's VAE learns
   to reconstruct the training clips' HQ frames, then its UNet learns to denoise their latents; saved with
   ``save_pretrained`` and loaded through UltraVSR's ``pretrained=`` path, as a real SD 2.1 folder is
   (``--pretrained FOLDER`` reuses a saved one and gives the whole budget to stage 2);
2. ``ultravsr.UltraVSR`` (tiny preset, the model arguments of ``plugins/ultravsr/configs/tiny.yaml``: four
   networks, DRS with the tiny DEM, RTS, SJD, temporal GAN) fine-tunes that base on the built-in training sample
   clips with the ``simple`` degradation for the rest of the budget.

It then restores the held-out validation sample clips (same degradation, deterministic) in one step and prints
PSNR, SSIM and temporal flicker next to bicubic upsampling of the same LR input.

    python benchmarks/ultravsr_learning_check.py                 # ~10 minutes on 2 cores
    python benchmarks/ultravsr_learning_check.py --minutes 3     # quick look

Temporal flicker is the mean absolute difference between the frame-to-frame changes of the output and those
of the ground truth, in 8-bit levels (lower is better; 0 = the true temporal changes). The check passes when
the one-step restore has a higher PSNR than bicubic and a flicker no worse than bicubic's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from lightning.pytorch import seed_everything

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # in-tree plugin, importable without installation

sys.path.insert(0, str(ROOT / "benchmarks"))

from learning_check_common import cosine_over_seconds, sample_clips_data, temporal_flicker, wall_time_trainer  # noqa: E402
from ultravsr_tiny_base import pretrain_tiny_base  # noqa: E402

from ultravsr import UltraVSR  # noqa: E402
from vsr_core.data import VideoDataModule  # noqa: E402
from vsr_core.metrics import psnr, ssim  # noqa: E402
from vsr_core.video_ops import upsample_frames  # noqa: E402


def evaluate(method: UltraVSR, datamodule: VideoDataModule) -> dict[str, dict[str, float]]:
    """Mean PSNR / SSIM / flicker over the validation clips for bicubic and the one-step restore."""
    method.eval()
    scores: dict[str, dict[str, list[float]]] = {}

    def add(name: str, output: torch.Tensor, hq: torch.Tensor) -> None:
        row = scores.setdefault(name, {"psnr": [], "ssim": [], "flicker": []})
        output = output.clamp(-1, 1)
        row["psnr"] += psnr(output, hq).flatten().tolist()
        row["ssim"] += ssim(output, hq).flatten().tolist()
        row["flicker"] += temporal_flicker(output, hq).tolist()

    for batch in datamodule.val_dataloader():
        batch = datamodule.on_after_batch_transfer(batch, 0)
        hq, lq = batch["hq"], batch["lq"]
        add("bicubic", upsample_frames(lq, method.scale), hq)
        with torch.no_grad():
            add("UltraVSR 1 step", method.restore(lq), hq)
    return {name: {k: sum(v) / len(v) for k, v in row.items()} for name, row in scores.items()}


def print_table(results: dict[str, dict[str, float]], header: str) -> None:
    print(f"\n{header}")
    print(f"| {'method':<16} | {'PSNR (dB) ↑':>11} | {'SSIM ↑':>7} | {'flicker ↓':>9} |")
    print(f"|{'-' * 18}|{'-' * 13}|{'-' * 9}|{'-' * 11}|")
    for name, row in results.items():
        print(f"| {name:<16} | {row['psnr']:>11.2f} | {row['ssim']:>7.4f} | {row['flicker']:>9.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=8.5, help="training wall-time budget (both stages)")
    parser.add_argument("--base-vae-seconds", type=float, default=150.0, help="stage 1: VAE reconstruction")
    parser.add_argument("--base-unet-seconds", type=float, default=60.0, help="stage 1: UNet denoising")
    parser.add_argument("--pretrained", type=Path, default=None, help="a saved tiny base: skip stage 1")
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: tiny.yaml's")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--clip-frames", type=int, default=6, help="training clip length (the paper: 6)")
    parser.add_argument("--val-frames", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=48)
    parser.add_argument("--config", type=Path, default=ROOT / "plugins/ultravsr/configs/tiny.yaml")
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
    scratch = tempfile.TemporaryDirectory(prefix="ultravsr-tiny-base-")
    base = args.pretrained
    if base is None:
        print("stage 1: the tiny SD base (VAE reconstruction, UNet denoising)", flush=True)
        base = pretrain_tiny_base(Path(scratch.name), args.base_vae_seconds, args.base_unet_seconds, seed=args.seed)
    options["pretrained"] = str(base)
    budget = args.minutes * 60 - (time.time() - started)
    fine_tune_started = time.time()
    method = UltraVSR(**options, lr_scheduler=cosine_over_seconds(budget))

    def data(frames: int) -> VideoDataModule:
        return sample_clips_data(
            clip_frames=frames, crop_size=args.crop_size, batch_size=args.batch_size, seed=args.seed,
            val_clips=args.val_clips,
        )  # fmt: skip

    trainer = wall_time_trainer(budget, max_steps=args.max_steps)
    trainer.fit(method, datamodule=data(args.clip_frames))
    trained = time.time() - started
    fine_tuned = time.time() - fine_tune_started
    steps = trainer.global_step
    loss = trainer.callback_metrics.get("train/loss")
    evaluation = data(args.val_frames)
    evaluation.setup("validate")
    results = evaluate(method, evaluation)
    header = (
        f"UltraVSR tiny preset: base {(trained - fine_tuned) / 60:.1f} min, then {steps} steps in "
        f"{fine_tuned / 60:.1f} min on {args.threads} CPU threads "
        f"(last loss {float(loss) if loss is not None else math.nan:.3f}); validation sample clips, 'simple' "
        f"degradation, x4, trained on {args.clip_frames}-frame {args.crop_size}px crops, evaluated on {args.val_frames} frames"
    )
    print_table(results, header)
    if args.json:
        args.json.write_text(json.dumps({"steps": steps, "train_seconds": trained, "results": results}, indent=2))
    ours, bicubic = results["UltraVSR 1 step"], results["bicubic"]
    passes = ours["psnr"] > bicubic["psnr"] and ours["flicker"] <= bicubic["flicker"]
    print(
        f"\nPSNR above bicubic: {'yes' if ours['psnr'] > bicubic['psnr'] else 'NO'}; flicker not worse than "
        f"bicubic's: {'yes' if ours['flicker'] <= bicubic['flicker'] else 'NO'} (total {(time.time() - started) / 60:.1f} min)"
    )
    scratch.cleanup()
    return 0 if passes else 1


if __name__ == "__main__":
    raise SystemExit(main())
