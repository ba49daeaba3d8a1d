"""vsr.load / Pipeline: files, uint8 frames and float tensors through the engine, with vsr restore's options."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

import vsr
from vsr_core.errors import ConfigError, VSRError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from vsr_core.testing import LatentBoringMethod, tiny_trainer

    root = tmp_path_factory.mktemp("pipeline")
    trainer = tiny_trainer(root, max_steps=0)
    trainer.strategy.connect(LatentBoringMethod(scale=2, upsample="nearest", native_tile=8))
    trainer.save_checkpoint(root / "latent.ckpt")
    return root / "latent.ckpt"


def test_float_videos_come_back_as_float_videos_and_match_the_engine(ckpt):
    from vsr_core.inference import EngineOptions, RestoreEngine

    pipe = vsr.load(ckpt, device="cpu", window=6, overlap=2)
    video = torch.rand(2, 3, 9, 12, 10, dtype=torch.float64) * 2 - 1
    out = pipe(video, steps=2, seed=3)
    assert out.shape == (2, 3, 9, 24, 20) and out.dtype == torch.float64
    engine = RestoreEngine(
        pipe.method, EngineOptions(window=6, overlap=2, seed=3, sampling={"num_inference_steps": 2})
    )
    for b in range(2):  # each video of the batch restored on its own, not rounded to 8 bits
        assert torch.allclose(out[b].float(), engine.restore_tensor(video[b].float()), atol=1e-6)
    assert not torch.equal(out, pipe(video, steps=2, seed=4))  # options per call
    assert torch.equal(out, pipe(video, steps=2, seed=3))


def test_uint8_frames_keep_their_type(ckpt):
    pipe = vsr.load(str(ckpt), device="cpu")
    frames = np.random.default_rng(0).integers(0, 256, (5, 12, 10, 3), dtype=np.uint8)
    out = pipe(frames)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (5, 24, 20, 3)
    as_tensor = pipe(torch.from_numpy(frames))
    assert isinstance(as_tensor, torch.Tensor) and torch.equal(as_tensor, torch.from_numpy(out))


def write_clip(path: Path, frames: int = 4, size: int = 16) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.height = stream.width = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.full((size, size, 3), 30 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_paths_are_written_like_vsr_restore(ckpt, tmp_path):
    from vsr_core.data.video_io import probe_video

    (tmp_path / "in").mkdir()
    write_clip(tmp_path / "in" / "a.mp4")
    write_clip(tmp_path / "in" / "b.mp4", frames=3)
    pipe = vsr.load(ckpt, device="cpu")
    written = pipe(tmp_path / "in", output=tmp_path / "out")
    assert written == [tmp_path / "out" / "a.mp4", tmp_path / "out" / "b.mp4"]
    assert [(probe_video(p).frames, probe_video(p).width) for p in written] == [(4, 32), (3, 32)]
    with pytest.raises(ConfigError, match="exists; pass --overwrite"):
        pipe(str(tmp_path / "in" / "a.mp4"), output=tmp_path / "out")
    assert pipe(str(tmp_path / "in" / "a.mp4"), output=tmp_path / "out", overwrite=True) == [
        tmp_path / "out" / "a.mp4"
    ]


def test_bad_inputs_and_options_are_one_line_errors(ckpt, tmp_path):
    with pytest.raises(ConfigError, match="unknown option.*stepz.*vsr.load takes: steps, prompt"):
        vsr.load(ckpt, device="cpu", stepz=2)
    with pytest.raises(ConfigError, match="has no such sampling option; it takes: guidance_scale"):
        vsr.load(ckpt, device="cpu", sample={"alpha": 1})
    with pytest.raises(ConfigError, match="LatentBoringMethod has no text encoder"):
        vsr.load(ckpt, device="cpu", prompt="a cat")
    pipe = vsr.load(ckpt, device="cpu")
    with pytest.raises(ConfigError, match="a float video must be"):
        pipe(torch.rand(3, 4, 8, 8))
    with pytest.raises(ConfigError, match="a numpy video must be uint8"):
        pipe(np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(ConfigError, match="cannot restore a list"):
        pipe([1, 2])
    with pytest.raises(ConfigError, match="output= is for file and folder inputs"):
        pipe(np.zeros((2, 8, 8, 3), np.uint8), output=tmp_path)
    with pytest.raises(VSRError, match="does not exist"):
        pipe(tmp_path / "missing.mp4")
    with pytest.raises(VSRError):
        vsr.load(tmp_path / "missing.ckpt", device="cpu")
    assert vsr.__all__ == ["Pipeline", "load"]
