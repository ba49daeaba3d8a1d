"""Streaming video I/O: probing, random clip access, frame folders, atomic writing, bad files."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from video_factory import make_audio_only, make_frame_folder, make_video, pattern, truncate

from vsr_core.data.video_io import (
    FrameFolderReader,
    VideoReader,
    VideoWriter,
    frames_to_tensor,
    open_video,
    probe_video,
    tensor_to_frames,
)
from vsr_core.errors import TruncatedVideoError, VideoError

FORMATS = [
    ("mp4", "libx264", "yuv420p"),
    ("mkv", "libx264", "yuv420p"),
    ("webm", "libvpx-vp9", "yuv420p"),
    ("mov", "libx264", "yuv420p"),
    ("avi", "mpeg4", "yuv420p"),
    ("mpg", "mpeg2video", "yuv420p"),
    ("mkv", "ffv1", "yuv420p"),
]


def _full_decode(path: Path) -> np.ndarray:
    """Reference: every frame, decoded naively with PyAV from the start."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.mark.parametrize("ext,codec,pix_fmt", FORMATS, ids=[f"{e}-{c}" for e, c, _ in FORMATS])
def test_random_clips_equal_the_same_frames_of_a_full_decode(tmp_path, ext, codec, pix_fmt):
    path = tmp_path / f"clip.{ext}"
    fps = 25 if ext == "mpg" else Fraction(30000, 1001)  # MPEG-2 only allows standard rates
    make_video(path, frames=30, codec=codec, pix_fmt=pix_fmt, fps=fps, gop=8)
    reference = _full_decode(path)
    info = probe_video(path)
    assert (info.frames, info.fps, info.width, info.height) == (30, Fraction(fps), 64, 48)
    with VideoReader(path) as reader:
        # inside a GOP, across GOPs, at the very start and end, with strides; repeated reads reuse the reader
        for start, n, stride in [(0, 4, 1), (13, 4, 3), (26, 4, 1), (9, 1, 1), (1, 8, 4), (0, 4, 1)]:
            clip = reader.read_clip(start, n, stride)
            assert clip.dtype == torch.uint8 and clip.shape == (n, 48, 64, 3)
            np.testing.assert_array_equal(clip.numpy(), reference[start : start + n * stride : stride])


def test_writer_round_trip_keeps_count_fps_size_and_pixels(tmp_path):
    frames = pattern(12, 40, 56)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, fps=Fraction(30000, 1001), crf=0, pix_fmt="yuv444p") as writer:
        writer.write(torch.from_numpy(frames[:5]))  # chunks of any length
        writer.write(frames[5:])
    info = probe_video(out)
    assert (info.frames, info.fps, info.width, info.height) == (12, Fraction(30000, 1001), 56, 40)
    back = VideoReader(out).read_clip(0, 12).numpy().astype(int)
    assert np.abs(back - frames).mean() < 1.5  # lossless x264: only RGB<->YUV rounding remains


def test_iter_frames_streams_every_frame(tmp_path):
    path = tmp_path / "v.mkv"
    make_video(path, frames=17)
    reference = _full_decode(path)
    with VideoReader(path) as reader:
        it = reader.iter_frames()
        assert not isinstance(it, (list, tuple))
        frames = list(it)
        tail = list(reader.iter_frames(start=15))
    assert len(frames) == 17 and frames[0].shape == (48, 64, 3)
    np.testing.assert_array_equal(torch.stack(frames).numpy(), reference)
    np.testing.assert_array_equal(torch.stack(tail).numpy(), reference[15:])


def test_ten_bit_video_is_read_as_8_bit_rgb(tmp_path):
    path = tmp_path / "ten.mp4"
    src = make_video(path, frames=6, pix_fmt="yuv420p10le")
    info = probe_video(path)
    assert info.pix_fmt == "yuv420p10le"
    clip = VideoReader(path).read_clip(2, 3)
    assert clip.dtype == torch.uint8 and clip.shape == (3, 48, 64, 3)
    assert np.abs(clip.numpy().astype(int) - src[2:5]).mean() < 4.0


def test_odd_sizes_are_padded_for_420_and_kept_for_444(tmp_path):
    frames = pattern(3, 33, 47)
    with VideoWriter(tmp_path / "pad.mp4", fps=25, crf=0) as w:
        w.write(frames)
    assert w.size == (34, 48)
    padded = VideoReader(tmp_path / "pad.mp4").read_clip(0, 3).numpy()
    assert padded.shape == (3, 34, 48, 3)
    assert np.abs(padded[:, :33, :47].astype(int) - frames).mean() < 5.0  # 4:2:0 chroma loss only
    np.testing.assert_array_equal(padded[:, 33], padded[:, 32])  # padding repeats the edge
    with VideoWriter(tmp_path / "keep.mkv", fps=25, codec="ffv1", pix_fmt="bgr0") as w:
        w.write(frames)
    assert probe_video(tmp_path / "keep.mkv").width == 47
    np.testing.assert_array_equal(VideoReader(tmp_path / "keep.mkv").read_clip(0, 3).numpy(), frames)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_turns_frames_upright(tmp_path, rotation):
    path = tmp_path / "rot.mp4"
    make_video(path, frames=3, height=32, width=64, rotation=rotation)
    upright = np.rot90(_full_decode(path)[0], k=rotation // 90)  # display matrix angle is counter-clockwise
    info = probe_video(path)
    assert info.rotation == rotation % 360
    assert (info.width, info.height) == ((32, 64) if rotation % 180 else (64, 32))
    clip = VideoReader(path).read_clip(0, 1)
    assert clip.shape == (1, info.height, info.width, 3)
    np.testing.assert_array_equal(clip[0].numpy(), upright)


def test_audio_is_copied_from_the_source(tmp_path):
    src = tmp_path / "src.mp4"
    make_video(src, frames=25, audio=True)
    assert probe_video(src).has_audio
    out = tmp_path / "restored.mp4"
    with VideoWriter(out, fps=25, audio_from=src) as w:
        w.write(pattern(25, 96, 128))
    assert probe_video(out).has_audio
    with av.open(str(src)) as a, av.open(str(out)) as b:
        pa = [bytes(p) for p in a.demux(audio=0) if p.size]
        pb = [bytes(p) for p in b.demux(audio=0) if p.size]
    assert pa == pb  # remuxed packet for packet, not re-encoded


def test_exception_inside_with_leaves_no_output(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError), VideoWriter(out, fps=25) as w:
        w.write(pattern(4, 32, 32))
        raise RuntimeError("model crashed")
    assert os.listdir(tmp_path) == []


def test_abort_keeps_an_existing_file_untouched(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    w = VideoWriter(out, fps=25)
    w.write(pattern(2, 32, 32))
    assert out.read_bytes() == b"previous result"  # writing goes to a temporary name
    w.abort()
    assert out.read_bytes() == b"previous result"
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]


def test_closing_without_frames_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(VideoError, match="no frames"), VideoWriter(tmp_path / "out.mp4", fps=25):
        pass
    assert os.listdir(tmp_path) == []


def _one_line_error(path: Path) -> str:
    with pytest.raises(VideoError) as info:
        probe_video(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_bad_files_raise_one_line_video_errors(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "empty" in _one_line_error(tmp_path / "empty.mp4")
    (tmp_path / "notes.mp4").write_text("not a video at all\n" * 50)
    _one_line_error(tmp_path / "notes.mp4")
    (tmp_path / "noise.mkv").write_bytes(np.random.default_rng(0).bytes(4096))
    _one_line_error(tmp_path / "noise.mkv")
    make_audio_only(tmp_path / "song.m4a")
    assert "no video stream" in _one_line_error(tmp_path / "song.m4a")
    assert "no such file" in _one_line_error(tmp_path / "missing.mp4")
    # mp4 writes its index at the end: cut in half, the file cannot be opened
    make_video(tmp_path / "whole.mp4", frames=24)
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    _one_line_error(tmp_path / "half.mp4")


def test_truncated_stream_reads_what_is_there_and_errors_beyond(tmp_path):
    make_video(tmp_path / "whole.mkv", frames=40, gop=4)
    cut = truncate(tmp_path / "whole.mkv", 0.6)
    info = probe_video(cut)
    # the container promises 40 frames (its duration tag); fewer packets survived the cut
    assert info.frames == 40 and 5 < info.frames_present < 40 and info.truncated
    with VideoReader(cut) as reader:
        assert reader.read_clip(0, 4).shape[0] == 4
        assert reader.count_decodable() == info.frames_present
        with pytest.raises(TruncatedVideoError, match=rf"only {info.frames_present} of the 40 frames"):
            reader.read_clip(info.frames_present - 2, 4)


@pytest.mark.parametrize(("name", "options"), [("fast.mp4", {"movflags": "faststart"}), ("cut.mkv", None)])
def test_cut_files_promise_their_full_length_and_decode_less(tmp_path, name, options):
    """A faststart mp4 keeps its sample table (48 frames) when cut; an mkv its duration tag."""
    make_video(tmp_path / name, frames=48, container_options=options, audio=True)
    whole = probe_video(tmp_path / name)
    assert (whole.frames, whole.truncated) == (48, False)  # audio longer than video is not a cut
    assert VideoReader(tmp_path / name).count_decodable() == 48
    cut = truncate(tmp_path / name, 0.7)
    info = probe_video(cut)
    assert info.frames == 48
    with VideoReader(cut) as reader:
        decodable = reader.count_decodable()
        assert 10 < decodable < 48
        streamed = list(reader.iter_frames())
        assert len(streamed) == decodable  # exactly what streaming yields
        assert torch.equal(reader.read_clip(decodable - 3, 3), torch.stack(streamed[-3:]))


def test_frame_folder_natural_order_and_same_api(tmp_path):
    frames = pattern(12, 24, 20)
    folder = make_frame_folder(tmp_path / "clip", frames, name=lambda i: f"frame{i + 1}.png")  # frame1..frame12
    (tmp_path / "clip" / "notes.txt").write_text("ignored")
    info = probe_video(folder)
    assert (info.frames, info.width, info.height, info.fps) == (12, 20, 24, Fraction(25))
    reader = open_video(folder, fps=30)
    assert isinstance(reader, FrameFolderReader) and reader.fps == 30
    np.testing.assert_array_equal(reader.read_clip(8, 3).numpy(), frames[8:11])  # frame9 < frame10 < frame11
    np.testing.assert_array_equal(reader.read_clip(1, 3, stride=4).numpy(), frames[1:10:4])
    np.testing.assert_array_equal(torch.stack(list(reader.iter_frames(10))).numpy(), frames[10:])


def test_frame_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no frames"):
        probe_video(tmp_path / "empty")
    folder = make_frame_folder(tmp_path / "mixed", pattern(2, 16, 16))
    make_frame_folder(folder, pattern(1, 8, 8), name=lambda i: "0002.png")
    with pytest.raises(VideoError, match="one size"):
        FrameFolderReader(folder).read_clip(0, 3)


def test_out_of_range_clip_is_a_video_error(tmp_path):
    make_video(tmp_path / "v.mp4", frames=10)
    with pytest.raises(VideoError, match="10 frames"):
        VideoReader(tmp_path / "v.mp4").read_clip(5, 4, stride=2)


def test_tensor_helpers_are_inverse():
    frames = torch.randint(0, 256, (3, 5, 7, 3), dtype=torch.uint8)
    video = frames_to_tensor(frames)
    assert video.shape == (3, 3, 5, 7) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1
    assert torch.equal(tensor_to_frames(video), frames)
    assert torch.equal(tensor_to_frames(video * 3)[..., :], tensor_to_frames((video * 3).clamp(-1, 1)))
    assert tensor_to_frames(torch.zeros(3, 1, 1, 1)).unique().tolist() == [128]  # 127.5 rounds half to even
