"""`vsr restore` with an UltraVSR checkpoint and its `vsr export` folder, through the long-video engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ultravsr import UltraVSR
from vsr_core.commands.restore import main
from vsr_core.data.video_io import VideoReader, probe_video
from vsr_core.export import export_method
from vsr_core.inference import EngineOptions, RestoreEngine
from vsr_core.testing import tiny_trainer

FRAMES, SIZE = 6, 12


def _perturbed() -> UltraVSR:
    method = UltraVSR(**UltraVSR.tiny_init_args)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # trained-looking weights: RTS modules and the UNet's head away from zero
        for p in method.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return method.eval()


def _frames(folder: Path) -> np.ndarray:
    """A smooth moving pattern (``uint8 [T, H, W, 3]``) saved as PNG frames: video coding stays near-lossless."""
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    frames = []
    for t in range(FRAMES):
        base = 128 + 60 * np.sin((x + 2 * t) / 3.0) * np.cos(y / 4.0)
        frame = np.stack([base, base * 0.8 + 20, 255 - base], axis=-1).clip(0, 255).astype(np.uint8)
        Image.fromarray(frame).save(folder / f"{t:03d}.png")
        frames.append(frame)
    return np.stack(frames)


def _read(path: Path) -> np.ndarray:
    info = probe_video(path)
    return VideoReader(path).read_clip(0, info.frames).numpy().astype(np.float32)


def test_restore_from_the_checkpoint_and_the_export_folder(tmp_path: Path):
    method = _perturbed()
    trainer = tiny_trainer(tmp_path / "run", max_steps=0)
    trainer.strategy.connect(method)
    ckpt = tmp_path / "ultravsr.ckpt"
    trainer.save_checkpoint(ckpt)
    folder = export_method(method, tmp_path / "export")
    assert (folder / "model_vsr.pkl").is_file()
    _frames(tmp_path / "in" / "clip")

    common = ["--device", "cpu", "--crf", "0", "--sample", "dem=constant", "--sample", "frames_per_batch=1"]
    assert main([str(tmp_path / "in" / "clip"), "--ckpt", str(ckpt), "-o", str(tmp_path / "a"), *common]) == 0
    assert main([str(tmp_path / "in" / "clip"), "--ckpt", str(folder), "-o", str(tmp_path / "b"), *common]) == 0
    info = probe_video(tmp_path / "a" / "clip.mp4")
    assert (info.frames, info.height, info.width) == (FRAMES, 4 * SIZE, 4 * SIZE)
    from_ckpt, from_export = _read(tmp_path / "a" / "clip.mp4"), _read(tmp_path / "b" / "clip.mp4")
    np.testing.assert_array_equal(from_ckpt, from_export)  # the export holds every trained weight


def test_the_engines_window_is_the_methods_restore():
    method = _perturbed()
    lq = torch.rand(1, 3, 6, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    sampling = {"dem": "constant", "frames_per_batch": 1}
    with torch.no_grad():
        whole = RestoreEngine(method, EngineOptions(sampling=sampling)).restore_tensor(lq[0])
        torch.testing.assert_close(whole, method.restore(lq, **sampling)[0], rtol=0, atol=0)
        # Shorter windows are restored one by one and blended in pixels (UltraVSR opts out of latent fusion).
        engine = RestoreEngine(method, EngineOptions(window=4, overlap=2, sampling=sampling))
        assert not engine.latent
        windows = engine.restore_tensor(lq[0])
        torch.testing.assert_close(windows[:, :2], method.restore(lq[:, :, :4], **sampling)[0, :, :2])
