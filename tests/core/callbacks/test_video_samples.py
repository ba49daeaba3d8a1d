"""VideoSampleLogger: animated GIF summaries in TensorBoard event files, and files on disk."""

from __future__ import annotations

import io
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from PIL import Image, ImageSequence
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vsr_core.callbacks import VideoSampleLogger
from vsr_core.callbacks.video_samples import side_by_side
from vsr_core.errors import ConfigError

T, H, W, SCALE = 5, 8, 12, 2


class Clips(Dataset):
    """Moving gradients: every frame differs, so the GIF keeps all T frames."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int) -> dict:
        y, x = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
        frames = torch.stack([torch.sin(3 * x + 0.7 * t + i) * torch.cos(2 * y) for t in range(T)])
        hq = torch.stack([frames, -frames, frames.flip(-1)])  # [3, T, H, W]
        lq = F.avg_pool2d(hq, SCALE)  # [3, T, H/s, W/s]
        return {"hq": hq, "lq": lq, "prompt": "", "key": f"clip/{i}"}


class Upsampler(L.LightningModule):
    """Returns the ``{"lq", "restored", "hq"}`` dict of the VSRMethod validation contract."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        lq = batch["lq"]
        b, c, t, h, w = lq.shape
        up = F.interpolate(lq.transpose(1, 2).reshape(b * t, c, h, w), scale_factor=SCALE, mode="nearest")
        restored = self.gain * up.reshape(b, t, c, h * SCALE, w * SCALE).transpose(1, 2)
        return {"lq": lq, "restored": restored, "hq": batch["hq"]}


def collate(items: list[dict]) -> dict:
    return {
        "hq": torch.stack([i["hq"] for i in items]),
        "lq": torch.stack([i["lq"] for i in items]),
        "prompt": [i["prompt"] for i in items],
        "key": [i["key"] for i in items],
    }


def validate(tmp_path: Path, callback: VideoSampleLogger, logger) -> None:
    trainer = L.Trainer(
        accelerator="cpu",
        logger=logger,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.validate(Upsampler(), DataLoader(Clips(), batch_size=2, collate_fn=collate), verbose=False)


def read_images(log_dir: str) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir, size_guidance={"images": 0})
    events.Reload()
    return {tag: events.Images(tag) for tag in events.Tags()["images"]}


# The raw layout (no enlargement, no gaps, no labels): the panels' pixels are checked against the clips.
RAW = dict(min_size=1, gap=0, labels=False)


def test_gifs_in_tensorboard_have_all_frames_and_three_panels(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    validate(tmp_path, VideoSampleLogger(num_videos=3, fps=10, save_files=False, **RAW), logger)

    images = read_images(logger.log_dir)
    assert sorted(images) == ["val/samples/0", "val/samples/1", "val/samples/2"]  # 3 of 5 clips, across batches
    event = images["val/samples/2"][0]
    assert (event.step, event.width, event.height) == (0, 3 * W, H)
    gif = Image.open(io.BytesIO(event.encoded_image_string))
    assert gif.format == "GIF" and gif.size == (3 * W, H)
    assert gif.n_frames == T and gif.info["loop"] == 0 and gif.info["duration"] == 100
    # the right panel is the ground truth of clip 2, frame by frame (GIF palettes are lossy: a tolerance)
    for t, frame in enumerate(ImageSequence.Iterator(gif)):
        pixels = torch.tensor(list(frame.convert("RGB").getdata()), dtype=torch.float32).reshape(H, 3 * W, 3)
        truth = (Clips()[2]["hq"][:, t].permute(1, 2, 0) + 1) * 127.5
        assert (pixels[:, 2 * W :] - truth).abs().mean() < 3, t


def test_side_by_side_upsamples_lq_and_orders_panels():
    lq = torch.rand(1, 3, 2, 2, 3) * 2 - 1
    restored, hq = torch.full((1, 3, 2, 4, 6), 0.5), torch.full((1, 3, 2, 4, 6), -1.0)
    grid = side_by_side(lq, restored, hq, "nearest", min_size=1, gap=0, labels=False)
    assert grid.shape == (1, 2, 4, 18, 3) and grid.dtype == torch.uint8
    expected_lq = ((lq + 1) * 127.5).round().to(torch.uint8)[0, :, 1, 0, 2]  # pixel (0, 2) of the LQ
    assert torch.equal(grid[0, 1, 1, 5], expected_lq)  # covers HQ pixels (0..1, 4..5)
    assert (grid[0, :, :, 6:12] == 191).all() and (grid[0, :, :, 12:] == 0).all()


def test_saves_files_under_the_log_dir(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    validate(tmp_path, VideoSampleLogger(num_videos=2, max_frames=3, **RAW), logger)
    folder = Path(logger.log_dir) / "samples" / "step_000000"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["00_clip_0.gif", "01_clip_1.gif"]
    gif = Image.open(folder / files[1])
    assert gif.n_frames == 3 and gif.size == (3 * W, H)


def test_saves_mp4_without_tensorboard(tmp_path):
    pytest.importorskip("av")
    from vsr_core.data.video_io import open_video

    validate(tmp_path, VideoSampleLogger(num_videos=1, save_files=True, file_format="mp4", **RAW), CSVLogger(tmp_path))
    (video,) = (tmp_path / "lightning_logs" / "version_0" / "samples" / "step_000000").iterdir()
    assert video.name == "00_clip_0.mp4"
    with open_video(video) as reader:
        assert (reader.num_frames, reader.height, reader.width) == (T, H, 3 * W)


def test_no_tensorboard_and_no_files_is_a_no_op(tmp_path):
    validate(tmp_path, VideoSampleLogger(save_files=False), CSVLogger(tmp_path))
    assert not list(tmp_path.rglob("samples"))


@pytest.mark.parametrize(
    "options",
    [
        dict(num_videos=0),
        dict(fps=0),
        dict(lq_upsample="area"),
        dict(file_format="avi"),
        dict(max_frames=0),
        dict(min_size=0),
        dict(gap=-1),
    ],
)
def test_bad_options_raise_config_errors(options):
    with pytest.raises(ConfigError):
        VideoSampleLogger(**options)


def test_readable_layout_enlarges_by_whole_pixels_with_gaps_and_labels():
    """8x12 HQ panels, min_size 24 -> k=3 (24x36 each), 4-px gaps, a label strip on top."""
    from vsr_core.callbacks.video_samples import GAP_COLOUR, label_strip

    g = torch.Generator().manual_seed(0)
    lq = torch.rand(1, 3, 2, 4, 6, generator=g) * 2 - 1
    restored, hq = torch.rand(1, 3, 2, 8, 12, generator=g) * 2 - 1, torch.rand(1, 3, 2, 8, 12, generator=g) * 2 - 1
    grid = side_by_side(lq, restored, hq, "nearest", min_size=24, gap=4)
    strip = label_strip(["LQ (nearest x2)", "restored", "GT"], 36, 4)
    top = strip.shape[0]
    assert grid.shape == (1, 2, top + 24, 3 * 36 + 2 * 4, 3)
    assert torch.equal(grid[0, 0, :top], torch.from_numpy(strip.copy()))
    body = grid[0, 1, top:]
    as_uint8 = lambda v: ((v + 1) * 127.5).round().to(torch.uint8)  # noqa: E731
    # restored pixel (row 2, col 5) of frame 1 is the 3x3 block at rows 6..8, cols 40+15..40+17
    block = body[6:9, 40 + 15 : 40 + 18]
    assert (block == as_uint8(restored[0, :, 1, 2, 5])).all()
    # GT is the third panel; the LQ panel shows lq pixel (1, 2) as a 6x6 block (x2 nearest, then x3)
    assert (body[:3, 80:83] == as_uint8(hq[0, :, 1, 0, 0])).all()
    assert (body[6:12, 12:18] == as_uint8(lq[0, :, 1, 1, 2])).all()
    gap = torch.tensor(GAP_COLOUR, dtype=torch.uint8)
    assert (body[:, 36:40] == gap).all() and (body[:, 76:80] == gap).all()
    # each label is drawn over its own panel (white text pixels there), and nowhere in the gaps
    bright = torch.from_numpy(strip.copy()).int().sum(-1) > 600
    assert all(bright[:, i * 40 : i * 40 + 36].any() for i in range(3)) and not bright[:, 36:40].any()


def test_images_are_logged_at_the_step_of_the_validation_scalars(tmp_path):
    """In fit, Lightning logs val/* at global_step - 1; the samples must sit on the same step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class Trained(Upsampler):
        def training_step(self, batch, batch_idx):
            return (self.gain - 2) ** 2

        def validation_step(self, batch, batch_idx):
            out = super().validation_step(batch, batch_idx)
            self.log("val/psnr", out["restored"].mean(), batch_size=2)
            return out

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    logger = TensorBoardLogger(tmp_path, name="tb")
    loader = DataLoader(Clips(), batch_size=2, collate_fn=collate)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=logger,
        callbacks=[VideoSampleLogger(num_videos=1, save_files=False)],
        max_steps=4,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(Trained(), loader, loader)
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalar_steps = [e.step for e in events.Scalars("val/psnr")]
    assert scalar_steps == [1, 3]  # after optimizer steps 2 and 4
    assert [e.step for e in events.Images("val/samples/0")] == scalar_steps
