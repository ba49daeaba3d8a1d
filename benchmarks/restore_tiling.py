"""Peak RSS of `vsr restore` with default options: a large clip against a 180p one (issue 12 item 4).

A tiny SATB-VR checkpoint (``vsr fit --model satb.SATBVR`` defaults: tiny preset, x4, 5 steps;
made with ``tiny_trainer`` unless ``--ckpt`` is given) restores short PyAV-made clips of each
size, each ``vsr restore`` in its own process, with default options: frames larger than the
method's native tile (64 output pixels on the tiny preset) are tiled automatically. The peak RSS
of each process (``ru_maxrss`` from ``wait4``) is compared with the 180p one. Target: ratio <= 1.5.

For scale: the process also holds the H.264 encoder of the x4 output, whose own memory grows
with the frame size; ``--encoder-only`` measures that part alone (PyAV encoding the same number
of output-sized frames in a fresh process), so the engine's share can be read off.

    python benchmarks/restore_tiling.py [--sizes 320x180,720x405,1280x720] [--frames 9] [--encoder-only]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_clip(path: Path, frames: int, width: int, height: int) -> None:
    import av

    rng = np.random.default_rng(0)
    base = (
        rng.integers(0, 256, (height // 4 + frames, width // 4 + frames, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    )
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"  # 720x405 is odd
        for t in range(frames):  # a blocky texture panning across the frame
            img = np.ascontiguousarray(base[t : t + height, t : t + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def peak_rss_mib(command: list[str]) -> tuple[float, float, str]:
    """Run ``command``; its peak RSS in MiB, wall seconds and the tail of its stderr."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-2000:]
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{tail}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start, tail


def encoder_child(width: int, height: int, frames: int, out: str) -> None:
    import av

    img = (
        np.random.default_rng(0)
        .integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        .repeat(16, 0)
        .repeat(16, 1)
    )
    with av.open(out, "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for t in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.roll(img, 4 * t, 1), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="320x180,720x405,1280x720", help="LQ sizes WxH; the first is the reference")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--encoder-only", action="store_true", help="also measure the x4 output's H.264 encoder alone")
    parser.add_argument("--flags", default="", help="extra vsr restore flags for a diagnostic run (default: none)")
    parser.add_argument("--encoder-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.checkpoint_child:
        sys.path.insert(0, str(HERE))
        from restore_profile import make_checkpoint

        make_checkpoint(args.checkpoint_child)
        return
    if args.encoder_child:
        w, h, n, out = args.encoder_child
        encoder_child(int(w), int(h), int(n), out)
        return
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = args.ckpt
        if ckpt is None:
            # In a child process: Linux's ru_maxrss of a forked child starts from the parent's RSS,
            # so this process must never import torch (it would floor every measurement at ~1 GiB).
            ckpt = tmp / "ckpt" / "satb.ckpt"
            ckpt.parent.mkdir()
            subprocess.run(
                [sys.executable, __file__, "--checkpoint-child", str(ckpt)], check=True, stdout=subprocess.DEVNULL
            )
        for width, height in sizes:
            clip = tmp / f"clip_{width}x{height}.mp4"
            make_clip(clip, args.frames, width, height)
            command = [
                sys.executable,
                "-m",
                "vsr_core.cli",
                "restore",
                str(clip),
                "--ckpt",
                str(ckpt),
                "-o",
                str(tmp / f"out_{width}x{height}"),
                "--device",
                "cpu",
                *args.flags.split(),
            ]
            rss, seconds, _ = peak_rss_mib(command)
            encoder = None
            if args.encoder_only:
                encoder, _, _ = peak_rss_mib(
                    [
                        sys.executable,
                        __file__,
                        "--encoder-child",
                        str(4 * width),
                        str(4 * height),
                        str(args.frames),
                        str(tmp / "encoder.mp4"),
                    ]
                )
            rows.append((width, height, rss, seconds, encoder))
            print(
                f"{width}x{height}: peak RSS {rss:.0f} MiB, {seconds:.0f} s"
                + (f" (the x4 H.264 encoder alone: {encoder:.0f} MiB)" if encoder else ""),
                flush=True,
            )
    reference = rows[0][2]
    print(f"\n{args.frames} frames, x4, vsr restore {args.flags or 'defaults'}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'LQ size':>10s} {'peak RSS MiB':>13s} {'ratio':>6s} {'seconds':>8s} {'encoder alone MiB':>18s}")
    for width, height, rss, seconds, encoder in rows:
        enc = f"{encoder:.0f}" if encoder else "-"
        print(f"{f'{width}x{height}':>10s} {rss:13.0f} {rss / reference:6.2f} {seconds:8.0f} {enc:>18s}")
    print("target: ratio <= 1.5")


if __name__ == "__main__":
    main()
