"""``vsr restore INPUT... --ckpt CKPT|EXPORT_DIR``: restore videos or frame folders of any length into mp4 files."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path

import torch

from vsr_core.errors import ConfigError, VideoError, VSRError

VIDEO_EXTENSIONS = {
    ".mp4",
    ".mkv",
    ".mov",
    ".avi",
    ".webm",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".ts",
    ".y4m",
}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def _is_frame_folder(path: Path) -> bool:
    return any(
        p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir() if p.is_file()
    )


def collect_inputs(paths: list[str]) -> list[Path]:
    """Video files and frame folders named by ``paths`` (directories are searched one level deep)."""
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if not path.exists():
            raise VideoError(f"input '{text}' does not exist")
        if path.is_file() or _is_frame_folder(path):
            found.append(path)
        else:
            entries = sorted(path.iterdir())
            videos = [
                p
                for p in entries
                if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
            ]
            folders = [p for p in entries if p.is_dir() and _is_frame_folder(p)]
            if not videos and not folders:
                raise VideoError(
                    f"directory '{text}' holds no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) or frame folders"
                )
            found.extend(sorted(videos + folders))
    return found


def steps_keyword(method: object) -> str:
    """The name of the method's step-count argument of ``restore`` (``steps`` or ``num_steps``)."""
    params = inspect.signature(method.restore).parameters
    for name in ("num_steps", "steps", "num_inference_steps"):
        if name in params:
            return name
    raise ConfigError(
        f"{type(method).__name__}.restore takes no step count; drop --steps"
    )


def _output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VideoError(
            f"cannot create output directory '{path}' ({err.strerror})"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise VideoError(f"output directory '{path}' is not writable")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vsr restore",
        description="Restore videos or frame folders with a trained checkpoint.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="video files, frame folders, or directories of them",
    )
    p.add_argument("--ckpt", required=True, help="checkpoint written by `vsr fit`, or a `vsr export` folder")
    p.add_argument(
        "-o",
        "--output",
        default="restored",
        help="output directory (default: restored/)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="sampling steps (methods with a step count)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=None,
        help="frames per temporal window (default: the method's)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="frames shared by consecutive windows (default: window/4)",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="LQ tile side in pixels (default: no tiling)",
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=16,
        help="LQ pixels shared by neighbouring tiles",
    )
    p.add_argument("--color-fix", choices=("none", "wavelet", "adain"), default="none")
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default=None,
        help="default: cuda if available",
    )
    p.add_argument("--precision", choices=("bf16", "fp32"), default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--crf", type=int, default=18, help="H.264 quality (lower is better)"
    )
    return p


def _progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    class FramesPerSecond(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task):
            from rich.text import Text

            # Frames arrive in bursts (one window at a time): rich's recent-sample rate would show
            # the burst's rate, so this is the average since the file started.
            elapsed = task.finished_time or task.elapsed
            speed = task.completed / elapsed if elapsed and task.completed else None
            return Text(f"{speed:.2f} frames/s" if speed else "-- frames/s")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        FramesPerSecond(),
        TimeRemainingColumn(),
        console=None,
        transient=False,
    )


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted; no partial output was left", file=sys.stderr)
        return 130
    except VSRError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


def _run(args: argparse.Namespace) -> int:
    from vsr_core.checkpoint import load_method
    from vsr_core.data.video_io import probe_video
    from vsr_core.inference import EngineOptions, RestoreEngine, restore_file

    inputs = collect_inputs(args.inputs)
    for source in inputs:  # fail on an unreadable input before restoring anything
        probe_video(source)
    outdir = _output_dir(Path(args.output))
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA device is available; use --device cpu"
        )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    method = load_method(args.ckpt, map_location=device)
    sampling = dict(getattr(method, "val_sampling", {}) or {})
    if args.steps is not None:
        if args.steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {args.steps}")
        sampling[steps_keyword(method)] = args.steps
    options = EngineOptions(
        window=args.window,
        overlap=args.overlap,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        color_fix=args.color_fix,
        device=device,
        precision=args.precision,
        seed=args.seed,
        sampling=sampling,
    )
    engine = RestoreEngine(method, options)
    names: set[str] = set()
    with _progress() as progress:
        for source in inputs:
            stem = source.stem if source.is_file() else source.name
            name = stem
            n = 1
            while (
                name in names
            ):  # two inputs with one stem must not overwrite each other
                n += 1
                name = f"{stem}_{n}"
            names.add(name)
            target = outdir / f"{name}.mp4"
            task = progress.add_task(source.name, total=None)
            restore_file(
                engine,
                source,
                target,
                crf=args.crf,
                on_start=lambda total, task=task: progress.update(task, total=total),
                on_frame=lambda task=task: progress.advance(task),
            )
            progress.console.print(f"wrote {target}")
    return 0
