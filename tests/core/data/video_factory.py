"""Tiny test videos, frame folders and a stand-in degradation, made on the fly with PyAV/PIL."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def pattern(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth, moving, frame-distinct content (survives lossy codecs): uint8 [T, H, W, 3]."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        for c in range(3):
            wave = np.sin(x / 7.0 + t * 0.4 + phase[c]) * np.cos(y / 9.0 - t * 0.3 + c)
            out[t, :, :, c] = np.clip(128 + 100 * wave, 0, 255)
        # a bright square that moves two pixels per frame: frames differ in a decodable way
        s = (2 * t) % max(width - 6, 1)
        out[t, 2:8, s : s + 6] = 255
    return out


def make_video(
    path: Path,
    frames: int = 24,
    height: int = 48,
    width: int = 64,
    fps: Fraction | int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    gop: int = 8,
    rotation: int | None = None,
    audio: bool = False,
    seed: int = 0,
    container_options: dict[str, str] | None = None,
) -> np.ndarray:
    """Write ``pattern(...)`` with PyAV (keyframe every ``gop`` frames); return the frames written.

    ``container_options`` go to the muxer, e.g. ``{"movflags": "faststart"}`` (mp4 index first).
    """
    data = pattern(frames, height, width, seed)
    container = av.open(str(path), "w", options=container_options or {})
    stream = container.add_stream(codec, rate=Fraction(fps))
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    if codec in ("libx264", "libx265"):
        stream.options = {"g": str(gop), "crf": "10"}
    else:
        stream.gop_size = gop
    if rotation is not None:
        stream.set_display_rotation(rotation)
    astream = None
    if audio:
        astream = container.add_stream("aac", rate=16000)
        astream.layout = "mono"
    for img in data:
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    if astream is not None:
        samples = int(16000 * frames / float(fps))
        tone = (0.3 * np.sin(np.arange(samples) * 0.05)).astype(np.float32)
        for i in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, i : i + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i
            for packet in astream.encode(frame):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return data


def truncate(path: Path, fraction: float, target: Path | None = None) -> Path:
    """Copy the first ``fraction`` of ``path``'s bytes to ``target`` (default ``cut-<name>``): a cut download."""
    target = target or path.with_name(f"cut-{path.name}")
    data = path.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def make_audio_only(path: Path, seconds: float = 0.5) -> None:
    container = av.open(str(path), "w")
    astream = container.add_stream("aac", rate=16000)
    astream.layout = "mono"
    samples = int(16000 * seconds)
    for i in range(0, samples, 1024):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, i
        for packet in astream.encode(frame):
            container.mux(packet)
    for packet in astream.encode():
        container.mux(packet)
    container.close()


def make_frame_folder(folder: Path, frames: np.ndarray, name=lambda i: f"{i:04d}.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(frames):
        Image.fromarray(img).save(folder / name(i))
    return folder


def box_downscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Exact box average by ``scale`` (uint8 in, uint8 out), a known LQ for paired tests."""
    t, h, w, c = frames.shape
    x = frames[:, : h // scale * scale, : w // scale * scale].astype(np.float32)
    x = x.reshape(t, h // scale, scale, w // scale, scale, c).mean(axis=(2, 4))
    return np.round(x).astype(np.uint8)


class AvgPoolNoise(torch.nn.Module):
    """Stand-in degradation with the VideoDegradation interface: box downscale + seeded noise."""

    def __init__(self, scale: int, sigma: float = 0.05) -> None:
        super().__init__()
        self.scale, self.sigma = scale, sigma

    def forward(self, hq: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, c, t, h, w = hq.shape
        x = F.avg_pool2d(hq.transpose(1, 2).reshape(b * t, c, h, w), self.scale)
        x = x.reshape(b, t, c, h // self.scale, w // self.scale).transpose(1, 2)
        return x + self.sigma * torch.randn(x.shape, generator=generator, device=x.device)
