"""``vsr restore INPUT... --ckpt CKPT|EXPORT_DIR``: restore videos or frame folders of any length into mp4 files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vsr_core.errors import ConfigError, VSRError

__all__ = ["build_parser", "main", "method_help"]


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
        help="sampling steps (num_inference_steps; a one-pass method refuses more than 1)",
    )
    p.add_argument("--prompt", default=None, help="caption for methods with a text encoder (see docs/text.md)")
    p.add_argument(
        "--sample",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method-specific sampling option (repeatable); `vsr restore --help-method NAME` lists them",
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
        help="frames shared by consecutive windows (default: the method's temporal_overlap)",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="LQ tile side in pixels (default: the method's native tile, for frames larger than it; 0: never tile)",
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=None,
        help="LQ pixels shared by neighbouring tiles (default: the method's, or a quarter of --tile)",
    )
    p.add_argument(
        "--fusion",
        choices=("auto", "latent", "tiles", "pixel"),  # vsr_core.inference.FUSION_MODES (not imported: fast --help)
        default="auto",
        help="fuse windows and tiles per solver step in latent space (latent; auto for methods with the latent window "
        "protocol), only tiles per step with windows cross-faded in pixels (tiles: the least memory for long "
        "high-resolution videos), or whole restored tiles and windows in pixels (pixel)",
    )
    p.add_argument("--color-fix", choices=("none", "wavelet", "adain"), default="none")
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default=None,
        help="default: cuda if available",
    )
    p.add_argument("--precision", choices=("bf16", "fp32"), default="fp32")
    p.add_argument(
        "--offload",
        choices=("none", "model", "sequential"),
        default="none",
        help="keep the big models in CPU memory and move each to the GPU when called (model), or stream "
        "every layer (sequential, least memory, slowest): for GPUs smaller than the method",
    )
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the transformer/UNet blocks (first window slower)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of torch (default: torch's, one per core; fewer when other jobs share the cores)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (lower is better)")
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


def method_help(name: str) -> str:
    """What ``vsr restore --help-method NAME`` prints: the method's sampling options (``--sample``)."""
    from vsr_core.inference.sampling import describe_sampling
    from vsr_core.plugins import method_class

    return describe_sampling(method_class(name))


def main(argv: list[str]) -> int:
    if "--help-method" in argv or any(a.startswith("--help-method=") for a in argv):
        helper = argparse.ArgumentParser(prog="vsr restore --help-method")
        helper.add_argument("--help-method", required=True, metavar="NAME", help="installed method, e.g. satb.SATBVR")
        known, _ = helper.parse_known_args(argv)
        try:
            print(method_help(known.help_method))
        except VSRError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
        return 0
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
    from vsr_core.inference.files import collect_inputs, frames_to_restore
    from vsr_core.inference.outputs import prepared_outputs

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
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    with prepared_outputs(inputs, Path(args.output), args.overwrite) as targets:
        return _restore_all(args, inputs, counts, targets)


def _restore_all(args: argparse.Namespace, inputs: list[Path], counts: list[int], targets: list[Path]) -> int:
    import torch

    from vsr_core.inference import RestoreEngine, engine_options, load_for_inference, restore_file

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    method = load_for_inference(args.ckpt, device, offload=args.offload, compile=args.compile)
    options = engine_options(
        method,
        device,
        steps=args.steps,
        prompt=args.prompt,
        sample=args.sample,
        window=args.window,
        overlap=args.overlap,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        color_fix=args.color_fix,
        fusion=args.fusion,
        precision=args.precision,
        seed=args.seed,
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
