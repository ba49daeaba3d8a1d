"""``vsr degrade HR_DIR -o LQ_DIR --degradation realbasicvsr --scale 4 --seed 0``: the LQ half of a paired set.

Every clip of ``HR_DIR`` (video files and frame folders directly inside it, or ``HR_DIR`` itself when
it is one) is degraded with a :mod:`vsr_core.data.degradations` preset, the same pipeline
``vsr fit`` applies on the fly, and written under ``LQ_DIR`` with the same name: a frame folder
becomes a folder of PNGs, a video a lossless H.264 (yuv444p) video at the same frame rate, so
``vsr fit --data.train vsr_core.data.PairedFolders`` and ``vsr evaluate`` pair them by name.

Reproducible: each clip's random draws come from a generator seeded with ``(seed, clip name)``, so
a clip degrades the same however many other clips there are or in which order they run. Frames
whose size is not a multiple of the scale are degraded from their top-left crop that is (the
PairedFolders loader cuts the HR frames the same way). Outputs are atomic: a clip appears under its
final name only when complete; an interrupted or failed run leaves no partial clip behind.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

from vsr_core.errors import ConfigError, VideoError

__all__ = ["build_parser", "clip_seed", "degrade_clip", "main", "PRESET_NAMES"]

# The presets of vsr_core.data.degradations.presets (a test keeps this list equal to available_presets()).
PRESET_NAMES = ("none", "bicubic", "simple", "realesrgan", "realbasicvsr")


def clip_seed(seed: int, name: str) -> int:
    """The 63-bit seed of clip ``name``'s degradation (blake2b of ``"<seed>:<name>"``)."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsr degrade",
        description="Write the low-quality half of a paired set: degrade every clip of HR_DIR into LQ_DIR.",
        epilog="Example: vsr degrade data/hr -o data/lq --degradation realbasicvsr --scale 4 --seed 0",
    )
    parser.add_argument(
        "hr_dir", metavar="HR_DIR", help="folder of videos / frame folders (or one video or frame folder)"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="LQ_DIR", help="where the degraded clips go (same names)"
    )
    parser.add_argument(
        "--degradation",
        default="realbasicvsr",
        choices=PRESET_NAMES,
        help="degradation preset (docs/degradations.md; default: realbasicvsr)",
    )
    parser.add_argument("--scale", type=int, default=4, help="downscaling factor (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset parameter, YAML value, e.g. --option second.noise=null --option codec.bitrate=[2e4,5e4]",
    )
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=0,
        help="degrade long clips in chunks of this many frames, each with its own draws (default 0: the whole clip at once)",
    )
    parser.add_argument("--device", default="cpu", help="where the degradation runs (cpu, cuda)")
    parser.add_argument("--overwrite", action="store_true", help="replace clips that exist in LQ_DIR")
    return parser


def _options(pairs: list[str]) -> dict:
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r}: expected KEY=VALUE, e.g. second.noise=null")
        try:
            options[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"--option {pair!r}: the value is not YAML ({str(err).splitlines()[0]})") from None
    return options


def degrade_clip(degradation, frames, seed: int, chunk_frames: int = 0, device: str = "cpu"):
    """``uint8 [T,H,W,3]`` HR frames -> ``uint8 [T,H/s,W/s,3]`` LQ frames, with a generator seeded by ``seed``.

    ``chunk_frames > 0`` degrades consecutive chunks of that many frames independently (chunk ``k``
    seeded with ``seed + k``); 0 degrades the clip as one ``[1,3,T,H,W]`` batch.
    """
    import torch

    from vsr_core.data.video_io import frames_to_tensor, tensor_to_frames

    s = degradation.scale
    t, h, w = frames.shape[:3]
    frames = frames[:, : h // s * s, : w // s * s]
    step = chunk_frames if chunk_frames > 0 else t
    out = []
    for k, start in enumerate(range(0, t, step)):
        hq = frames_to_tensor(frames[start : start + step]).unsqueeze(0).to(device)
        generator = torch.Generator(device=device)
        generator.manual_seed((seed + k) & ((1 << 63) - 1))
        with torch.no_grad():
            lq = degradation(hq, generator=generator).clamp_(-1.0, 1.0)
        out.append(tensor_to_frames(lq[0]))
    return torch.cat(out)


def _write_frames(target: Path, frames) -> None:
    """PNGs ``00000000.png, ...`` into a hidden partial folder, renamed onto ``target`` when complete."""
    from PIL import Image

    from vsr_core.partial_files import partial_path

    tmp = partial_path(target)
    tmp.mkdir()
    try:
        for index, frame in enumerate(frames.numpy()):
            Image.fromarray(frame).save(tmp / f"{index:08d}.png")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_video(target: Path, frames, fps) -> None:
    from vsr_core.data.video_io import VideoWriter

    with VideoWriter(target, fps=fps, codec="libx264", crf=0, pix_fmt="yuv444p") as writer:
        writer.write(frames.numpy())


def _targets(clips: dict[str, Path], outdir: Path, overwrite: bool) -> dict[str, Path]:
    targets = {}
    for name, source in clips.items():
        target = outdir / (source.name if source.is_file() else name)
        if target.suffix.lower() not in ("", ".mp4", ".mkv", ".mov") and source.is_file():
            target = target.with_suffix(".mp4")  # e.g. .avi/.y4m inputs: an mp4 of the same name
        if target.exists() and os.path.samefile(target, source):
            raise ConfigError(f"output '{target}' is the input '{source}'; choose another -o")
        if target.exists() and not overwrite:
            raise ConfigError(f"output '{target}' exists; pass --overwrite to replace it, or choose another -o")
        targets[name] = target
    return targets


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.scale < 1:
        raise ConfigError(f"--scale must be >= 1, got {args.scale}")
    if args.chunk_frames < 0:
        raise ConfigError(f"--chunk-frames must be >= 0, got {args.chunk_frames}")
    from vsr_core.commands.evaluate import find_clips

    clips = find_clips(args.hr_dir)
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise VideoError(f"output directory '{outdir}' is a file; choose another -o")
    targets = _targets(clips, outdir, args.overwrite)

    import torch

    from vsr_core.data.degradations import build_degradation
    from vsr_core.data.video_io import open_video
    from vsr_core.interrupts import exit_code, message

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device} was asked for but no CUDA device is available; use --device cpu")
    degradation = build_degradation(args.degradation, args.scale, **_options(args.option)).to(args.device)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VideoError(f"cannot create output directory '{outdir}' ({err.strerror})") from None

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("clips", total=len(clips))
            for name, source in clips.items():
                progress.update(task, description=f"{name}: reading")
                with open_video(source) as reader:
                    frames, fps = torch.stack(list(reader.iter_frames())), reader.fps
                progress.update(task, description=f"{name}: degrading {len(frames)} frames")
                lq = degrade_clip(degradation, frames, clip_seed(args.seed, name), args.chunk_frames, args.device)
                target = targets[name]
                progress.update(task, description=f"{name}: writing")
                if source.is_dir():
                    _write_frames(target, lq)
                else:
                    _write_video(target, lq, fps)
                progress.advance(task)
                h, w = frames.shape[1:3]
                cropped = (
                    ""
                    if (h % args.scale, w % args.scale) == (0, 0)
                    else f" (from its top-left {w // args.scale * args.scale}x{h // args.scale * args.scale})"
                )
                progress.console.print(
                    f"wrote {target}: {len(lq)} frames {lq.shape[2]}x{lq.shape[1]}{cropped}", highlight=False
                )
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM under `vsr`: no partial clip is left
        print(f"{message(err)}; no partial output was left", file=sys.stderr)
        return exit_code(err)
    print(f"degraded {len(clips)} clip(s) with '{args.degradation}' x{args.scale} (seed {args.seed}) into {outdir}")
    return 0
