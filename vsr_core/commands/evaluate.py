"""``vsr evaluate RESTORED_DIR [GT_DIR]``: score restored videos, print a table, write CSV/JSON.

Clips are video files or frame folders directly inside each directory, paired by name (file stem
or folder name). Without GT_DIR only no-reference and temporal metrics run. Each clip is decoded
whole (evaluation clips are short test sequences); image metrics run frame-wise in small chunks,
``dover`` on the whole clip.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from vsr_core.data.video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, frames_to_tensor, open_video
from vsr_core.errors import ConfigError, VideoError
from vsr_core.metrics.suite import ALL_METRICS, DEFAULT_METRICS, MetricSuite


def find_clips(root: str) -> dict[str, Path]:
    """``{name: path}`` for video files and frame folders in ``root`` (``root`` itself if it holds frames)."""
    path = Path(root)
    if not path.exists():
        raise VideoError(f"{root}: no such file or directory")
    if path.is_file():
        return {path.stem: path}
    clips: dict[str, Path] = {}
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in entries):
        return {path.name: path}
    for entry in entries:
        if entry.is_file() and entry.suffix.lower() in VIDEO_EXTENSIONS:
            clips[entry.stem] = entry
        elif entry.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in entry.iterdir()):
            clips[entry.name] = entry
    if not clips:
        raise VideoError(f"{root}: no videos or frame folders found")
    return clips


def load_clip(path: Path) -> torch.Tensor:
    """``[1,3,T,H,W]`` in [-1,1]."""
    with open_video(path) as reader:
        frames = torch.stack(list(reader.iter_frames()))
    return frames_to_tensor(frames).unsqueeze(0)


def pair_clips(restored: dict[str, Path], gt: dict[str, Path]) -> list[tuple[str, Path, Path]]:
    missing = sorted(set(restored) - set(gt))
    if missing:
        raise VideoError(
            f"no ground truth for {len(missing)} restored clip(s), e.g. {', '.join(missing[:3])} (pairs are matched by name)"
        )
    return [(name, restored[name], gt[name]) for name in sorted(restored)]


def _check_pair(name: str, out: torch.Tensor, ref: torch.Tensor) -> None:
    if out.shape[2] != ref.shape[2]:
        raise VideoError(f"{name}: restored has {out.shape[2]} frames, ground truth {ref.shape[2]}")
    if out.shape[-2:] != ref.shape[-2:]:
        raise VideoError(
            f"{name}: restored frames are {out.shape[-1]}x{out.shape[-2]}, ground truth {ref.shape[-1]}x{ref.shape[-2]}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsr evaluate", description="Score restored videos against ground truth.")
    parser.add_argument("restored_dir", help="folder of restored videos / frame folders")
    parser.add_argument("gt_dir", nargs="?", help="folder of ground-truth clips with the same names (omit: no-reference only)")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        choices=ALL_METRICS,
        metavar="NAME",
        help=f"metrics to compute (default: all of {', '.join(DEFAULT_METRICS)}); "
        "dover scores each whole clip (overall + dover_technical/dover_aesthetic) and needs DOVER.pth in --weights-dir",
    )
    parser.add_argument("--y-channel", action="store_true", help="PSNR/SSIM on the BT.601 Y channel")
    parser.add_argument("--crop-border", type=int, default=0, help="pixels cropped on each side for PSNR/SSIM")
    parser.add_argument(
        "--weights-dir", help="local directory with metric weights, DOVER.pth included (default: pyiqa cache); nothing is downloaded"
    )
    parser.add_argument("--device", default="cpu", help="device for learned metrics")
    parser.add_argument("-o", "--output", help="where metrics.csv/json go (default: RESTORED_DIR)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.crop_border < 0:
        raise ConfigError(f"--crop-border must be >= 0, got {args.crop_border}")
    restored = find_clips(args.restored_dir)
    pairs = pair_clips(restored, find_clips(args.gt_dir)) if args.gt_dir else [(n, p, None) for n, p in sorted(restored.items())]
    out_dir = Path(args.output or (args.restored_dir if os.path.isdir(args.restored_dir) else Path(args.restored_dir).parent))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create report directory {out_dir}: {err.strerror}") from err
    if not os.access(out_dir, os.W_OK):
        raise ConfigError(f"report directory {out_dir} is not writable")
    suite = MetricSuite(args.metrics, args.y_channel, args.crop_border, args.weights_dir, args.device, has_gt=bool(args.gt_dir))
    for name, path, gt_path in pairs:
        out = load_clip(path)
        ref = load_clip(gt_path) if gt_path is not None else None
        if ref is not None:
            _check_pair(name, out, ref)
        suite.score(name, out, ref)
    suite.report.print()
    csv_path, json_path = suite.report.write(out_dir)
    print(f"wrote {csv_path} and {json_path}")
    return 0
