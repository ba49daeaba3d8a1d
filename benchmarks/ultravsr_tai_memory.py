"""UltraVSR's temporally asynchronous inference (Sec. 3.5): peak memory of restoring 120 vs 12 frames in ONE window.

The tiny preset restores the same clip (a camera pan over a real photo, scikit-image's astronaut) of 12 and of
120 frames with a single ``restore`` call each -- no temporal windows, no intervals: RTS propagation sees every
frame. With TAI (``frames_per_batch=1``, the release's default) the spatial layers of the VAE encoder, the UNet
and the VAE decoder run one frame at a time, so only the features at the RTS modules (and the UNet's skips) are
kept for the whole clip. For contrast the same runs with every frame at once (``frames_per_batch=0``).
Each run is a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own. Target: TAI ratio <= 1.3.

    python benchmarks/ultravsr_tai_memory.py [--size 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(frames: int, frames_per_batch: int, size: int, threads: int) -> None:
    sys.path.insert(0, str(ROOT / "plugins"))
    import numpy as np
    import skimage.data
    import torch

    from ultravsr import UltraVSR

    torch.set_num_threads(threads)
    photo = torch.from_numpy(np.ascontiguousarray(skimage.data.astronaut())).permute(2, 0, 1).float() / 127.5 - 1
    photo = torch.nn.functional.interpolate(photo[None], size=(4 * size, 4 * size), mode="area")[0]
    clip = torch.stack(
        [photo[:, 2 * t % size : 2 * t % size + size, t % size : t % size + size] for t in range(frames)], 1
    )
    method = UltraVSR(preset="tiny").eval()
    start = time.perf_counter()
    with torch.inference_mode():
        out = method.restore(clip[None], frames_per_batch=frames_per_batch)
    seconds = time.perf_counter() - start
    assert out.shape == (1, 3, frames, 4 * size, 4 * size)
    print(json.dumps({"seconds": seconds, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run(frames: int, frames_per_batch: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", str(frames), str(frames_per_batch), "--size", str(args.size)]
    command += ["--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32, help="LR side (the output is 4x)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.size, args.threads)
        return 0
    rows = {}
    for b, name in ((1, "TAI, b = 1"), (0, "all frames at once")):
        rows[name] = {n: run(n, b, args) for n in (12, 120)}
    print(
        f"\nUltraVSR tiny, one restore call, {args.size}x{args.size} -> {4 * args.size}x{4 * args.size}, {args.threads} threads"
    )
    print(
        f"| {'spatial layers':<20} | {'12 frames MiB':>13} | {'120 frames MiB':>14} | {'ratio':>5} | {'s (12 / 120)':>14} |"
    )
    print(f"|{'-' * 22}|{'-' * 15}|{'-' * 16}|{'-' * 7}|{'-' * 16}|")
    for name, r in rows.items():
        ratio = r[120]["rss_mib"] / r[12]["rss_mib"]
        seconds = f"{r[12]['seconds']:.1f} / {r[120]['seconds']:.1f}"
        print(
            f"| {name:<20} | {r[12]['rss_mib']:>13.0f} | {r[120]['rss_mib']:>14.0f} | {ratio:>5.2f} | {seconds:>14} |"
        )
    tai = rows["TAI, b = 1"][120]["rss_mib"] / rows["TAI, b = 1"][12]["rss_mib"]
    print(f"\nTAI peak RSS ratio 120 / 12 frames: {tai:.3f} (target <= 1.3): {'OK' if tai <= 1.3 else 'FAIL'}")
    return 0 if tai <= 1.3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
