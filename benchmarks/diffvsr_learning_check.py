"""DiffVSR learning check: the tiny preset's progressive stages on a CPU, against bicubic and against independent
windows.

The tiny configuration (``plugins/diffvsr/configs/tiny.yaml``: the inflated SD-x4-upscaler-layout UNet at 16-32
channels on the weight-free 12-channel half-unshuffle codec) is trained on the built-in training sample clips in the
progressive stages of Sec. 3.2, each starting from the previous one's weights through ``init_from``:

0. *image prior*: a tiny random UNet has none, so the image UNet is first trained alone, without temporal layers --
   the part the SD x4 upscaler's pretraining plays at full size; stage 1 then inflates it (``init_from`` with
   ``init_from_strict: false``: the zero-initialised temporal layers are new, as on the real upscaler);
1. temporal layers only, ``simple`` degradation (PLS stage 1);
2. temporal layers only, ``realbasicvsr`` degradation (PLS stage 2);
3. every parameter (PLS stage 3; the same clips: there is no "high-quality" set here).

Then the held-out validation sample clips (``simple`` degradation, deterministic) are restored through the
long-video engine in 8-frame windows overlapping by 4, at the configuration's default step count (tiny.yaml: 20 DDIM steps; guidance is
a single pass without a text encoder), with five window schemes at the same windows:

* ``independent``: each window from its own fresh noise, every frame taken from the last window covering it;
* ``cross-fade``: the same windows blended linearly in pixels (the engine's pixel default for other methods);
* ``ILT (paper)``: DiffVSR's default -- Eq. 2 at every DDIM step through the engine's latent window protocol, with
  the first window's noise reused and reordered (``vsr restore``'s path);
* ``ILT after (paper)`` / ``ILT after (release)``: Eq. 2 once, after each window is fully denoised (the release's
  timing; ``vsr restore --fusion pixel``), with the paper's / the release's weights.

Temporal flicker is ``mean |Delta_t output - Delta_t ground truth|`` in 8-bit levels (lower is better).

    python benchmarks/diffvsr_learning_check.py                # about 10 minutes on 2 cores
    python benchmarks/diffvsr_learning_check.py --minutes 3    # quick look
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

from learning_check_common import cosine_over_seconds, sample_clips_data, temporal_flicker, wall_time_trainer

from diffvsr import DiffVSR
from diffvsr.ilt import ILTFusion, final_window_weights
from vsr_core.data import frames_to_tensor, tensor_to_frames
from vsr_core.inference import EngineOptions, LinearCrossfade, RestoreEngine, WindowFusion
from vsr_core.metrics import psnr, ssim
from vsr_core.video_ops import upsample_frames

# (name, trainable, degradation, share of the training budget); stage 0 has no temporal layers at all.
STAGES = [
    ("0 image prior", "all", "simple", 0.55),
    ("1 temporal, simple", "temporal", "simple", 0.15),
    ("2 temporal, realbasicvsr", "temporal", "realbasicvsr", 0.15),
    ("3 all", "all", "realbasicvsr", 0.15),
]
NO_TEMPORAL_LAYERS = {"resnet_3d": False, "temporal_modules": False, "msta": False}


class IndependentWindows(WindowFusion):
    """Every window from fresh noise; each frame from the last window covering it (no fusion at all)."""

    def weights(self, window, plan) -> torch.Tensor:
        return final_window_weights(window)


def train_stage(
    options: dict,
    trainable: str,
    degradation: str,
    seconds: float,
    init_from: Path | None,
    args,
    out: Path,
    image_only: bool = False,
):
    """One stage: a method (weights from ``init_from``) trained ``seconds``; (checkpoint, steps, loss, method).

    ``image_only``: the image UNet alone, without temporal layers (stage 0).
    """
    stage_options = {**options, "training": {**options.get("training", {}), "trainable": trainable}}
    if image_only:
        stage_options["temporal_layers"] = NO_TEMPORAL_LAYERS
    if init_from is not None:
        # Strict except right after the image stage, whose checkpoint has no temporal layers yet.
        stage_options["init_from"] = str(init_from)
        stage_options["init_from_strict"] = not str(init_from).endswith("image.ckpt")
    method = DiffVSR(**stage_options, lr_scheduler=cosine_over_seconds(seconds))
    data = sample_clips_data(
        validate=False, clip_frames=args.clip_frames, crop_size=args.crop_size, stride_range=(1, 3),
        degradation=degradation, batch_size=args.batch_size, seed=args.seed,
    )  # fmt: skip
    trainer = wall_time_trainer(seconds, max_steps=args.max_steps)
    trainer.fit(method, datamodule=data)
    path = out / ("image.ckpt" if image_only else f"stage-{trainable}-{degradation}.ckpt")
    trainer.save_checkpoint(path)
    loss = trainer.callback_metrics.get("train/loss")
    return path, trainer.global_step, float(loss) if loss is not None else math.nan, method


def evaluate(method: DiffVSR, args) -> dict[str, dict[str, float]]:
    """Mean PSNR / SSIM / flicker over the held-out clips for bicubic and each window scheme."""
    method.eval()
    data = sample_clips_data(
        clip_frames=args.eval_frames, crop_size=args.eval_crop_size, seed=args.seed, val_clips=args.val_clips
    )
    data.setup("validate")
    schemes = {  # name -> (engine fusion mode, window fusion)
        "independent": ("pixel", lambda: IndependentWindows()),
        "cross-fade": ("pixel", lambda: LinearCrossfade()),
        "ILT (paper)": ("latent", lambda: None),  # the method's make_latent_fusion (ILTLatentFusion)
        "ILT after (paper)": ("pixel", lambda: ILTFusion(weights_rule="paper")),
        "ILT after (release)": ("pixel", lambda: ILTFusion(weights_rule="release")),
    }
    scores: dict[str, dict[str, list[float]]] = {}

    def add(name: str, output: torch.Tensor, hq: torch.Tensor) -> None:
        row = scores.setdefault(name, {"psnr": [], "ssim": [], "flicker": []})
        row["psnr"] += psnr(output, hq).tolist()
        row["ssim"] += ssim(output, hq).tolist()
        row["flicker"] += temporal_flicker(output, hq).tolist()

    for index, batch in enumerate(data.val_dataloader()):
        batch = data.on_after_batch_transfer(batch, 0)
        hq, lq = batch["hq"], batch["lq"]
        hq8 = frames_to_tensor(tensor_to_frames(hq[0]))[None]  # what the engine's 8-bit output is compared with
        add("bicubic", frames_to_tensor(tensor_to_frames(upsample_frames(lq, 4).clamp(-1, 1)[0]))[None], hq8)
        frames = tensor_to_frames(lq[0])
        for name, (mode, make) in schemes.items():
            options = EngineOptions(window=8, overlap=4, seed=args.seed + index, fusion=mode)
            engine = RestoreEngine(method, options, fusion=make())
            restored = torch.stack(list(engine.restore_frames(frames, frames.shape[0])))
            add(name, frames_to_tensor(restored)[None], hq8)
    return {name: {k: sum(v) / len(v) for k, v in row.items()} for name, row in scores.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=7.5, help="training wall-time budget over all stages")
    parser.add_argument("--max-steps", type=int, default=100_000, help="per stage")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    # 4 clips of 64 px: the pixels of 16 clips of 32 px at a quarter of the frame decoding (every clip decodes whole
    # 256 px frames: 0.63 s of a 16-clip batch's step, 0.15 s for 4), and latents at the evaluation size (16 px).
    parser.add_argument("--batch-size", type=int, default=4, help="clips per step")
    parser.add_argument("--clip-frames", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=64, help="training HQ crop (LR is a quarter)")
    parser.add_argument("--eval-crop-size", type=int, default=64)
    parser.add_argument("--eval-frames", type=int, default=12, help="frames per held-out clip (2 windows of 8)")
    parser.add_argument("--val-clips", type=int, default=4, help="held-out clips to restore")
    parser.add_argument("--stages", default="0,1,2,3", help="which of the stages to run, in order")
    parser.add_argument("--config", type=Path, default=ROOT / "plugins/diffvsr/configs/tiny.yaml")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(args.seed, workers=True, verbose=False)
    started = time.time()
    options = dict(yaml.safe_load(args.config.read_text())["model"]["init_args"])
    options.pop("val_sampling", None)
    budget = args.minutes * 60
    chosen = [STAGES[int(i)] for i in args.stages.split(",")]
    share = sum(s[3] for s in chosen)
    log = []
    with tempfile.TemporaryDirectory() as folder:
        checkpoint, method = None, None
        for name, trainable, degradation, part in chosen:
            seconds = budget * part / share
            checkpoint, steps, loss, method = train_stage(
                options,
                trainable,
                degradation,
                seconds,
                checkpoint,
                args,
                Path(folder),
                image_only=name.startswith("0"),
            )
            log.append({"stage": name, "steps": steps, "loss": loss, "seconds": round(seconds)})
            print(f"stage {name}: {steps} steps, last loss {loss:.4f}", flush=True)
        trained = time.time() - started
        results = evaluate(method, args)
    total = (time.time() - started) / 60
    print(
        f"\nDiffVSR tiny preset, {' -> '.join(s['stage'] for s in log)}: "
        f"{sum(s['steps'] for s in log)} steps in {trained / 60:.1f} min on {args.threads} CPU threads; "
        f"held-out sample clips ({args.val_clips} x {args.eval_frames} frames, {args.eval_crop_size}px, 'simple' x4), "
        "windows 8 / overlap 4, "
        f"{options['sampling']['num_inference_steps']} DDIM steps"
    )
    print(f"| {'scheme':<19} | {'PSNR (dB)':>9} | {'SSIM':>6} | {'flicker':>7} |")
    print(f"|{'-' * 21}|{'-' * 11}|{'-' * 8}|{'-' * 9}|")
    for name, row in results.items():
        print(f"| {name:<19} | {row['psnr']:>9.2f} | {row['ssim']:>6.4f} | {row['flicker']:>7.2f} |")
    beats_bicubic = results["ILT (paper)"]["psnr"] > results["bicubic"]["psnr"]
    smoother = results["ILT (paper)"]["flicker"] < results["independent"]["flicker"]
    print(f"\nPSNR above bicubic: {'yes' if beats_bicubic else 'NO'}; ILT flicker below independent windows': "
          f"{'yes' if smoother else 'NO'} (total {total:.1f} min)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"stages": log, "results": results, "minutes": total}, indent=2))
    return 0 if beats_bicubic and smoother else 1


if __name__ == "__main__":
    raise SystemExit(main())
