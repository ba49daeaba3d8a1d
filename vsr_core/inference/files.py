"""Restore one video file or frame folder into an mp4 (atomic: temp file renamed on success)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from vsr_core.data.video_io import VideoReader, VideoWriter, open_video
from vsr_core.inference.engine import RestoreEngine


def restore_file(
    engine: RestoreEngine,
    source: str | os.PathLike,
    output: str | os.PathLike,
    crf: int = 18,
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> int:
    """Restore ``source`` into ``output`` (H.264 yuv420p, same fps, audio copied); returns frames written.

    The output appears only when complete: any error or ``KeyboardInterrupt`` removes the
    temporary file. Raises :class:`~vsr_core.errors.VideoError` for unreadable inputs.
    """
    reader = open_video(source)
    try:
        if on_start is not None:
            on_start(reader.num_frames)
        audio = (
            os.fspath(source)
            if isinstance(reader, VideoReader) and reader.info.has_audio
            else None
        )
        with VideoWriter(
            Path(output), fps=reader.fps, crf=crf, audio_from=audio
        ) as writer:
            return engine.restore_video(reader, writer.write, on_frame)
    finally:
        reader.close()
