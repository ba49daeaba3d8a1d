"""``vsr evaluate RESTORED_DIR [GT_DIR]``: score restored videos, show progress, print a table, write CSV/JSON.

Clips are video files or frame folders directly inside each directory, paired by name (file stem
or folder name). Without GT_DIR only no-reference and temporal metrics run. Each clip is decoded
whole (evaluation clips are short test sequences); image metrics run frame-wise in small chunks,
``dover`` on the whole clip. The default metric set is the fast one
(:data:`~vsr_core.metrics.catalog.DEFAULT_METRICS`); the slow ones are asked for by name. Nothing is
downloaded unless ``--allow-download``: a metric whose weights are absent is reported SKIPPED with
the files it needs.

Only :mod:`vsr_core.metrics.catalog` is imported to build the parser, so ``vsr evaluate --help``
does not import torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vsr_core.errors import ConfigError, VideoError
from vsr_core.metrics.catalog import ALL_METRICS, DEFAULT_METRICS, OPT_IN_METRICS, expand_metric_names

if TYPE_CHECKING:
    import torch

__all__ = ["build_parser", "check_pair", "find_clips", "load_clip", "main", "pair_clips"]


def find_clips(root: str) -> dict[str, Path]:
    """``{name: path}`` for video files and frame folders in ``root`` (``root`` itself if it holds frames)."""
    from vsr_core.data.video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

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
    import torch

    from vsr_core.data.video_io import frames_to_tensor, open_video

    with open_video(path) as reader:
        frames = torch.stack(list(reader.iter_frames()))
    return frames_to_tensor(frames).unsqueeze(0)


def pair_clips(restored: dict[str, Path], gt: dict[str, Path]) -> list[tuple[str, Path, Path]]:
    """``(name, restored path, GT path)`` for every restored clip; a clip without ground truth is an error."""
    missing = sorted(set(restored) - set(gt))
    if missing:
        raise VideoError(
            f"no ground truth for {len(missing)} restored clip(s), e.g. {', '.join(missing[:3])} (pairs are matched by name)"
        )
    return [(name, restored[name], gt[name]) for name in sorted(restored)]


def check_pair(name: str, out: torch.Tensor, ref: torch.Tensor) -> None:
    """One-line VideoError when a restored clip ``[1,3,T,H,W]`` and its ground truth differ in frames or size."""
    if out.shape[2] != ref.shape[2]:
        raise VideoError(f"{name}: restored has {out.shape[2]} frames, ground truth {ref.shape[2]}")
    (h, w), (gh, gw) = out.shape[-2:], ref.shape[-2:]
    if (h, w) == (gh, gw):
        return
    hint = (
        "restored clips must have the ground truth's size: restore LQ inputs made from the ground truth "
        "(`vsr degrade GT_DIR -o LQ_DIR --scale 4`, then `vsr restore LQ_DIR --ckpt ...`)"
    )
    if h % gh == 0 and w % gw == 0 and h // gh == w // gw:
        hint = (
            f"the restored clip is {h // gh}x the ground truth, as if the ground truth itself was restored: make LQ "
            f"inputs from it with `vsr degrade GT_DIR -o LQ_DIR --scale {h // gh}` and restore those"
        )
    raise VideoError(f"{name}: restored frames are {w}x{h}, ground truth {gw}x{gh}; {hint}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsr evaluate",
        description="Score restored videos against ground truth (or with no-reference metrics only).",
        epilog="Metric weights are never downloaded unless --allow-download: a metric whose files are absent "
        "is reported SKIPPED with the exact files it needs (see docs/metrics.md).",
    )
    parser.add_argument("restored_dir", help="folder of restored videos / frame folders")
    parser.add_argument(
        "gt_dir", nargs="?", help="folder of ground-truth clips with the same names (omit: no-reference only)"
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=["default"],
        choices=["default", "all", *ALL_METRICS],
        metavar="NAME",
        help=f"metrics to compute: names, `default` ({' '.join(DEFAULT_METRICS)}; fast) and/or `all`; "
        f"opt-in because they take minutes per clip on a CPU: {' '.join(OPT_IN_METRICS)}. "
        "Example: --metrics default musiq dover",
    )
    parser.add_argument("--y-channel", action="store_true", help="PSNR/SSIM on the BT.601 Y channel")
    parser.add_argument("--crop-border", type=int, default=0, help="pixels cropped on each side for PSNR/SSIM")
    parser.add_argument(
        "--weights-dir",
        help="local directory with metric weights, DOVER.pth included (default: $VSR_METRIC_WEIGHTS, else pyiqa's cache)",
    )
    parser.add_argument(
        "--allow-download",
        action="store_true",
        help="let pyiqa/torchvision download missing metric weights (default: never; the metric is SKIPPED)",
    )
    parser.add_argument("--device", default="cpu", help="device for learned metrics")
    parser.add_argument("-o", "--output", help="where metrics.csv/json go (default: RESTORED_DIR)")
    return parser


def _report_dir(args: argparse.Namespace) -> Path:
    out_dir = Path(
        args.output or (args.restored_dir if os.path.isdir(args.restored_dir) else Path(args.restored_dir).parent)
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create report directory {out_dir}: {err.strerror}") from err
    if not os.access(out_dir, os.W_OK):
        raise ConfigError(f"report directory {out_dir} is not writable")
    return out_dir


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.crop_border < 0:
        raise ConfigError(f"--crop-border must be >= 0, got {args.crop_border}")
    restored = find_clips(args.restored_dir)
    pairs = (
        pair_clips(restored, find_clips(args.gt_dir))
        if args.gt_dir
        else [(n, p, None) for n, p in sorted(restored.items())]
    )
    out_dir = _report_dir(args)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vsr_core.metrics.suite import MetricSuite

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        clips_task = progress.add_task("clips", total=len(pairs))
        metric_task = progress.add_task("building metrics", total=None)
        current = {"clip": ""}

        def on_progress(metric: str, done: int, total: int) -> None:
            where = f"{current['clip']}: " if current["clip"] else "building "
            progress.update(metric_task, description=f"{where}{metric}", completed=done, total=total)

        suite = MetricSuite(
            expand_metric_names(args.metrics),
            args.y_channel,
            args.crop_border,
            args.weights_dir,
            args.device,
            has_gt=bool(args.gt_dir),
            allow_download=args.allow_download,
            progress=on_progress,
        )
        for index, (name, path, gt_path) in enumerate(pairs):
            current["clip"] = f"clip {index + 1}/{len(pairs)} {name}"
            progress.update(metric_task, description=f"{current['clip']}: decoding", completed=0, total=None)
            out = load_clip(path)
            ref = load_clip(gt_path) if gt_path is not None else None
            if ref is not None:
                check_pair(name, out, ref)
            row = suite.score(name, out, ref)
            progress.advance(clips_task)
            scores = ", ".join(f"{k} {v:.4g}" for k, v in row.items())
            progress.console.print(f"{name}: {scores or 'no scores'}", highlight=False)
    suite.report.print(Console())
    csv_path, json_path = suite.report.write(out_dir)
    print(f"wrote {csv_path} and {json_path}")
    sys.stdout.flush()
    return 0
