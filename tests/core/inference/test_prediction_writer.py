"""Lightning prediction over whole video files through the engine (what `vsr predict` uses)."""

from __future__ import annotations

import av
import numpy as np

from vsr_core.data.video_io import probe_video
from vsr_core.inference import RestorePredictionWriter, VideoFilesDataModule


def _video(path, frames):
    data = np.random.default_rng(frames).integers(0, 256, (frames, 16, 16, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height = stream.width = 16
        stream.pix_fmt = "yuv420p"
        for img in data:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_trainer_predict_restores_every_file(tmp_path):
    from vsr_core.testing import BoringMethod, tiny_trainer

    class FilePredicting(BoringMethod):
        # The pass-through VSRMethod.predict_step needs for file batches (see docs/inference.md).
        def predict_step(self, batch, batch_idx):
            if "path" in batch and "lq" not in batch:
                return batch
            return super().predict_step(batch, batch_idx)

    (tmp_path / "in").mkdir()
    _video(tmp_path / "in" / "a.mp4", 5)
    _video(tmp_path / "in" / "b.mp4", 11)
    writer = RestorePredictionWriter(str(tmp_path / "out"), window=4, overlap=1)
    trainer = tiny_trainer(tmp_path, callbacks=[writer])
    trainer.predict(
        FilePredicting(scale=2, width=4),
        datamodule=VideoFilesDataModule([str(tmp_path / "in")]),
    )
    frames = {p.name: probe_video(p).frames for p in writer.written}
    assert frames == {"a.mp4": 5, "b.mp4": 11}
    assert probe_video(tmp_path / "out" / "b.mp4").width == 32
