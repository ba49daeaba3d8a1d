"""I/O alone at 720p on CPU: our streaming decode + encode (PyAV) vs the ``ffmpeg`` CLI on the same clip.

Both decode the clip and encode H.264 yuv420p at CRF 18 with default presets and threads;
prints frames/s of each and the ratio (ours / ffmpeg). Needs ``ffmpeg`` on PATH (benchmark only).

    python benchmarks/video_io_vs_ffmpeg.py [--frames 120]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from vsr_core.data.video_io import VideoReader, VideoWriter


def make_720p(path: Path, frames: int) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (720 // 8, 1280 // 8 + frames, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = 720, 1280, "yuv420p"
        for t in range(frames):
            img = np.ascontiguousarray(base[:, t * 8 % (base.shape[1] - 1280) :][:, :1280])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        sys.exit("ffmpeg is not on PATH (apt-get install ffmpeg); it is only needed for this benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_720p(clip, args.frames)
        start = time.perf_counter()
        with (
            VideoReader(clip) as reader,
            VideoWriter(Path(tmp) / "ours.mp4", fps=reader.fps, crf=18) as writer,
        ):
            for frame in reader.iter_frames():
                writer.write(frame)
        ours = args.frames / (time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run(
            [
                ffmpeg,
                "-v",
                "error",
                "-y",
                "-i",
                str(clip),
                "-c:v",
                "libx264",
                "-crf",
                "18",
                "-pix_fmt",
                "yuv420p",
                str(Path(tmp) / "ffmpeg.mp4"),
            ],
            check=True,
        )
        theirs = args.frames / (time.perf_counter() - start)
    print(f"720p decode+encode, {args.frames} frames: ours {ours:.1f} frames/s, ffmpeg CLI {theirs:.1f} frames/s")
    print(f"ratio ours / ffmpeg: {ours / theirs:.3f}")


if __name__ == "__main__":
    main()
