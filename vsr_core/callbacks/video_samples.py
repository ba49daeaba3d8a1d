"""Side-by-side validation clips (``LQ | restored | GT``) as animated GIFs in TensorBoard.

Each frame of a sample is three labelled panels with a gap between them: the LQ input upsampled
to the output size (bicubic: the baseline a method must beat; or nearest), the restored clip and
the ground truth. Small clips are enlarged for display by an integer factor with nearest
neighbours (every pixel becomes a k x k block, nothing is invented), so a 64-px validation crop
is shown at 192 px. Summaries are written at the step Lightning logs ``val/psnr`` at, so the
images and the scalars line up on TensorBoard's step axis.

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
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from vsr_core.errors import ConfigError

__all__ = ["VideoSampleLogger", "display_factor", "encode_gif", "label_strip", "scalar_step", "side_by_side"]

GAP_COLOUR = (40, 40, 40)  # the gaps and the label strip: dark grey, so no panel edge blends into another


def display_factor(height: int, width: int, min_size: int) -> int:
    """The integer enlargement ``k >= 1`` that makes the shorter side of a ``height x width`` panel at least ``min_size``."""
    return max(1, -(-min_size // max(1, min(height, width))))


def label_strip(labels: list[str], panel_width: int, gap: int) -> np.ndarray:
    """uint8 ``[h, n*panel_width + (n-1)*gap, 3]``: each label centred above its panel (cut at the panel's
    edges if too long), white on :data:`GAP_COLOUR`."""
    size = max(10, min(16, panel_width // 12))
    font = ImageFont.load_default(size=size)
    height = size + 8
    width = len(labels) * panel_width + (len(labels) - 1) * gap
    image = Image.new("RGB", (width, height), GAP_COLOUR)
    for index, text in enumerate(labels):
        cell = Image.new("RGB", (panel_width, height), GAP_COLOUR)
        draw = ImageDraw.Draw(cell)
        draw.text(
            (max(0, (panel_width - draw.textlength(text, font=font)) / 2), 4), text, fill=(255, 255, 255), font=font
        )
        image.paste(cell, (index * (panel_width + gap), 0))
    return np.asarray(image)


def side_by_side(
    lq: Tensor,
    restored: Tensor,
    hq: Tensor,
    lq_upsample: str = "bicubic",
    min_size: int = 192,
    gap: int = 4,
    labels: bool = True,
) -> Tensor:
    """``[B,3,T,h,w]``, ``[B,3,T,H,W]``, ``[B,3,T,H,W]`` in [-1,1] -> uint8 ``[B,T,H',W',3]`` labelled panels.

    The LQ clip is upsampled to the HQ size (``nearest`` shows its pixels as they are, ``bicubic``
    the baseline a method must beat); then every panel is enlarged by :func:`display_factor`
    (nearest, so ``H' = k*H (+ label strip)``), and the three are placed left to right with ``gap``
    px of :data:`GAP_COLOUR` between them under a strip reading ``LQ (<upsample> x<s>) | restored | GT``.
    """
    b, c, t, h, w = lq.shape
    height, width = hq.shape[-2:]
    if (h, w) != (height, width):
        frames = lq.float().permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        frames = F.interpolate(frames, size=(height, width), mode=lq_upsample)
        lq = frames.reshape(b, t, c, height, width).permute(0, 2, 1, 3, 4)
    k = display_factor(height, width, min_size)
    panels = []
    for video in (lq, restored, hq):
        x = (
            video.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu()
        )  # [B,T,H,W,3]
        panels.append(x.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3) if k > 1 else x)
    spacer = torch.tensor(GAP_COLOUR, dtype=torch.uint8).expand(b, t, height * k, gap, 3)
    grid = torch.cat([panels[0], spacer, panels[1], spacer, panels[2]], dim=3)
    if not labels:
        return grid
    scale = f" x{round(width / w)}" if w != width else ""
    strip = torch.from_numpy(
        label_strip([f"LQ ({lq_upsample}{scale})" if scale else "LQ", "restored", "GT"], width * k, gap).copy()
    )
    return torch.cat([strip.expand(b, t, *strip.shape), grid], dim=2)


def scalar_step(trainer: Trainer) -> int:
    """The step Lightning gives the metrics logged now (``val/psnr``, ...): its count of optimizer-stepped batches.

    That is ``global_step - 1`` during a validation inside fit (validation runs before the count
    moves on), which is why images logged at ``global_step`` sat one step off the scalars.
    """
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    return int(getattr(loop, "_batches_that_stepped", trainer.global_step))


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
    """Log the first ``num_videos`` validation clips as labelled ``LQ | restored | GT`` animations.

    Reads the ``{"lq", "restored", "hq"}`` dict that ``VSRMethod.validation_step`` returns.
    Writes one TensorBoard image summary per clip (tag ``<tag>/<index>``, animated GIF) at the
    step of the validation scalars (:func:`scalar_step`), and with ``save_files`` also
    ``<log_dir>/samples/step_XXXXXX/<index>_<key>.<format>`` named by the global step (as the
    checkpoints are). Runs on global rank zero only (its first clips), and not during the sanity
    check. Without a TensorBoard logger and with ``save_files=False`` it does nothing.

    Args:
        num_videos: how many clips to show, taken from the first validation batches.
        fps: playback rate of the GIF/mp4.
        lq_upsample: ``bicubic`` or ``nearest`` upsampling of the LQ clip to the HQ size.
        max_frames: keep at most this many frames per clip (GIF size grows with frames).
        save_files: also write each clip to the log directory (a few small files per validation).
        file_format: ``gif`` or ``mp4`` (H.264) for ``save_files``.
        tag: TensorBoard tag prefix.
        min_size: enlarge panels (nearest, integer factor) until their shorter side is at least this many px.
        gap: px between panels.
        labels: draw the ``LQ | restored | GT`` label strip above the panels.
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
        min_size: int = 192,
        gap: int = 4,
        labels: bool = True,
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
        if min_size < 1 or gap < 0:
            raise ConfigError(f"VideoSampleLogger needs min_size >= 1 and gap >= 0, got {min_size} and {gap}")
        self.num_videos = num_videos
        self.fps = fps
        self.lq_upsample = lq_upsample
        self.max_frames = max_frames
        self.save_files = save_files
        self.file_format = file_format
        self.tag = tag
        self.min_size, self.gap, self.labels = min_size, gap, labels
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
        grid = side_by_side(lq, restored, hq, self.lq_upsample, self.min_size, self.gap, self.labels)
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
            self._write_summaries(logger, clips, scalar_step(trainer))
        if self.save_files:
            from vsr_core.callbacks.text_log import run_folder

            directory = run_folder(trainer) or Path(trainer.log_dir or trainer.default_root_dir)
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
