"""Streaming video I/O on PyAV: probing, random clip access, frame folders, atomic writing.

Frames are RGB ``uint8`` tensors ``[T, H, W, 3]`` (or ``[H, W, 3]`` for one frame), always upright:
rotation metadata (the display matrix, which also carries the old ``rotate`` tag) is applied on
read. :func:`frames_to_tensor` / :func:`tensor_to_frames` convert to and from the model's layout
``[3, T, H, W]`` float in ``[-1, 1]``.

Random access: :meth:`VideoReader.read_clip` seeks to the last keyframe at or before the first
wanted frame and decodes forward only until the last wanted frame. Frames are addressed by their
presentation order, taken from a per-file index of packet timestamps that is built by demuxing
(reading packets, no decoding) once per file and process, so variable frame rates and B-frames
are handled exactly.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import torch
from PIL import Image, ImageOps

from vsr_core.errors import TruncatedVideoError, VideoError
from vsr_core.partial_files import partial_path, remove_stale_partials

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FrameFolderReader",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "frames_to_tensor",
    "open_video",
    "probe_video",
    "tensor_to_frames",
]

PathLike = str | os.PathLike

#: The one list of video file extensions vsr looks for (sources, restore, evaluate): every container
#: this PyAV build demuxes (mov/mp4/3gp, matroska/webm, avi, mpeg-ps, mpeg-ts, asf, flv, ogg, y4m).
VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4",
    ".m4v",
    ".mkv",
    ".webm",
    ".mov",
    ".avi",
    ".mpg",
    ".mpeg",
    ".ts",
    ".m2ts",
    ".mts",
    ".wmv",
    ".flv",
    ".3gp",
    ".ogv",
    ".y4m",
)
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Containers whose header stores an exact per-stream frame count (the mp4/mov sample table,
# the avi index). Everything else (mkv, webm, mpeg-ps/ts, ...) is counted by demuxing packets.
_TRUSTED_FRAME_COUNT_FORMATS = ("mov", "mp4", "avi")
_DEFAULT_FOLDER_FPS = Fraction(25)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns about a video file or frame folder.

    ``width``/``height`` are the displayed size, i.e. after ``rotation`` (counter-clockwise
    degrees, one of 0/90/180/270) has been applied. ``fps`` is exact (``Fraction``).

    ``frames`` is what the container promises: the frame count of its header (mp4/mov/avi), else
    the packets found, or, when the header's duration reaches beyond the last packet (a cut
    mkv/webm), the frames that duration holds. ``frames_present`` is the number of packets found
    when probing counted them (``None`` for header-counted formats); ``frames_present < frames``
    means the file is truncated. Whether every frame also decodes is only known by decoding
    (:meth:`VideoReader.count_decodable`).
    """

    path: str
    frames: int
    fps: Fraction
    width: int
    height: int
    rotation: int = 0
    has_audio: bool = False
    codec: str = ""
    pix_fmt: str = ""
    frames_present: int | None = None

    @property
    def truncated(self) -> bool:
        """Whether probing already found fewer frames than the container promises."""
        return self.frames_present is not None and self.frames_present < self.frames


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _natural_key(name: str) -> list:
    """Sort key that orders ``frame2.png`` before ``frame10.png``."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


# ---------------------------------------------------------------------------------------------
# Packet index: presentation timestamps of every frame, keyframe timestamps (demux only).
# ---------------------------------------------------------------------------------------------


@dataclass
class _PacketIndex:
    pts: list[int]  # presentation timestamps, sorted = frame order
    keyframe_pts: list[int]  # sorted
    # Frames are addressed by decode count from the start when packets lack timestamps, or when
    # decoded timestamps turned out not to match the packets' after a seek (MPEG-PS/TS parsers).
    sequential: bool
    end_seconds: float | None = None  # end of the last packet, from the stream start (None: unknown)
    pts_set: frozenset = frozenset()

    def __post_init__(self) -> None:
        self.pts_set = frozenset(self.pts)


_INDEX_CACHE: OrderedDict[tuple, _PacketIndex] = OrderedDict()
_INDEX_CACHE_SIZE = 512


def _index_cache_key(path: str) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns)


def _build_packet_index(container: av.container.InputContainer, stream) -> _PacketIndex:
    pts: list[int] = []
    keys: list[int] = []
    sequential = False
    end = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the flush packet at the end of the stream
                continue
            if packet.pts is None:
                sequential = True
                pts.append(len(pts))
                continue
            pts.append(packet.pts)
            end = max(end or packet.pts, packet.pts + (packet.duration or 0))
            if packet.is_keyframe:
                keys.append(packet.pts)
    except av.FFmpegError:
        pass  # the file breaks off here: what follows is missing (the promise check names it)
    pts.sort()
    keys.sort()
    end_seconds = None
    if end is not None and not sequential and stream.time_base:
        end_seconds = float((end - (stream.start_time or 0)) * stream.time_base)
    return _PacketIndex(pts, keys, sequential, end_seconds)


def _parse_duration_tag(text: str) -> float | None:
    """``"HH:MM:SS.fffffffff"`` (matroska's per-track DURATION tag) in seconds."""
    match = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", text.strip())
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _declared_seconds(container, stream) -> float | None:
    """How long the container says the video stream is (its own duration tag, else the file's if alone)."""
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if tag:
        seconds = _parse_duration_tag(tag)
        if seconds is not None:
            return seconds
    if len(container.streams) == 1 and container.duration:
        return container.duration / av.time_base
    return None


def _promised_frames(container, stream, index: _PacketIndex, fps: Fraction) -> int:
    """Packets found, or the declared length when the declared duration reaches beyond the last packet.

    A gap of up to 1.5 frame periods is rounding (the last frame's duration, timestamp offsets);
    a longer one means the file was cut (a partial download or copy).
    """
    present = len(index.pts)
    declared = _declared_seconds(container, stream)
    if declared is None or index.end_seconds is None:
        return present
    missing = (declared - index.end_seconds) * float(fps)
    if missing <= 1.5:
        return present
    return max(present + 1, round(declared * float(fps)))  # the declared length in frames (exact at a constant rate)


def _packet_index(path: str, container=None, stream=None) -> _PacketIndex:
    key = _index_cache_key(path)
    hit = _INDEX_CACHE.get(key)
    if hit is not None:
        _INDEX_CACHE.move_to_end(key)
        return hit
    if container is None:
        with av.open(path) as own:
            index = _build_packet_index(own, own.streams.video[0])
    else:
        container.seek(0)
        index = _build_packet_index(container, stream)
        container.seek(0)  # hand the container back at the start
    _INDEX_CACHE[key] = index
    while len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
        _INDEX_CACHE.popitem(last=False)
    return index


# ---------------------------------------------------------------------------------------------
# Probing
# ---------------------------------------------------------------------------------------------


def _open_input(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file; check the path")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: the file is empty; re-export or remove it")
    try:
        return av.open(path)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise VideoError(f"{path}: not a readable video ({_one_line(err)}); check the file") from None


def _video_stream(container, path: str):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise VideoError(f"{path}: has no video stream (only {', '.join(kinds)}); pass a video file")
    stream = container.streams.video[0]
    if not stream.width or not stream.height:
        raise VideoError(f"{path}: the video stream has no frame size; the file is probably corrupt")
    return stream


def _normalize_rotation(degrees: float | int | None) -> int:
    if not degrees:
        return 0
    return round(degrees / 90.0) % 4 * 90


def _rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate ``[H, W, 3]`` counter-clockwise by ``rotation`` degrees (the display matrix angle)."""
    if rotation == 0:
        return frame
    return np.ascontiguousarray(np.rot90(frame, k=rotation // 90, axes=(0, 1)))


_PROBE_CACHE: OrderedDict[tuple, VideoInfo] = OrderedDict()


def _probe_file(path: str) -> VideoInfo:
    """Probe once per file version and process: data-loader workers reopen files for every sample."""
    try:
        key = _index_cache_key(path)
    except OSError:
        key = None
    hit = _PROBE_CACHE.get(key) if key is not None else None
    if hit is not None:
        _PROBE_CACHE.move_to_end(key)
        return hit if hit.path == path else replace(hit, path=path)
    info = _probe_file_uncached(path)
    if key is not None:
        _PROBE_CACHE[key] = info
        while len(_PROBE_CACHE) > _INDEX_CACHE_SIZE:
            _PROBE_CACHE.popitem(last=False)
    return info


def _probe_file_uncached(path: str) -> VideoInfo:
    container = _open_input(path)
    try:
        stream = _video_stream(container, path)
        # Decoding the first frame both validates the file and reveals the display matrix
        # (PyAV exposes rotation per frame, not per stream).
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as err:
            raise VideoError(
                f"{path}: cannot decode the first frame ({_one_line(err)}); the file is corrupt"
            ) from None
        if first is None:
            raise VideoError(f"{path}: contains no decodable video frame; the file is empty or truncated")
        rotation = _normalize_rotation(getattr(first, "rotation", 0))
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not fps:
            raise VideoError(f"{path}: the video stream has no frame rate; re-mux it with an explicit rate")
        fmt_names = container.format.name.split(",")
        present = None
        if stream.frames > 0 and any(name in _TRUSTED_FRAME_COUNT_FORMATS for name in fmt_names):
            frames = int(stream.frames)
        else:
            index = _packet_index(path, container, stream)
            present = len(index.pts)
            frames = _promised_frames(container, stream, index, Fraction(fps))
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            path=path,
            frames=frames,
            fps=Fraction(fps),
            width=width,
            height=height,
            rotation=rotation,
            has_audio=bool(container.streams.audio),
            codec=stream.codec_context.name,
            pix_fmt=stream.format.name if stream.format else "",
            frames_present=present,
        )
    except av.FFmpegError as err:
        raise VideoError(f"{path}: cannot read ({_one_line(err)}); the file may be corrupt") from None
    finally:
        container.close()


def _list_frame_files(folder: str) -> list[str]:
    try:
        names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")]
    except OSError as err:
        raise VideoError(f"{folder}: cannot list the frame folder ({_one_line(err)})") from None
    if not names:
        raise VideoError(
            f"{folder}: the folder holds no frames ({', '.join(IMAGE_EXTENSIONS)}); add frames or pick another folder"
        )
    names.sort(key=_natural_key)
    return [os.path.join(folder, n) for n in names]


def _load_image(path: str) -> np.ndarray:
    """One image file as RGB uint8 ``[H, W, 3]`` (EXIF orientation applied, 16-bit reduced to 8)."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.uint32)
                arr = (arr >> 8).clip(0, 255).astype(np.uint8) if arr.max() > 255 else arr.astype(np.uint8)
                return np.repeat(arr[:, :, None], 3, axis=2)
            return np.array(img.convert("RGB"))  # a writable copy: torch.from_numpy needs one
    except OSError as err:
        raise VideoError(f"{path}: cannot read the frame image ({_one_line(err)}); replace or remove it") from None


def probe_video(path: PathLike, fps: Fraction | int | None = None) -> VideoInfo:
    """Frame count, exact fps, displayed size, rotation and audio presence of a video or frame folder.

    ``fps`` only applies to frame folders (default 25), which carry no rate of their own.
    Raises :class:`VideoError` for missing, empty, corrupt, non-video and audio-only files.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        files = _list_frame_files(path)
        first = _load_image(files[0])
        return VideoInfo(
            path=path,
            frames=len(files),
            fps=Fraction(fps) if fps else _DEFAULT_FOLDER_FPS,
            width=first.shape[1],
            height=first.shape[0],
            codec=Path(files[0]).suffix.lstrip(".").lower(),
            pix_fmt="rgb24",
        )
    return _probe_file(path)


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------


def _clip_indices(path: str, total: int, start: int, num_frames: int, stride: int) -> list[int]:
    if num_frames < 1 or stride < 1 or start < 0:
        raise ValueError(
            f"read_clip needs start >= 0, num_frames >= 1, stride >= 1 (got {start}, {num_frames}, {stride})"
        )
    last = start + (num_frames - 1) * stride
    if last >= total:
        raise VideoError(
            f"{path}: frames {start}..{last} (stride {stride}) requested but the video has {total} frames; "
            "use a shorter clip or a smaller stride"
        )
    return list(range(start, last + 1, stride))


class _TimestampMismatch(Exception):
    """Decoded frame timestamps do not match the demuxed packets' (internal signal)."""


class _FrameSource:
    """What both readers share: ``fps``/``height``/``width`` from ``info``, ``len()``, ``with``."""

    info: VideoInfo

    @property
    def num_frames(self) -> int:
        raise NotImplementedError

    @property
    def fps(self) -> Fraction:
        return self.info.fps

    @property
    def height(self) -> int:
        return self.info.height

    @property
    def width(self) -> int:
        return self.info.width

    def __len__(self) -> int:
        return self.num_frames

    def count_decodable(self) -> int:
        """How many frames can be read in order (a frame folder: every file; a bad image raises on read)."""
        return self.num_frames

    def close(self) -> None:
        """Release what the reader holds open (nothing, unless a subclass says otherwise)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoReader(_FrameSource):
    """Random clip access and streaming over one video file (PyAV).

    ``read_clip(start, T, stride)`` returns ``uint8 [T, H, W, 3]`` (RGB, upright); ``iter_frames()``
    yields ``uint8 [H, W, 3]`` one at a time so a long video is never held in memory.
    ``threads`` is FFmpeg's decoder thread count (0 = FFmpeg picks; 1 suits data-loader workers).
    """

    def __init__(self, path: PathLike, threads: int = 0) -> None:
        self.path = os.fspath(path)
        self.info = _probe_file(self.path)
        self._threads = threads
        self._container = None
        self._stream = None

    @property
    def num_frames(self) -> int:
        return self.info.frames

    # -- lifecycle -----------------------------------------------------------------------------
    def _open(self):
        if self._container is None:
            self._container = _open_input(self.path)
            self._stream = _video_stream(self._container, self.path)
            self._stream.thread_type = "AUTO"
            self._stream.thread_count = self._threads
        return self._container, self._stream

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._stream = None

    def __del__(self) -> None:  # a reader dropped without close() must not leak its file
        with contextlib.suppress(Exception):  # interpreter shutdown may have torn PyAV down already
            self.close()

    # -- decoding ------------------------------------------------------------------------------
    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        return _rotate(frame.to_ndarray(format="rgb24"), self.info.rotation)

    def _decode(self, container, stream) -> Iterator[av.VideoFrame]:
        try:
            yield from container.decode(stream)
        except av.FFmpegError as err:
            raise VideoError(
                f"{self.path}: decoding failed ({_one_line(err)}); the file is corrupt or truncated"
            ) from None

    def _truncated(self, got: int) -> TruncatedVideoError:
        return TruncatedVideoError(got, self.info.frames, self.path)

    def read_clip(self, start: int, num_frames: int, stride: int = 1) -> torch.Tensor:
        """Frames ``start, start+stride, ...`` (``num_frames`` of them) as ``uint8 [T, H, W, 3]``."""
        container, stream = self._open()
        index = _packet_index(self.path, container, stream)
        wanted = _clip_indices(self.path, self.info.frames, start, num_frames, stride)
        if not index.sequential and wanted[-1] >= len(index.pts):
            raise self._truncated(len(index.pts))  # the container promises frames the file does not hold
        if index.sequential:
            return self._read_sequential(container, stream, wanted)
        targets = {index.pts[i]: k for k, i in enumerate(wanted)}
        first_pts, last_pts = index.pts[wanted[0]], index.pts[wanted[-1]]
        # Keyframes at or before the first wanted frame, latest first: if a demuxer's seek lands
        # after the target (imprecise indexes in avi/mpeg), fall back to an earlier keyframe.
        k = bisect.bisect_right(index.keyframe_pts, first_pts)
        candidates = index.keyframe_pts[:k][::-1][:3]
        out = None
        for seek_pts in [*candidates, None]:
            try:
                out = self._decode_range(container, stream, index, seek_pts, first_pts, last_pts, targets)
            except _TimestampMismatch:
                index.sequential = True  # remembered in the per-file cache: later reads go straight there
                return self._read_sequential(container, stream, wanted)
            if out is not None:
                break
        missing = [wanted[k] for k, frame in enumerate(out) if frame is None]
        if missing:
            raise self._truncated(missing[0])
        return torch.from_numpy(np.stack(out))

    def _decode_range(self, container, stream, index, seek_pts, first_pts, last_pts, targets) -> list | None:
        """Decode from ``seek_pts`` (None = the very start); None if the seek landed past ``first_pts``.

        Raises :class:`_TimestampMismatch` when a decoded frame's timestamp is not one of the
        packets' (then timestamps cannot address frames in this file).
        """
        if seek_pts is None:
            container.seek(0)  # the start of the file: no earlier frame exists
        else:
            container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
        out: list[np.ndarray | None] = [None] * len(targets)
        first_seen = True
        for frame in self._decode(container, stream):
            pts = frame.pts
            if pts is None or pts not in index.pts_set:
                raise _TimestampMismatch
            if first_seen:
                first_seen = False
                if pts > first_pts and seek_pts is not None:
                    return None
            k = targets.get(pts)
            if k is not None:
                out[k] = self._to_rgb(frame)
            if pts >= last_pts:
                break
        return out

    def _read_sequential(self, container, stream, wanted: list[int]) -> torch.Tensor:
        """Fallback for streams without packet timestamps: count decoded frames from the start."""
        container.seek(0)
        targets = {i: k for k, i in enumerate(wanted)}
        out: list[np.ndarray | None] = [None] * len(wanted)
        n = -1
        for n, frame in enumerate(self._decode(container, stream)):
            k = targets.get(n)
            if k is not None:
                out[k] = self._to_rgb(frame)
            if n >= wanted[-1]:
                break
        if any(frame is None for frame in out):
            raise self._truncated(n + 1)
        return torch.from_numpy(np.stack(out))

    def iter_frames(self, start: int = 0) -> Iterator[torch.Tensor]:
        """Yield every frame from ``start`` on as ``uint8 [H, W, 3]``, streaming (bounded memory).

        Decodes from the beginning (frames before ``start`` are decoded but not converted); use
        :meth:`read_clip` for random access.
        """
        container, stream = self._open()
        container.seek(0)
        n = 0
        for frame in self._decode(container, stream):
            if n >= start:
                yield torch.from_numpy(self._to_rgb(frame))
            n += 1
        if n == 0:
            raise VideoError(f"{self.path}: no frame could be decoded; the file is empty or corrupt")

    def count_decodable(self) -> int:
        """How many frames decode from the start, in order, before the stream ends or breaks off.

        Decodes the whole file once (no colour conversion), exactly as :meth:`iter_frames` does, so
        ``iter_frames`` yields this many frames before it ends or raises.
        """
        container, stream = self._open()
        container.seek(0)
        n = 0
        try:
            for _ in container.decode(stream):
                n += 1
        except av.FFmpegError:
            pass  # the rest does not decode: n frames do
        container.seek(0)
        return n


class FrameFolderReader(_FrameSource):
    """A folder of numbered images (png/jpg/...; natural sort) read like a video.

    Same API as :class:`VideoReader`: ``read_clip`` -> ``uint8 [T, H, W, 3]``, ``iter_frames`` ->
    ``uint8 [H, W, 3]``. ``fps`` is not stored in a folder, so it is given (default 25).
    """

    def __init__(self, path: PathLike, fps: Fraction | int | None = None) -> None:
        self.path = os.fspath(path)
        self.files = _list_frame_files(self.path)
        self.info = probe_video(self.path, fps=fps)

    @property
    def num_frames(self) -> int:
        return len(self.files)

    def _frame(self, i: int) -> np.ndarray:
        img = _load_image(self.files[i])
        if img.shape[:2] != (self.info.height, self.info.width):
            raise VideoError(
                f"{self.files[i]}: frame is {img.shape[1]}x{img.shape[0]} but the folder's first frame is "
                f"{self.info.width}x{self.info.height}; all frames of a clip must have one size"
            )
        return img

    def read_clip(self, start: int, num_frames: int, stride: int = 1) -> torch.Tensor:
        """Frames ``start, start+stride, ...`` as ``uint8 [T, H, W, 3]``; only those files are read."""
        wanted = _clip_indices(self.path, len(self.files), start, num_frames, stride)
        return torch.from_numpy(np.stack([self._frame(i) for i in wanted]))

    def iter_frames(self, start: int = 0) -> Iterator[torch.Tensor]:
        for i in range(start, len(self.files)):
            yield torch.from_numpy(self._frame(i))


def open_video(path: PathLike, fps: Fraction | int | None = None, threads: int = 0) -> VideoReader | FrameFolderReader:
    """A :class:`FrameFolderReader` for a directory, else a :class:`VideoReader`."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return FrameFolderReader(path, fps=fps)
    return VideoReader(path, threads=threads)


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------

# Encoders that take a constant-quality ``crf`` option.
_CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libvpx", "libsvtav1", "libaom-av1"}


class VideoWriter:
    """Atomic, streaming video writer: ``write(uint8 [T, H, W, 3] or [H, W, 3])`` chunk by chunk.

    Output goes to a hidden temporary file in the target directory and is renamed onto ``path``
    only by :meth:`close`; :meth:`abort` (or an exception inside ``with``) deletes it, so a
    half-written video never appears under the final name. ``fps`` is kept exactly (``Fraction``).
    ``audio_from`` names a file whose first audio stream is copied (remuxed, not re-encoded).

    Chroma-subsampled pixel formats (``yuv420p``: even width and height; ``yuv422p``: even width)
    cannot hold odd sizes, so odd frames are padded by repeating the last row/column; the
    written size is :attr:`size` (``(height, width)``). Use ``pix_fmt="yuv444p"`` (or a lossless
    codec such as ``ffv1``) to keep odd sizes exactly.
    """

    def __init__(
        self,
        path: PathLike,
        fps: Fraction | int | float | str,
        codec: str = "libx264",
        crf: int | None = 18,
        pix_fmt: str = "yuv420p",
        audio_from: PathLike | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.fps = Fraction(fps).limit_denominator(1_000_000) if not isinstance(fps, Fraction) else fps
        if self.fps <= 0:
            raise VideoError(f"{self.path}: fps must be positive (got {fps})")
        if codec not in av.codecs_available:
            raise VideoError(f"{self.path}: codec {codec!r} is not available in this PyAV build; try libx264 or ffv1")
        self.codec = codec
        self.crf = crf
        self.pix_fmt = pix_fmt
        self.options = dict(options or {})
        self.audio_from = os.fspath(audio_from) if audio_from is not None else None
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (height, width) actually encoded
        self._input_size: tuple[int, int] | None = None
        directory, name = os.path.split(self.path)
        stem, suffix = os.path.splitext(name)
        if not suffix:
            raise VideoError(f"{self.path}: the output needs a file extension (.mp4, .mkv, ...) to pick a container")
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as err:
            raise VideoError(f"{self.path}: cannot create the folder '{directory}' ({err.strerror})") from None
        remove_stale_partials(directory)  # left by a vsr process that was killed outright
        self.tmp_path = os.fspath(partial_path(self.path))
        self._closed = False
        # Create the file now: an unwritable place fails here, before any frame is restored (the
        # muxer would only open it once the encoder emits its first packet).
        try:
            with open(self.tmp_path, "xb"):
                pass
        except OSError as err:
            self._closed = True
            raise VideoError(
                f"{self.path}: cannot write into '{directory}' ({err.strerror}); choose another output"
            ) from None
        try:
            self._container = av.open(self.tmp_path, mode="w")
        except (av.FFmpegError, ValueError) as err:
            self._remove_tmp()
            self._closed = True
            raise VideoError(
                f"{self.path}: cannot create the output ({_one_line(err)}); check the extension"
            ) from None
        self._stream = None
        self._audio_in = None
        self._audio_out = None
        self._audio_packets: Iterator | None = None
        self._pending_audio = None
        if self.audio_from is not None:
            self._setup_audio()

    # -- audio ---------------------------------------------------------------------------------
    def _setup_audio(self) -> None:
        src = _open_input(self.audio_from)
        if not src.streams.audio:
            src.close()
            return
        self._audio_in = src
        in_stream = src.streams.audio[0]
        try:
            self._audio_out = self._container.add_stream_from_template(in_stream)
        except (av.FFmpegError, ValueError) as err:
            self.abort()
            raise VideoError(
                f"{self.path}: cannot copy the {in_stream.codec_context.name} audio of {self.audio_from} "
                f"into this container ({_one_line(err)}); write .mkv instead"
            ) from None
        self._audio_packets = (p for p in src.demux(in_stream) if p.size > 0 and p.dts is not None)

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Copy audio packets up to ``seconds`` (None = all) so audio and video interleave."""
        if self._audio_packets is None:
            return
        while True:
            packet = self._pending_audio or next(self._audio_packets, None)
            self._pending_audio = None
            if packet is None:
                self._audio_packets = None
                return
            if seconds is not None and packet.pts is not None and float(packet.pts * packet.time_base) > seconds:
                self._pending_audio = packet
                return
            packet.stream = self._audio_out
            self._container.mux(packet)

    # -- video ---------------------------------------------------------------------------------
    def _setup_video(self, height: int, width: int) -> None:
        fmt = av.VideoFormat(self.pix_fmt)
        pad_w = width % 2 if fmt.chroma_width(2) == 1 else 0
        pad_h = height % 2 if fmt.chroma_height(2) == 1 else 0
        self._input_size = (height, width)
        self.size = (height + pad_h, width + pad_w)
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.height, stream.width = self.size
        stream.pix_fmt = self.pix_fmt
        stream.codec_context.time_base = 1 / self.fps
        options = {}
        if self.crf is not None and self.codec in _CRF_CODECS:
            options["crf"] = str(self.crf)
            if self.codec in ("libvpx-vp9", "libvpx"):
                options["b"] = "0"  # constant-quality mode
        options.update(self.options)
        stream.options = options
        self._stream = stream

    def _pad(self, frames: np.ndarray) -> np.ndarray:
        h, w = self._input_size
        ph, pw = self.size[0] - h, self.size[1] - w
        if ph or pw:
            frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        return frames

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Append ``uint8 [T, H, W, 3]`` (or one ``[H, W, 3]``) RGB frames."""
        if self._closed:
            raise VideoError(f"{self.path}: write() after close()/abort(); open a new VideoWriter")
        arr = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise VideoError(
                f"{self.path}: write() takes uint8 [T, H, W, 3] frames, got {arr.dtype} {tuple(arr.shape)}"
            )
        if self._stream is None:
            self._setup_video(arr.shape[1], arr.shape[2])
        elif arr.shape[1:3] != self._input_size:
            raise VideoError(
                f"{self.path}: frame size {arr.shape[2]}x{arr.shape[1]} differs from the first frames "
                f"({self._input_size[1]}x{self._input_size[0]}); all frames of a video must have one size"
            )
        arr = self._pad(arr)
        try:
            for img in arr:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                frame.pts = self.frames_written
                frame.time_base = 1 / self.fps
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
                self.frames_written += 1
            self._mux_audio_until(float(self.frames_written / self.fps))
        except av.FFmpegError as err:
            self.abort()
            raise VideoError(f"{self.path}: encoding failed ({_one_line(err)}); output removed") from None

    # -- finishing -----------------------------------------------------------------------------
    def _remove_tmp(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp_path)

    def _release_inputs(self) -> None:
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None

    def abort(self) -> None:
        """Stop writing and delete the temporary file; the final ``path`` is left untouched."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # the container may be half-initialised; the file goes anyway
            self._container.close()
        self._release_inputs()
        self._remove_tmp()

    def close(self) -> None:
        """Flush the encoder, copy the remaining audio, and rename the result onto ``path``."""
        if self._closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise VideoError(f"{self.path}: no frames were written; nothing to save")
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._mux_audio_until(None)
            self._container.close()
        except av.FFmpegError as err:
            self.abort()
            raise VideoError(f"{self.path}: finishing the video failed ({_one_line(err)}); output removed") from None
        self._closed = True
        self._release_inputs()
        os.replace(self.tmp_path, self.path)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:  # dropped without close(): never leave a temp file behind
        with contextlib.suppress(Exception):  # __init__ may have failed before the attributes exist
            if not self._closed:
                self.abort()


# ---------------------------------------------------------------------------------------------
# Tensor helpers
# ---------------------------------------------------------------------------------------------


def frames_to_tensor(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``uint8 [T, H, W, 3]`` -> ``float32 [3, T, H, W]`` in ``[-1, 1]``."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames_to_tensor expects uint8 [T, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    return x.permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_frames(video: torch.Tensor) -> torch.Tensor:
    """``float [3, T, H, W]`` in ``[-1, 1]`` -> ``uint8 [T, H, W, 3]`` (rounded, clamped), on the CPU."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"tensor_to_frames expects [3, T, H, W], got {tuple(video.shape)}")
    x = (video.detach().float().clamp(-1.0, 1.0) + 1.0).mul(127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().cpu()
