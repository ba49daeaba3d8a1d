"""Side-by-side validation clips (``LQ | restored | GT``) as animated GIFs in TensorBoard.

``SummaryWriter.add_video`` needs moviepy 1.x and silently writes nothing without it, so the
GIF is encoded here with Pillow and written as a TensorBoard image summary, which the Images
dashboard plays as an animation.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch import Tensor

from vsr_core.errors import ConfigError

__all__ = ["VideoSampleLogger", "encode_gif", "side_by_side"]


def side_by_side(lq: Tensor, restored: Tensor, hq: Tensor, lq_upsample: str = "bicubic") -> Tensor:
    """``[B,3,T,h,w]``, ``[B,3,T,H,W]``, ``[B,3,T,H,W]`` in [-1,1] -> uint8 ``[B,T,H,3W,3]``.

    The LQ clip is upsampled to the HQ size (``nearest`` shows its pixels as they are,
    ``bicubic`` shows the baseline a method must beat).
    """
    b, c, t, h, w = lq.shape
    height, width = hq.shape[-2:]
    if (h, w) != (height, width):
        frames = lq.float().permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        frames = F.interpolate(frames, size=(height, width), mode=lq_upsample)
        lq = frames.reshape(b, t, c, height, width).permute(0, 2, 1, 3, 4)
    grid = torch.cat([lq.float(), restored.float(), hq.float()], dim=-1).clamp(-1, 1)
    return grid.add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu()


def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """uint8 ``[T,H,W,3]`` frames -> looping animated GIF bytes.

    Pillow merges consecutive identical frames (adding up their durations), so a still clip
    decodes to fewer frames but plays for the same time.
    """
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(1, round(1000 / fps)),
        loop=0,
    )
    return buffer.getvalue()


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(key)).strip("_")[:80] or "clip"


class VideoSampleLogger(Callback):
    """Log the first ``num_videos`` validation clips as ``LQ | restored | GT`` animations.

    Reads the ``{"lq", "restored", "hq"}`` dict that ``VSRMethod.validation_step`` returns.
    Writes one TensorBoard image summary per clip (tag ``<tag>/<index>``, animated GIF) at the
    current global step, and with ``save_files`` also ``<log_dir>/samples/step_XXXXXX/<index>_<key>.<format>``.
    Runs on global rank zero only (its first clips), and not during the sanity check. Without a
    TensorBoard logger and with ``save_files=False`` it does nothing.

    Args:
        num_videos: how many clips to show, taken from the first validation batches.
        fps: playback rate of the GIF/mp4.
        lq_upsample: ``bicubic`` or ``nearest`` upsampling of the LQ clip to the HQ size.
        max_frames: keep at most this many frames per clip (GIF size grows with frames).
        save_files: also write each clip to the log directory (a few small files per validation).
        file_format: ``gif`` or ``mp4`` (H.264) for ``save_files``.
        tag: TensorBoard tag prefix.
    """

    def __init__(
        self,
        num_videos: int = 4,
        fps: float = 8.0,
        lq_upsample: Literal["bicubic", "nearest"] = "bicubic",
        max_frames: int | None = None,
        save_files: bool = True,
        file_format: Literal["gif", "mp4"] = "gif",
        tag: str = "val/samples",
    ) -> None:
        super().__init__()
        if num_videos < 1:
            raise ConfigError(f"VideoSampleLogger num_videos must be at least 1, got {num_videos}")
        if fps <= 0:
            raise ConfigError(f"VideoSampleLogger fps must be positive, got {fps}")
        if lq_upsample not in ("bicubic", "nearest"):
            raise ConfigError(f"VideoSampleLogger lq_upsample must be 'bicubic' or 'nearest', got {lq_upsample!r}")
        if file_format not in ("gif", "mp4"):
            raise ConfigError(f"VideoSampleLogger file_format must be 'gif' or 'mp4', got {file_format!r}")
        if max_frames is not None and max_frames < 1:
            raise ConfigError(f"VideoSampleLogger max_frames must be at least 1, got {max_frames}")
        self.num_videos = num_videos
        self.fps = fps
        self.lq_upsample = lq_upsample
        self.max_frames = max_frames
        self.save_files = save_files
        self.file_format = file_format
        self.tag = tag
        self._clips: list[tuple[str, Tensor]] = []
        self._warned = False

    @staticmethod
    def _tensorboard(trainer: Trainer) -> TensorBoardLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)

    def _active(self, trainer: Trainer) -> bool:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return False
        return self.save_files or self._tensorboard(trainer) is not None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._clips = []

    @torch.no_grad()
    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        need = self.num_videos - len(self._clips)
        if need <= 0 or not self._active(trainer):
            return
        if not isinstance(outputs, dict) or not {"lq", "restored", "hq"} <= outputs.keys():
            if not self._warned:
                rank_zero_warn("VideoSampleLogger needs validation_step to return a dict with lq, restored and hq")
                self._warned = True
            return
        lq, restored, hq = (outputs[k][:need] for k in ("lq", "restored", "hq"))
        if self.max_frames is not None:
            lq, restored, hq = (x[:, :, : self.max_frames] for x in (lq, restored, hq))
        grid = side_by_side(lq, restored, hq, self.lq_upsample)
        keys = list(batch.get("key") or []) if isinstance(batch, dict) else []
        for i, clip in enumerate(grid):
            key = str(keys[i]) if i < len(keys) else f"batch{batch_idx}_{i}"
            self._clips.append((key, clip))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        clips, self._clips = self._clips, []
        if not clips or not self._active(trainer):
            return
        step = trainer.global_step
        logger = self._tensorboard(trainer)
        if logger is not None:
            self._write_summaries(logger, clips, step)
        if self.save_files:
            directory = Path(logger.log_dir if logger is not None else trainer.log_dir or trainer.default_root_dir)
            self._write_files(directory / "samples" / f"step_{step:06d}", clips)

    def _write_summaries(self, logger: TensorBoardLogger, clips: list[tuple[str, Tensor]], step: int) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = []
        for index, (_, clip) in enumerate(clips):
            _, height, width, channels = clip.shape
            image = Summary.Image(
                height=height,
                width=width,
                colorspace=channels,
                encoded_image_string=encode_gif(clip.numpy(), self.fps),
            )
            values.append(Summary.Value(tag=f"{self.tag}/{index}", image=image))
        writer = logger.experiment
        writer._get_file_writer().add_summary(Summary(value=values), global_step=step)
        writer.flush()

    def _write_files(self, directory: Path, clips: list[tuple[str, Tensor]]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for index, (key, clip) in enumerate(clips):
            path = directory / f"{index:02d}_{_safe_name(key)}.{self.file_format}"
            if self.file_format == "gif":
                path.write_bytes(encode_gif(clip.numpy(), self.fps))
            else:
                from vsr_core.data.video_io import VideoWriter

                with VideoWriter(path, fps=self.fps) as writer:
                    writer.write(clip.numpy())
