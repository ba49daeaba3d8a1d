"""Video codec compression (PyAV, in memory) of low-quality clips, on CPU threads.

A real encoder (libx264 / mpeg4) only runs on the CPU, so this is the one stage that leaves the
training device: the final low-quality clips (small: ``H/scale x W/scale``) go to the CPU as
uint8, each clip is encoded and decoded in an ``io.BytesIO`` MP4 by a thread pool (PyAV releases
the GIL while coding), and the result returns to the data device. Encoders run single-threaded so
the bitstream, hence the result, is the same on every machine for a given seed.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from vsr_core.data.degradations.params import CodecParams
from vsr_core.data.degradations.random_draws import RandomDraws

__all__ = ["CodecPlan", "compress_clip", "compress_clips", "sample_codec"]

# yuv420p needs even sizes, and a few codecs misbehave below one macroblock: pad (edge) to this.
_MIN_SIDE = 16
#: PyAV's RGB <-> YUV conversions (swscale) give nondeterministic pixels when clips convert concurrently
#: (measured: 5 of 300 identical runs differed with 4 workers), so the pool's threads take turns there.
_SWSCALE = threading.Lock()
# libx264 takes its bitrate in whole kbit/s and refuses 0: the scaled range of a tiny clip stops here.
_MIN_BITRATE = 1000


@dataclass
class CodecPlan:
    """Per-clip codec choice of a batch: ``None`` = untouched, else ``(codec, bitrate in bit/s)``."""

    settings: list[tuple[str, int] | None]


def sample_codec(draws: RandomDraws, clips: int, params: CodecParams, height: int, width: int) -> CodecPlan:
    """Draw apply flag, codec and bitrate per clip; the bitrate range is scaled to ``height x width``.

    Bitrates below 1 kbit/s (only reachable for clips of a few pixels) are raised to 1 kbit/s.
    """
    apply = draws.host_bernoulli(clips, params.prob)
    codec = draws.host_categorical(clips, params.codec_probs)
    factor = 1.0 if params.reference_pixels is None else height * width / params.reference_pixels
    bitrate = draws.host_uniform(clips, params.bitrate[0] * factor, params.bitrate[1] * factor)
    return CodecPlan(
        [(params.codecs[c], max(int(b), _MIN_BITRATE)) if a else None for a, c, b in zip(apply, codec, bitrate)]
    )


def compress_clip(frames: np.ndarray, codec: str, bitrate: int) -> np.ndarray:
    """Encode + decode one clip ``[T, h, w, 3]`` uint8 RGB in memory; returns the same shape.

    Frames are edge-padded to even sizes of at least 16 pixels for the 4:2:0 encoder and cropped
    back. The stream runs at 1 frame/s, so ``bitrate`` is bits per frame (RealBasicVSR's setting).
    """
    import av  # local: PyAV is only needed when a codec stage runs

    t, h, w, _ = frames.shape
    ph, pw = max(h + h % 2, _MIN_SIDE), max(w + w % 2, _MIN_SIDE)
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=1)
        stream.width, stream.height = pw, ph
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bitrate
        stream.codec_context.thread_count = 1
        for frame in frames:
            with _SWSCALE:
                yuv = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(
                    format="yuv420p"
                )
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, mode="r", format="mp4") as container:
        decoded = []
        for f in container.decode(video=0):
            with _SWSCALE:
                decoded.append(f.to_ndarray(format="rgb24"))
    if len(decoded) != t:
        raise RuntimeError(f"{codec} round trip returned {len(decoded)} frames for {t}")
    return np.stack(decoded)[:, :h, :w]


def compress_clips(clips: torch.Tensor, plan: CodecPlan, workers: int) -> torch.Tensor:
    """Codec round trip of clips ``[B, T, 3, h, w]`` in ``[0, 1]`` (8-bit values) on any device.

    Clips whose plan entry is ``None`` are returned unchanged; the others are coded in a pool of
    ``workers`` threads on the CPU and copied back to the input's device and dtype.
    """
    todo = [i for i, s in enumerate(plan.settings) if s is not None]
    if not todo:
        return clips
    host = (clips[todo].detach().float() * 255.0).round().clamp(0, 255).to("cpu", torch.uint8)
    host = host.permute(0, 1, 3, 4, 2).contiguous().numpy()  # [n, T, h, w, 3]

    def run(k: int) -> np.ndarray:
        codec, bitrate = plan.settings[todo[k]]
        return compress_clip(host[k], codec, bitrate)

    with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        coded = list(pool.map(run, range(len(todo))))
    coded_t = torch.from_numpy(np.stack(coded)).permute(0, 1, 4, 2, 3).to(clips.device, clips.dtype) / 255.0
    out = clips.clone()
    out[todo] = coded_t
    return out
