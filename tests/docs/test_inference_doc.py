"""docs/inference.md is executable: its `vsr predict` command runs exactly as printed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "inference.md"


def predict_command() -> list[str]:
    """The fenced `vsr predict ...` block of the guide, continuation lines joined, split like a shell."""
    blocks = re.findall(r"^```\n(vsr predict .*?)^```$", GUIDE.read_text(), re.S | re.M)
    assert len(blocks) == 1, "docs/inference.md should print one `vsr predict` command"
    return shlex.split(blocks[0].replace("\\\n", " "))


def write_video(path: Path, frames: int) -> None:
    data = np.random.default_rng(0).integers(0, 256, (frames, 16, 16, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height = stream.width = 16
        stream.pix_fmt = "yuv420p"
        for img in data:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_the_documented_predict_command_restores_every_video(tmp_path):
    from reference.model import ReferenceVSR
    from vsr_core.data.video_io import probe_video
    from vsr_core.testing import tiny_trainer

    command = predict_command()
    assert command[:2] == ["vsr", "predict"]
    # what the command names, made tiny: last.ckpt (a ReferenceVSR) and videos/
    trainer = tiny_trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(ReferenceVSR(scale=2, channels=4, num_blocks=1))
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "clip.mp4", 6)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "vsr_core.cli", *command[1:], "--trainer.enable_progress_bar", "false"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = probe_video(tmp_path / "restored" / "clip.mp4")
    assert (info.frames, info.width, info.height) == (6, 32, 32)  # scale 2, from the checkpoint's arguments
