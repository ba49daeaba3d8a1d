"""``vsr restore INPUT... --ckpt CKPT|EXPORT_DIR``: restore videos or frame folders of any length into mp4 files."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path

import torch

from vsr_core.errors import ConfigError, VideoError, VSRError

__all__ = ["build_parser", "main", "steps_keyword"]


def steps_keyword(method: object) -> str:
    """The name of the method's step-count argument of ``restore`` (``steps`` or ``num_steps``)."""
    params = inspect.signature(method.restore).parameters
    for name in ("num_steps", "steps", "num_inference_steps"):
        if name in params:
            return name
    raise ConfigError(
        f"{type(method).__name__}.restore takes no step count; drop --steps"
    )


def _create_output_dir(path: Path) -> list[Path]:
    """Create ``path`` (and missing parents); returns the folders created, deepest first."""
    created = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        created.append(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VideoError(f"cannot create output directory '{path}' ({err.strerror})") from None
    if not path.is_dir():
        raise VideoError(f"output directory '{path}' is not a directory")
    return created


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders this run created if nothing was written into them (deepest first)."""
    for folder in folders:
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            return


def _check_writable(outdir: Path) -> None:
    """Create and remove a file where the outputs go: an unwritable place fails before any work."""
    from vsr_core.partial_files import partial_path

    probe = partial_path(outdir / "write-check.mp4")
    try:
        probe.touch(exist_ok=False)
    except OSError as err:
        raise VideoError(f"cannot write into output directory '{outdir}' ({err.strerror}); choose another -o") from None
    probe.unlink()


def _targets(inputs: list[Path], outdir: Path, overwrite: bool) -> list[Path]:
    """One ``outdir/<name>.mp4`` per input (``_2``, ... for repeated names), checked before any work.

    Raises:
        ConfigError: a target is one of the inputs (even with ``--overwrite``), or exists without ``--overwrite``.
    """
    names: set[str] = set()
    targets = []
    for source in inputs:
        stem = source.stem if source.is_file() else source.name
        name, n = stem, 1
        while name in names:  # two inputs with one stem must not overwrite each other
            n += 1
            name = f"{stem}_{n}"
        names.add(name)
        targets.append(outdir / f"{name}.mp4")
    for target in targets:
        for source in inputs:
            if target.exists() and source.exists() and os.path.samefile(target, source):
                raise ConfigError(f"output '{target}' is the input '{source}'; restore never replaces its input, choose another -o")
        if target.exists() and not overwrite:
            raise ConfigError(f"output '{target}' exists; pass --overwrite to replace it, or choose another -o")
        if target.is_dir():
            raise ConfigError(f"output '{target}' is a directory; choose another -o")
    return targets


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
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist (never an input)")
    p.add_argument(
        "--allow-truncated",
        action="store_true",
        help="restore the frames that decode from a truncated video (default: refuse it)",
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
    from vsr_core import interrupts

    try:
        return _run(args)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM under `vsr` (vsr_core.interrupts)
        print(f"{interrupts.message(err)}; no partial output was left", file=sys.stderr)
        return interrupts.exit_code(err)
    except VSRError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


def _run(args: argparse.Namespace) -> int:
    from vsr_core.data.video_io import probe_video
    from vsr_core.inference import collect_inputs, frames_to_restore

    inputs = collect_inputs(args.inputs)
    # Every input is checked before anything is restored: readable, and whole (every promised frame decodes).
    counts = []
    for source in inputs:
        count, promised = frames_to_restore(source, allow_truncated=args.allow_truncated), probe_video(source).frames
        if count < promised:
            print(
                f"warning: {source} is truncated: restoring the {count} of its {promised} frames that decode "
                "(--allow-truncated)",
                file=sys.stderr,
            )
        counts.append(count)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA device is available; use --device cpu"
        )
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise VideoError(f"output directory '{outdir}' is a file; choose another -o")
    targets = _targets(inputs, outdir, args.overwrite)
    created = _create_output_dir(outdir)
    try:
        _check_writable(outdir)
        return _restore_all(args, inputs, counts, targets)
    finally:
        _remove_if_empty(created)  # a failed run leaves no empty output folder behind


def _restore_all(args: argparse.Namespace, inputs: list[Path], counts: list[int], targets: list[Path]) -> int:
    from vsr_core.checkpoint import load_method
    from vsr_core.inference import EngineOptions, RestoreEngine, restore_file

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
    with _progress() as progress:
        for source, count, target in zip(inputs, counts, targets):
            task = progress.add_task(source.name, total=None)
            written = restore_file(
                engine,
                source,
                target,
                crf=args.crf,
                on_start=lambda total, task=task: progress.update(task, total=total),
                on_frame=lambda task=task: progress.advance(task),
                num_frames=count,
            )
            progress.console.print(f"wrote {target} ({written} frames)")
    return 0
