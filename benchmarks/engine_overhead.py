"""Engine overhead: total restore time of a video vs the time spent in the method's ``restore`` calls.

Decoding, window assembly, fusion and encoding must add at most 10% (ratio <= 1.10). The method is
the reference method at a width where its own compute dominates, as a real model's does.

    python benchmarks/engine_overhead.py [--frames 64] [--size 96]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from restore_scaling import make_clip

from reference.model import ReferenceVSR
from vsr_core.inference import EngineOptions, RestoreEngine, restore_file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--channels", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(2)
    method = ReferenceVSR(scale=4, channels=args.channels, num_blocks=2).eval()
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, args.frames, args.size)
        engine = RestoreEngine(method, EngineOptions(window=16, overlap=4))
        start = time.perf_counter()
        restore_file(engine, clip, Path(tmp) / "out.mp4")
        total = time.perf_counter() - start
    windows = len(engine.plan(args.frames).windows)
    print(
        f"{args.frames} frames {args.size}px x4, {windows} windows: total {total:.2f} s, "
        f"method.restore {engine.restore_seconds:.2f} s"
    )
    print(f"overhead ratio total / restore calls: {total / engine.restore_seconds:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
