"""Peak memory and time of restoring 256 vs 32 frames of one clip (tiny reference method, CPU).

Each length runs in a fresh subprocess so peak RSS (``ru_maxrss``) belongs to that run alone.
Targets: RSS ratio <= 1.2, time ratio <= 9 (8x the frames, linear).

    python benchmarks/restore_scaling.py [--size 64] [--window 16 --overlap 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clip(path: Path, frames: int, size: int) -> None:
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height = stream.width = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):  # a texture panning across the frame
            img = np.ascontiguousarray(base[t % size : t % size + size, :size])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def child(video: str, out: str, window: int, overlap: int) -> None:
    import torch

    from reference.model import ReferenceVSR
    from vsr_core.inference import EngineOptions, RestoreEngine, restore_file

    torch.set_num_threads(2)
    torch.manual_seed(0)
    method = ReferenceVSR(scale=4, channels=16, num_blocks=2).eval()
    engine = RestoreEngine(method, EngineOptions(window=window, overlap=overlap))
    start = time.perf_counter()
    frames = restore_file(engine, video, out)
    seconds = time.perf_counter() - start
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": frames, "seconds": seconds, "rss_mib": rss_mib}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=4)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.window, args.overlap)
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for frames in (32, 256):
            clip = Path(tmp) / f"clip{frames}.mp4"
            make_clip(clip, frames, args.size)
            cmd = [
                sys.executable,
                __file__,
                "--window",
                str(args.window),
                "--overlap",
                str(args.overlap),
                "--child",
                str(clip),
                str(Path(tmp) / f"out{frames}.mp4"),
            ]
            results[frames] = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            )
    small, large = results[32], results[256]
    for n, r in results.items():
        print(f"{n:4d} frames: {r['seconds']:.2f} s, peak RSS {r['rss_mib']:.0f} MiB")
    print(f"peak RSS ratio 256/32: {large['rss_mib'] / small['rss_mib']:.3f} (target <= 1.2)")
    print(f"time ratio 256/32: {large['seconds'] / small['seconds']:.2f} (target <= 9)")


if __name__ == "__main__":
    main()
