"""Degradation throughput: frames per second of each preset on CPU (and CUDA when available).

A batch of ``--batch`` clips of ``--frames`` frames at ``--size`` x ``--size`` (default 8 x 16 at
256x256, scale 4) is degraded ``--repeats`` times with different seeds (random resizes change the
work per batch) after a small warm-up; the table shows the median time per batch and frames/s.
The codec stage of ``realbasicvsr`` alone (the CPU round trip of the final low-quality clips) is
timed too. The clips are smooth moving patterns with fine texture, closer to real video than white
noise (which is the worst case for the video encoder).

    python benchmarks/degradation_throughput.py [--repeats 3] [--devices cpu cuda] [--scale 4]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from vsr_core.data.degradations import CodecParams, available_presets, build_degradation
from vsr_core.data.degradations.codec import compress_clips, sample_codec
from vsr_core.data.degradations.random_draws import RandomDraws


def make_clips(batch: int, frames: int, size: int, device: torch.device) -> torch.Tensor:
    """``[batch, 3, frames, size, size]`` in ``[-1, 1]``: drifting sinusoid patterns plus fine texture."""
    g = torch.Generator().manual_seed(0)
    ax = torch.linspace(0, 2 * math.pi, size)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    freq = torch.rand(batch, 3, 2, generator=g) * 6 + 1
    shift = torch.arange(frames, dtype=torch.float32) * 0.05
    phase_x = xx[None, None, None] * freq[..., 0, None, None, None] + shift[None, None, :, None, None]
    phase_y = yy[None, None, None] * freq[..., 1, None, None, None]
    texture = torch.rand(batch, 3, 1, size, size, generator=g) * 0.2
    return (0.7 * torch.sin(phase_x) * torch.cos(phase_y) + texture - 0.1).clamp(-1, 1).to(device)


def time_preset(name: str, hq: torch.Tensor, scale: int, repeats: int) -> float:
    """Median seconds per batch of preset ``name`` on ``hq``'s device, over ``repeats`` seeds.

    A warm-up on a two-frame slice of one clip first loads kornia's JPEG tables, PyAV's encoders
    and the device kernels without paying for a whole batch.
    """
    degradation = build_degradation(name, scale).to(hq.device)
    sync = torch.cuda.synchronize if hq.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        degradation(hq[:1, :, :2], generator=torch.Generator(device=hq.device).manual_seed(0))
        times = []
        for seed in range(repeats):
            generator = torch.Generator(device=hq.device).manual_seed(seed)
            sync()
            start = time.perf_counter()
            degradation(hq, generator=generator)
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_codec(hq: torch.Tensor, scale: int, repeats: int) -> float:
    """Median seconds of the codec stage alone on the bicubic low-quality version of ``hq``."""
    params = CodecParams()
    lq = build_degradation("bicubic", scale)(hq).add(1).mul(0.5).transpose(1, 2)  # [B, T, 3, h, w] in [0, 1]
    times = []
    for seed in range(repeats + 1):
        plan = sample_codec(
            RandomDraws(torch.Generator().manual_seed(seed), "cpu"), lq.shape[0], params, *lq.shape[-2:]
        )
        start = time.perf_counter()
        compress_clips(lq, plan, params.workers)
        if seed > 0:  # the first round trip loads the encoders
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--presets", nargs="+", default=[p for p in available_presets() if p != "none"])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    args = parser.parse_args()

    frames = args.batch * args.frames
    print(
        f"{args.batch} clips x {args.frames} frames at {args.size}x{args.size}, scale {args.scale}, "
        f"median of {args.repeats} (torch threads: {torch.get_num_threads()})"
    )
    print(f"{'preset':<26}{'device':<8}{'s/batch':>10}{'frames/s':>12}")
    for device in args.devices:
        hq = make_clips(args.batch, args.frames, args.size, torch.device(device))
        for preset in args.presets:
            seconds = time_preset(preset, hq, args.scale, args.repeats)
            print(f"{preset:<26}{device:<8}{seconds:>10.3f}{frames / seconds:>12.1f}", flush=True)
        if "realbasicvsr" in args.presets:
            seconds = time_codec(hq, args.scale, args.repeats)
            print(f"{'  of which codec (CPU)':<26}{device:<8}{seconds:>10.3f}{frames / seconds:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
