"""`vsr degrade`: the documented command, reproducible per clip, the preset's math, atomic outputs, one-line errors."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vsr_core.cli import main as vsr_main
from vsr_core.commands import degrade
from vsr_core.data.video_io import VideoWriter, open_video, probe_video

DOCS = Path(__file__).resolve().parents[3] / "docs"


def frames_of(path: Path) -> torch.Tensor:
    with open_video(path) as reader:
        return torch.stack(list(reader.iter_frames()))


@pytest.fixture
def hr(tmp_path):
    """HR_DIR with a 6-frame 64x48 video (25 fps) and a 5-frame folder of 40x32 PNGs (smooth random content)."""
    root = tmp_path / "hr"
    (root / "frames").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)

    def smooth(t, h, w):
        x = torch.rand(t, 3, h // 8, w // 8, generator=g)
        return (
            (F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False) * 255)
            .round()
            .to(torch.uint8)
            .permute(0, 2, 3, 1)
        )

    with VideoWriter(root / "pan.mp4", fps=25, codec="libx264", crf=0, pix_fmt="yuv444p") as writer:
        writer.write(smooth(6, 48, 64).numpy())
    for i, frame in enumerate(smooth(5, 32, 40).numpy()):
        Image.fromarray(frame).save(root / "frames" / f"{i:03d}.png")
    return root


def documented_command() -> list[str]:
    """The `vsr degrade` line docs/getting-started.md prints (with its HR_DIR / LQ_DIR placeholders)."""
    text = (DOCS / "getting-started.md").read_text()
    line = next(m.group(0) for m in re.finditer(r"^vsr degrade .*$", text, re.M))
    return line.split("#")[0].split()


def run_documented(hr: Path, lq: Path) -> int:
    argv = documented_command()
    assert argv[:2] == ["vsr", "degrade"] and "HR_DIR" in argv and "LQ_DIR" in argv
    return vsr_main([{"HR_DIR": str(hr), "LQ_DIR": str(lq)}.get(a, a) for a in argv[1:]])


def test_the_documented_command_writes_the_lq_half_with_the_same_names(hr, tmp_path, capsys):
    assert documented_command()[1:] == [
        "degrade",
        "HR_DIR",
        "-o",
        "LQ_DIR",
        "--degradation",
        "realbasicvsr",
        "--scale",
        "4",
        "--seed",
        "0",
    ]
    lq = tmp_path / "lq"
    assert run_documented(hr, lq) == 0
    assert sorted(p.name for p in lq.iterdir()) == ["frames", "pan.mp4"]
    video = probe_video(lq / "pan.mp4")
    assert (video.frames, video.width, video.height, video.fps) == (6, 16, 12, Fraction(25))
    pngs = sorted((lq / "frames").iterdir())
    assert [p.name for p in pngs] == [f"{i:08d}.png" for i in range(5)]
    assert Image.open(pngs[0]).size == (10, 8)
    assert "degraded 2 clip(s) with 'realbasicvsr' x4 (seed 0)" in capsys.readouterr().out


def test_same_seed_same_bytes_per_clip_whatever_else_is_degraded(hr, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert run_documented(hr, a) == 0
    assert (
        vsr_main(
            [
                "degrade",
                str(hr / "frames"),
                "-o",
                str(b),
                "--degradation",
                "realbasicvsr",
                "--scale",
                "4",
                "--seed",
                "0",
            ]
        )
        == 0
    )
    for png in (a / "frames").iterdir():  # alone or with the video: the same draws for this clip
        assert png.read_bytes() == (b / "frames" / png.name).read_bytes()
    assert (
        vsr_main(["degrade", str(hr), "-o", str(c), "--degradation", "realbasicvsr", "--scale", "4", "--seed", "1"])
        == 0
    )
    assert not torch.equal(frames_of(a / "frames"), frames_of(c / "frames"))
    assert not torch.equal(frames_of(a / "pan.mp4"), frames_of(c / "pan.mp4"))
    assert degrade.clip_seed(0, "frames") != degrade.clip_seed(0, "pan") != degrade.clip_seed(1, "pan")


def test_bicubic_is_an_antialiased_bicubic_downscale_of_the_top_left_crop(tmp_path):
    """38x30 frames at scale 4: the 36x28 top-left crop, antialiased bicubic to 9x7, rounded to 8 bits."""
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (3, 30, 38, 3), generator=g, dtype=torch.uint8)
    (tmp_path / "hr" / "odd").mkdir(parents=True)
    for i, frame in enumerate(frames.numpy()):
        Image.fromarray(frame).save(tmp_path / "hr" / "odd" / f"{i}.png")
    assert (
        vsr_main(
            ["degrade", str(tmp_path / "hr"), "-o", str(tmp_path / "lq"), "--degradation", "bicubic", "--scale", "4"]
        )
        == 0
    )
    got = frames_of(tmp_path / "lq" / "odd")
    crop = frames[:, :28, :36].permute(0, 3, 1, 2).float() / 255
    expected = F.interpolate(crop, size=(7, 9), mode="bicubic", align_corners=False, antialias=True)
    expected = (expected.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert got.shape == (3, 7, 9, 3)
    assert (got.int() - expected.int()).abs().max() <= 1


def test_outputs_are_atomic_and_existing_ones_need_overwrite(hr, tmp_path, monkeypatch, capsys):
    lq = tmp_path / "lq"
    real_save = Image.Image.save
    calls = {"n": 0}

    def failing_save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError):
        vsr_main(["degrade", str(hr / "frames"), "-o", str(lq), "--degradation", "bicubic"])
    assert list(lq.iterdir()) == []  # neither the clip nor a hidden partial folder
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert vsr_main(["degrade", str(hr), "-o", str(lq), "--degradation", "bicubic"]) == 0
    assert vsr_main(["degrade", str(hr), "-o", str(lq), "--degradation", "bicubic"]) == 2
    assert capsys.readouterr().err.strip().endswith("exists; pass --overwrite to replace it, or choose another -o")
    assert vsr_main(["degrade", str(hr), "-o", str(lq), "--degradation", "bicubic", "--overwrite"]) == 0
    assert sorted(p.name for p in lq.iterdir()) == ["frames", "pan.mp4"]
    assert vsr_main(["degrade", str(hr), "-o", str(hr), "--degradation", "bicubic", "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err


def test_bad_options_are_one_line(hr, tmp_path, capsys):
    out = str(tmp_path / "lq")
    assert vsr_main(["degrade", str(hr), "-o", out, "--degradation", "none", "--scale", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: degradation 'none' keeps the frame size") and "\n" not in err
    assert vsr_main(["degrade", str(hr), "-o", out, "--option", "second.noise"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert vsr_main(["degrade", str(tmp_path / "missing"), "-o", out]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_the_preset_list_is_the_pipelines():
    from vsr_core.data.degradations import available_presets

    assert list(degrade.PRESET_NAMES) == available_presets()
