"""Where the time of `vsr restore` goes for the tiny SATB-VR preset on a CPU (issue 18 item 3).

Runs ``vsr restore`` in this process on a ``--frames`` x ``--size``² clip (x4) with a checkpoint
of ``vsr fit --model satb.SATBVR`` defaults (made with ``tiny_trainer`` unless ``--ckpt`` is
given) and times, inclusively, what the run spends in: SATB-VR's ``restore`` calls, attention
(``F.scaled_dot_product_attention``), the predictor, denoiser and ControlNet forwards, the codec,
the wavelet colour fix, and everything outside ``restore`` (decode, engine, writing, progress).
It counts the windows/tiles and the LQ frames and pixels the model was run on (overlap waste).

    python benchmarks/restore_profile.py [--frames 32 --size 64] [--threads 2] [-- extra vsr restore flags]

On a shared machine the wall time depends on the other jobs; the process CPU time does much less.
It only patches functions every version of the engine has, so the same script measures an older
checkout (``PYTHONPATH=<old tree>:<old tree>/plugins python benchmarks/restore_profile.py``).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def make_clip(path: Path, frames: int, size: int) -> None:
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size + frames, size + frames, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height = stream.width = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):  # a texture panning diagonally
            img = np.ascontiguousarray(base[t : t + size, t : t + size])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_checkpoint(path: Path) -> None:
    """A checkpoint of `vsr fit --model satb.SATBVR` (the class defaults: tiny preset, x4, 5 steps)."""
    import torch

    from satb import SATBVR
    from vsr_core.testing import tiny_trainer

    torch.manual_seed(0)
    trainer = tiny_trainer(path.parent, max_steps=0)
    trainer.strategy.connect(SATBVR())
    trainer.save_checkpoint(path)


class Timers:
    """Inclusive seconds and call counts per label, collected by wrapping functions.

    Calls nested inside a call of the same label (``restore`` runs ``prepare_window`` and the
    others, all under one label) are timed and counted once, by the outermost call.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._active: dict[str, int] = defaultdict(int)

    def wrap(self, owner: object, name: str, label: str, on_call=None) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if self._active[label]:
                return original(*args, **kwargs)
            if on_call is not None:
                on_call(*args, **kwargs)
            self._active[label] += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._active[label] -= 1
                self.seconds[label] += time.perf_counter() - start
                self.calls[label] += 1

        setattr(owner, name, timed)


MODEL = "SATB-VR model work (restore / window calls)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="LQ side in pixels (output x4)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("extra", nargs="*", help="more vsr restore flags (after --)")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    if args.threads:
        torch.set_num_threads(args.threads)
    import satb.model
    from satb import SATBVR
    from satb.controlnet import SATBControlNet
    from satb.denoiser import LQConditionedTransformer
    from satb.predictor import AuxiliaryPredictor
    from vsr_core.commands.restore import main as restore
    from vsr_core.latent import PixelUnshuffleCodec

    timers = Timers()
    work = {"lq_frames": 0, "lq_pixels": 0}

    def count(self, lq, *a, **k):
        work["lq_frames"] += lq.shape[2]
        work["lq_pixels"] += lq.shape[2] * lq.shape[3] * lq.shape[4]

    # The model work: ``restore`` per window, or (latent fusion) prepare_window / denoise_step /
    # finish_window per window and tile; nested calls (``restore`` runs the other three) count once.
    for method_name in ("restore", "prepare_window", "denoise_step", "finish_window"):
        if hasattr(SATBVR, method_name):  # older checkouts have only ``restore``
            on_call = count if method_name in ("restore", "prepare_window") else None
            timers.wrap(SATBVR, method_name, MODEL, on_call=on_call)
    timers.wrap(AuxiliaryPredictor, "forward", "  predictor forward")
    timers.wrap(LQConditionedTransformer, "forward", "  denoiser forward")
    timers.wrap(SATBControlNet, "forward", "  ControlNet forward")
    timers.wrap(F, "scaled_dot_product_attention", "  attention (SDPA, inside the forwards)")
    timers.wrap(PixelUnshuffleCodec, "encode", "  codec encode")
    timers.wrap(PixelUnshuffleCodec, "decode", "  codec decode")
    timers.wrap(satb.model, "wavelet_color_fix", "  wavelet colour fix")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = tmp / "clip.mp4"
        make_clip(clip, args.frames, args.size)
        ckpt = args.ckpt
        if ckpt is None:
            ckpt = tmp / "ckpt" / "satb.ckpt"
            ckpt.parent.mkdir()
            make_checkpoint(ckpt)
        argv = [str(clip), "--ckpt", str(ckpt), "-o", str(tmp / "out"), "--device", "cpu", *args.extra]
        load = os.getloadavg()[0]
        start, cpu_start = time.perf_counter(), time.process_time()
        code = restore(argv)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if code != 0:
        sys.exit(code)
    model = timers.seconds[MODEL]
    print(
        f"vsr restore {args.frames} frames x {args.size}x{args.size} (x4), tiny SATB-VR, flags {args.extra or '(defaults)'}"
    )
    print(f"torch threads {torch.get_num_threads()}, 1-min load average at start {load:.2f} ({os.cpu_count()} CPUs)")
    print(f"{'where':45s} {'seconds':>9s} {'calls':>7s}")
    print(f"{'total (wall)':45s} {total:9.2f}")
    print(f"{'total (CPU time of this process)':45s} {cpu:9.2f}")
    for label, seconds in timers.seconds.items():
        print(f"{label:45s} {seconds:9.2f} {timers.calls[label]:7d}")
    print(f"{'outside the model (decode, engine, write, UI)':45s} {total - model:9.2f}")
    frames = work["lq_frames"]
    print(
        f"model ran on {frames} LQ frames for {args.frames} ({frames / args.frames:.2f}x), "
        f"{work['lq_pixels'] / (args.frames * args.size**2):.2f}x the video's LQ pixels"
    )


if __name__ == "__main__":
    main()
