"""Files in and out of the engine: finding inputs, checking they are whole, restoring one into an mp4.

The output is atomic (a partial file renamed on success, see :mod:`vsr_core.partial_files`), and a
video is restored only as far as it really decodes: a file that promises more frames than decode
fails with one line (:class:`~vsr_core.errors.TruncatedVideoError`), or, when the caller allows it,
only the decodable frames are restored. Frames are never invented.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from vsr_core.data.video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoReader, VideoWriter, open_video
from vsr_core.errors import TruncatedVideoError, VideoError
from vsr_core.inference.engine import RestoreEngine

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "collect_inputs", "frames_to_restore", "restore_file"]


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")  # hidden files include vsr's own partial outputs


def _is_frame_folder(path: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir() if p.is_file() and _visible(p))


def collect_inputs(paths: list[str]) -> list[Path]:
    """Video files and frame folders named by ``paths`` (directories are searched one level deep).

    Raises:
        VideoError: a path does not exist, or a directory holds no video files or frame folders.
    """
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if not path.exists():
            raise VideoError(f"input '{text}' does not exist")
        if path.is_file() or _is_frame_folder(path):
            found.append(path)
        else:
            entries = [p for p in sorted(path.iterdir()) if _visible(p)]
            videos = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS]
            folders = [p for p in entries if p.is_dir() and _is_frame_folder(p)]
            if not videos and not folders:
                raise VideoError(
                    f"directory '{text}' holds no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) or frame folders"
                )
            found.extend(sorted(videos + folders))
    return found


def frames_to_restore(source: str | os.PathLike, allow_truncated: bool = False) -> int:
    """How many frames of ``source`` to restore: all it promises, after checking they all decode.

    Decodes the video once (cheap next to restoring it). With ``allow_truncated``, a video whose
    decoding ends early gives the number of frames that do decode.

    Raises:
        TruncatedVideoError: fewer frames decode than the container promises (and not allowed).
        VideoError: the input cannot be read at all.
    """
    with open_video(source) as reader:
        promised, decoded = reader.num_frames, reader.count_decodable()
    if decoded >= promised:
        return promised
    if allow_truncated and decoded > 0:
        return decoded
    hint = (
        "re-encode or re-download it, or pass --allow-truncated to restore the frames that decode"
        if decoded > 0
        else "re-encode or re-download it"
    )
    raise TruncatedVideoError(decoded, promised, os.fspath(source), hint)


def restore_file(
    engine: RestoreEngine,
    source: str | os.PathLike,
    output: str | os.PathLike,
    crf: int = 18,
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[], None] | None = None,
    num_frames: int | None = None,
) -> int:
    """Restore ``source`` into ``output`` (H.264 yuv420p, same fps, audio copied); returns frames written.

    ``num_frames``: restore only the first ``num_frames`` frames (see :func:`frames_to_restore`);
    default all the container promises. The output appears only when complete: any error,
    ``KeyboardInterrupt`` or SIGTERM removes the temporary file.

    Raises:
        VideoError: unreadable input or unwritable output; :class:`TruncatedVideoError` when the input
            ends before ``num_frames`` frames decoded.
    """
    reader = open_video(source)
    try:
        total = reader.num_frames if num_frames is None else min(num_frames, reader.num_frames)
        audio = os.fspath(source) if isinstance(reader, VideoReader) and reader.info.has_audio else None
        # The writer creates its file first: an unwritable output fails before any frame is restored.
        with VideoWriter(Path(output), fps=reader.fps, crf=crf, audio_from=audio) as writer:
            if on_start is not None:
                on_start(total)
            try:
                return engine.restore_video(reader, writer.write, on_frame, num_frames=total)
            except TruncatedVideoError as err:
                raise err.with_path(os.fspath(source)) from None
    finally:
        reader.close()
