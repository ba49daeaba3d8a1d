"""docs/getting-started.md's Python API block runs exactly as printed and gives what it says."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import torch

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"


def python_api_block() -> str:
    blocks = [b for b in re.findall(r"^```python\n(.*?)^```$", GUIDE.read_text(), re.S | re.M) if "vsr.load(" in b]
    assert len(blocks) == 1, "docs/getting-started.md should show one vsr.load block"
    return blocks[0]


def test_the_documented_python_api_lines_run(tmp_path, monkeypatch):
    from reference.model import ReferenceVSR
    from vsr_core.data.video_io import probe_video
    from vsr_core.testing import tiny_trainer

    # what the block names, made tiny: the default run folder's last.ckpt and a clip.mp4
    folder = tmp_path / "runs" / "ReferenceVSR" / "version_0" / "checkpoints"
    trainer = tiny_trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(ReferenceVSR(scale=4, channels=4, num_blocks=1))
    trainer.save_checkpoint(folder / "last.ckpt")
    with av.open(str(tmp_path / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.height = stream.width = 16
        stream.pix_fmt = "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(python_api_block(), str(GUIDE), "exec"), names)
    assert names["frames"].shape == (8, 64, 64, 3)
    assert isinstance(names["written"], list) and names["written"] == [Path("restored/clip.mp4")]
    info = probe_video(tmp_path / "restored" / "clip.mp4")
    assert (info.frames, info.width, info.height) == (5, 64, 64)
    restored = names["restored"]  # the float call, the last one assigned
    assert (
        isinstance(restored, torch.Tensor)
        and restored.shape == (1, 3, 8, 256, 256)
        and restored.dtype == torch.float32
    )
    uint8 = names["pipe"](names["frames"])
    assert isinstance(uint8, np.ndarray) and uint8.dtype == np.uint8 and uint8.shape == (8, 256, 256, 3)
