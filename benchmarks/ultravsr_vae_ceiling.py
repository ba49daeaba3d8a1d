"""How close can UltraVSR's tiny one-step output get to the ground truth through a VAE trained in the check's budget?

Every UltraVSR output is decoded by the VAE (Sec. 3.2: ``V_HR = D(z_HR)``), so the decoder's reconstruction of the
ground truth from its own latent, ``D(E(x))``, is about the best the learning check can reach: it is what a perfect
UNet would give. This trains the tiny base's VAE exactly as ``benchmarks/ultravsr_tiny_base.py`` does (the learning
check's stage 1; the UNet is not trained) and prints, on the held-out validation sample clips (``simple`` x4, the
check's crops and mean of per-clip PSNR), bicubic next to ``D(E(x))`` raw and after the restore's wavelet colour
fix (its low frequencies from bicubic upsampling of the LR, as ``vsr restore`` does)::

    python benchmarks/ultravsr_vae_ceiling.py [--vae-seconds 150] [--vae-config '{"block_out_channels": [8, 16],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"]}']
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # in-tree plugin, importable without installation
sys.path.insert(0, str(ROOT / "benchmarks"))

from learning_check_common import sample_clips_data  # noqa: E402
from ultravsr_tiny_base import pretrain_tiny_base  # noqa: E402

from vsr_core.data import VideoDataModule  # noqa: E402
from vsr_core.inference import wavelet_color_fix  # noqa: E402
from vsr_core.latent import AutoencoderKLCodec  # noqa: E402
from vsr_core.metrics import psnr  # noqa: E402
from vsr_core.video_ops import upsample_frames  # noqa: E402

ROWS = ("bicubic", "D(E(x))", "D(E(x)) + wavelet colour fix")


def reconstruction_ceiling(
    reconstruct: Callable[[torch.Tensor], torch.Tensor], datamodule: VideoDataModule
) -> dict[str, list[float]]:
    """Per-clip PSNR (dB) of each of :data:`ROWS` over the validation clips; ``reconstruct`` maps ``[B,3,T,H,W]``."""
    scores: dict[str, list[float]] = {row: [] for row in ROWS}
    for batch in datamodule.val_dataloader():
        batch = datamodule.on_after_batch_transfer(batch, 0)
        truth = batch["hq"]
        bicubic = upsample_frames(batch["lq"], datamodule.scale)
        with torch.no_grad():
            decoded = reconstruct(truth).clamp(-1, 1)
        outputs = (bicubic, decoded, wavelet_color_fix(decoded, bicubic).clamp(-1, 1))
        for row, output in zip(ROWS, outputs):
            scores[row] += psnr(output, truth).tolist()
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae-seconds", type=float, default=150.0, help="the learning check's stage-1 VAE budget")
    parser.add_argument("--vae-config", type=json.loads, default=None, help="JSON overrides of the tiny VAE config")
    parser.add_argument("--val-frames", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=48, help="the learning check's crops")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="ultravsr-vae-ceiling-") as folder:
        pretrain_tiny_base(Path(folder), args.vae_seconds, 0.0, seed=args.seed, vae_config=args.vae_config)
        # The path UltraVSR loads its base VAE through (``pretrained=``), applied to every frame of a clip.
        codec = AutoencoderKLCodec.from_pretrained(folder).eval()

    def reconstruct(video: torch.Tensor) -> torch.Tensor:
        return codec.decode(codec.encode(video))

    data = sample_clips_data(clip_frames=args.val_frames, crop_size=args.crop_size, seed=args.seed)
    data.setup("validate")
    scores = reconstruction_ceiling(reconstruct, data)
    print(
        f"\ntiny base VAE after {args.vae_seconds:g} s (overrides {args.vae_config or 'none'}), held-out sample clips"
    )
    print("| row | " + " | ".join(f"clip {i}" for i in range(len(scores[ROWS[0]]))) + " | mean |")
    print("|---|" + "---|" * (len(scores[ROWS[0]]) + 1))
    for row, values in scores.items():
        print(f"| {row} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {sum(values) / len(values):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
