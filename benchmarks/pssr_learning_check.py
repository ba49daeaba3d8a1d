"""PS-SR learning check: the tiny preset's stage sequence, trained for minutes on a CPU, against bicubic.

Trains ``pssr.PSSR`` (tiny preset) through its three stages with the model arguments of
``plugins/pssr/configs/tiny.yaml`` (latent phase, Eq. 10), ``tiny-pixel.yaml`` (pixel phase, Eq. 11)
and ``tiny-draft.yaml`` (draft, Eq. 12), each starting from the previous stage's weights with
``init_from``, on the built-in training sample clips (``simple`` degradation, x4), within
``--minutes`` of wall time in all on ``--threads`` CPU threads. Then it evaluates on the held-out
validation sample clips: bicubic upsampling, PS-SR with T = 1 (the base alone) and T = 4 (base +
3 draft steps with the frequency-domain update, alpha 0.6 as the paper; also with alpha 1, with
alpha on the draft's share only (``frequency.alpha_scales: draft``, the other reading of Eq. 14)
once at the end as the release (``frequency_update: final``) and without the update, Table 3's
"w/o FDU"), reporting PSNR, SSIM, temporal flicker and a
no-reference sharpness measure. The budget is wall time, so the step counts depend on the load:
run it alone on the machine.

    python benchmarks/pssr_learning_check.py                 # ~10.5 minutes on an idle 2-core box
    python benchmarks/pssr_learning_check.py --minutes 3     # quick look

Sharpness (the no-reference measure of the check) is the mean Sobel gradient magnitude of the
luminance (Tenengrad) in 8-bit levels per pixel: higher is sharper; the ground truth's value is
printed for scale. It is a fair measure for this question: the FDU changes only the luminance,
and Sobel's response is largest around 0.25 cycles/pixel, inside the band the Butterworth high-pass
(cut-off 0.2) hands to the draft, and above the x4 LQ's Nyquist (0.125), so it counts restored detail,
not the low frequencies T = 1 and T = 4 share by construction. (NIQE, the paper's no-reference metric, is not used: on 192-pixel crops of the
sample clips pyiqa's NIQE gives the ground truth about 93, far outside its calibrated range.)
Temporal flicker is the mean absolute difference between the frame-to-frame changes of the output
and those of the ground truth, in 8-bit levels (lower is better).

The check passes when T = 1 and T = 4 both beat bicubic PSNR and T = 4 is sharper than T = 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch import seed_everything

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # in-tree plugin, importable without installation

from learning_check_common import cosine_over_seconds, sample_clips_data, temporal_flicker, wall_time_trainer

from pssr import PSSR
from vsr_core.data import VideoDataModule
from vsr_core.metrics import psnr, ssim
from vsr_core.video_ops import upsample_frames

STAGES = ("tiny.yaml", "tiny-pixel.yaml", "tiny-draft.yaml")


def sharpness(video: torch.Tensor) -> torch.Tensor:
    """Per-clip mean Sobel gradient magnitude of the BT.601 luminance (Tenengrad), 8-bit levels per pixel."""
    y = (0.299 * video[:, 0] + 0.587 * video[:, 1] + 0.114 * video[:, 2]) * 127.5  # [B, T, H, W], 8-bit scale
    b, t, h, w = y.shape
    frames = y.reshape(b * t, 1, h, w)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3) / 8
    gx = F.conv2d(frames, kx.to(frames))
    gy = F.conv2d(frames, kx.transpose(2, 3).to(frames))
    return (gx.square() + gy.square()).sqrt().reshape(b, -1).mean(dim=1)


def evaluate(method: PSSR, datamodule: VideoDataModule) -> dict[str, dict[str, float]]:
    """Mean PSNR / SSIM / flicker / sharpness over the validation clips for bicubic, PS-SR and the GT."""
    method.eval()
    scores: dict[str, dict[str, list[float]]] = {}

    def add(name: str, output: torch.Tensor, hq: torch.Tensor) -> None:
        row = scores.setdefault(name, {"psnr": [], "ssim": [], "flicker": [], "sharpness": []})
        output = output.clamp(-1, 1)
        row["psnr"] += psnr(output, hq).flatten().tolist()
        row["ssim"] += ssim(output, hq).flatten().tolist()
        row["flicker"] += temporal_flicker(output, hq).tolist()
        row["sharpness"] += sharpness(output).tolist()

    for batch in datamodule.val_dataloader():
        batch = datamodule.on_after_batch_transfer(batch, 0)
        hq, lq = batch["hq"], batch["lq"]
        add("bicubic", upsample_frames(lq, method.scale), hq)
        with torch.no_grad():
            add("PS-SR T=1", method.restore(lq, num_inference_steps=1), hq)
            add("PS-SR T=4", method.restore(lq, num_inference_steps=4), hq)
            add("T=4, alpha 1", method.restore(lq, num_inference_steps=4, alpha=1.0), hq)
            add("T=4, FDU at the end", method.restore(lq, num_inference_steps=4, frequency_update="final"), hq)
            printed = method.frequency
            method.frequency = printed.replace(alpha_scales="draft")
            add("T=4, α draft", method.restore(lq, num_inference_steps=4), hq)
            method.frequency = printed
            add("T=4, no FDU", method.restore(lq, num_inference_steps=4, frequency_update="off"), hq)
        add("ground truth", hq, hq)
    return {name: {k: sum(v) / len(v) for k, v in row.items()} for name, row in scores.items()}


def print_table(results: dict[str, dict[str, float]], header: str) -> None:
    print(f"\n{header}")
    print(f"| {'method':<19} | {'PSNR (dB) ↑':>11} | {'SSIM ↑':>7} | {'flicker ↓':>9} | {'sharpness ↑':>11} |")
    print(f"|{'-' * 21}|{'-' * 13}|{'-' * 9}|{'-' * 11}|{'-' * 13}|")
    for name, row in results.items():
        if name == "ground truth":
            print(f"| {name:<19} | {'—':>11} | {'—':>7} | {'—':>9} | {row['sharpness']:>11.2f} |")
        else:
            print(
                f"| {name:<19} | {row['psnr']:>11.2f} | {row['ssim']:>7.4f} | {row['flicker']:>9.2f} | {row['sharpness']:>11.2f} |"
            )


def stage_options(name: str, config_dir: Path) -> dict:
    options = dict(yaml.safe_load((config_dir / name).read_text())["model"]["init_args"])
    options.pop("val_sampling", None)
    options.pop("init_from", None)  # set below to this run's previous stage
    return options


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=9.0, help="training wall-time budget of the three stages together"
    )
    parser.add_argument(
        "--split", type=float, nargs=3, default=(0.3, 0.3, 0.4), help="budget share of latent, pixel, draft"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--clip-frames", type=int, default=5)
    parser.add_argument("--crop-size", type=int, default=64)
    parser.add_argument("--val-crop-size", type=int, default=192, help="HQ validation crops")
    parser.add_argument(
        "--config-dir", type=Path, default=ROOT / "plugins/pssr/configs", help="stage configs (model init_args)"
    )
    parser.add_argument("--val-clips", type=int, default=None, help="validation clips to evaluate (default all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(args.seed, workers=True, verbose=False)
    started = time.time()
    datamodule = sample_clips_data(
        clip_frames=args.clip_frames, crop_size=args.crop_size, val_crop_size=args.val_crop_size,
        batch_size=args.batch_size, seed=args.seed, val_clips=args.val_clips,
    )  # fmt: skip
    steps: dict[str, int] = {}
    work = Path(tempfile.mkdtemp(prefix="pssr-learning-"))
    previous: Path | None = None
    method = None
    for name, share in zip(STAGES, args.split):
        budget = args.minutes * 60 * share / sum(args.split)
        options = stage_options(name, args.config_dir)
        if previous is not None:
            options["init_from"] = str(previous)
        method = PSSR(**options, lr_scheduler=cosine_over_seconds(budget))
        trainer = wall_time_trainer(budget)
        trainer.fit(method, datamodule=datamodule)
        steps[method.stage] = trainer.global_step
        previous = work / f"{method.stage}.ckpt"
        trainer.save_checkpoint(previous)
    trained = time.time() - started
    datamodule.setup("validate")
    results = evaluate(method, datamodule)
    header = (
        f"PS-SR tiny preset, stages latent/pixel/draft: {steps['latent']}/{steps['pixel']}/{steps['draft']} steps in "
        f"{trained / 60:.1f} min on {args.threads} CPU threads; validation sample clips, 'simple' degradation, x4, "
        f"{args.clip_frames} frames, {args.val_crop_size}px crops"
    )
    print_table(results, header)
    if args.json:
        args.json.write_text(json.dumps({"steps": steps, "train_seconds": trained, "results": results}, indent=2))
    bicubic = results["bicubic"]["psnr"]
    beats = results["PS-SR T=1"]["psnr"] > bicubic and results["PS-SR T=4"]["psnr"] > bicubic
    sharper = results["PS-SR T=4"]["sharpness"] > results["PS-SR T=1"]["sharpness"]
    print(
        f"\nPSNR above bicubic at T=1 and T=4: {'yes' if beats else 'NO'}; T=4 sharper than T=1: {'yes' if sharper else 'NO'} "
        f"(total {(time.time() - started) / 60:.1f} min)"
    )
    return 0 if beats and sharper else 1


if __name__ == "__main__":
    raise SystemExit(main())
