"""`vsr restore` end to end, in process, with a tiny reference checkpoint."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vsr_core.commands.restore import main
from vsr_core.data.video_io import VideoReader, probe_video


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from reference.model import ReferenceVSR

    from vsr_core.testing import tiny_trainer

    root = tmp_path_factory.mktemp("ckpt")
    method = ReferenceVSR(scale=2, channels=4, num_blocks=1)
    trainer = tiny_trainer(root, max_steps=0)
    trainer.strategy.connect(method)
    path = root / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


def write_video(
    path: Path, frames: int, height: int = 24, width: int = 32, audio: bool = False
) -> np.ndarray:
    """A random ``frames``-frame H.264 clip at 24 fps (yuv444p for odd sizes), with silent AAC if ``audio``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(frames)
    data = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.height, stream.width = height, width
        stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        a_stream = container.add_stream("aac", rate=16000) if audio else None
        for img in data:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(img, format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if a_stream is not None:
            samples = np.zeros((1, 16000 * frames // 24), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in a_stream.encode(frame):
                container.mux(packet)
            for packet in a_stream.encode():
                container.mux(packet)
    return data


def test_restores_videos_and_frame_folders_keeping_count_fps_audio(
    ckpt, tmp_path, capsys
):
    write_video(tmp_path / "in" / "clip.mp4", 21, audio=True)
    write_video(
        tmp_path / "in" / "one.mp4", 1, height=7, width=9
    )  # 1 frame, tiny odd size
    folder = tmp_path / "in" / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(
            folder / f"{i:03d}.png"
        )
    out = tmp_path / "out"
    assert (
        main(
            [
                str(tmp_path / "in"),
                "--ckpt",
                str(ckpt),
                "-o",
                str(out),
                "--window",
                "8",
                "--overlap",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert sorted(os.listdir(out)) == ["clip.mp4", "frames.mp4", "one.mp4"]
    clip = probe_video(out / "clip.mp4")
    assert (clip.frames, clip.fps, clip.width, clip.height, clip.has_audio) == (
        21,
        Fraction(24),
        64,
        48,
        True,
    )
    one = probe_video(out / "one.mp4")
    assert (one.frames, one.width, one.height) == (1, 18, 14)
    frames = probe_video(out / "frames.mp4")
    assert (frames.frames, frames.width, frames.height) == (3, 24, 20)
    # the untrained reference method is a bicubic upsampler: flat frames stay flat
    last = VideoReader(out / "frames.mp4").read_clip(2, 1)[0].float()
    assert abs(last.mean().item() - 80) < 3


def test_same_command_gives_the_same_video(ckpt, tmp_path):
    write_video(tmp_path / "a.mp4", 9)
    args = [
        str(tmp_path / "a.mp4"),
        "--ckpt",
        str(ckpt),
        "--device",
        "cpu",
        "--tile",
        "16",
        "--tile-overlap",
        "4",
        "--color-fix",
        "wavelet",
    ]
    assert main([*args, "-o", str(tmp_path / "o1")]) == 0
    assert main([*args, "-o", str(tmp_path / "o2")]) == 0
    a = VideoReader(tmp_path / "o1" / "a.mp4").read_clip(0, 9)
    b = VideoReader(tmp_path / "o2" / "a.mp4").read_clip(0, 9)
    assert torch.equal(a, b)


def run_error(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert (
        code != 0
        and err.startswith("error: ")
        and "\n" not in err
        and "Traceback" not in err
    )
    return err


def test_bad_inputs_fail_with_one_line(ckpt, tmp_path, capsys):
    c = ["--ckpt", str(ckpt), "--device", "cpu", "-o", str(tmp_path / "out")]
    assert "does not exist" in run_error([str(tmp_path / "missing.mp4"), *c], capsys)
    (tmp_path / "empty_dir").mkdir()
    assert "no video files" in run_error([str(tmp_path / "empty_dir"), *c], capsys)
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "empty.mp4" in run_error([str(tmp_path / "empty.mp4"), *c], capsys)
    (tmp_path / "junk.mp4").write_bytes(os.urandom(2000))
    assert "junk.mp4" in run_error([str(tmp_path / "junk.mp4"), *c], capsys)
    good = tmp_path / "good.mp4"
    write_video(good, 30)
    (tmp_path / "cut.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    run_error([str(tmp_path / "cut.mp4"), *c], capsys)
    assert "steps" in run_error([str(good), *c, "--steps", "4"], capsys)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the output directory should be")
    assert "output directory" in run_error(
        [str(good), "--ckpt", str(ckpt), "-o", str(blocked / "sub")], capsys
    )
    assert not (tmp_path / "out").exists() or not any(
        p.suffix == ".mp4" for p in (tmp_path / "out").iterdir()
    )


def test_checkpoint_of_an_uninstalled_plugin_names_it(ckpt, tmp_path, capsys):
    checkpoint = torch.load(ckpt, weights_only=False)
    checkpoint["vsr_method"]["class_path"] = "gonevsr.model.GoneVSR"
    torch.save(checkpoint, tmp_path / "gone.ckpt")
    write_video(tmp_path / "v.mp4", 2)
    assert "gonevsr" in run_error(
        [
            str(tmp_path / "v.mp4"),
            "--ckpt",
            str(tmp_path / "gone.ckpt"),
            "-o",
            str(tmp_path / "o"),
        ],
        capsys,
    )


def test_ctrl_c_mid_video_leaves_no_file(ckpt, tmp_path, capsys, monkeypatch):
    from vsr_core.inference import engine

    calls = {"n": 0}
    original = engine.RestoreEngine.restore_window

    def interrupt_on_second_window(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(
        engine.RestoreEngine, "restore_window", interrupt_on_second_window
    )
    write_video(tmp_path / "long.mp4", 30)
    code = main(
        [
            str(tmp_path / "long.mp4"),
            "--ckpt",
            str(ckpt),
            "-o",
            str(tmp_path / "o"),
            "--window",
            "8",
            "--device",
            "cpu",
        ]
    )
    assert code == 130 and calls["n"] == 2
    assert not (tmp_path / "o").exists()  # neither the partial file nor the folder this run created
