"""Video sources: folders of videos and frame folders, captions, HQ/LQ pairing, sample clips."""

from __future__ import annotations

import json

import pytest
from video_factory import make_frame_folder, make_video, pattern, truncate

from vsr_core.data.sources import DataWarning, PairedFolders, SampleClips, VideoFolder
from vsr_core.errors import DataError


@pytest.fixture
def tree(tmp_path):
    """root/a.mp4 (+a.txt), root/sub/b.mkv, root/sub/deep/c.webm, root/frames/ (pngs), root/broken.mp4."""
    root = tmp_path / "root"
    (root / "sub" / "deep").mkdir(parents=True)
    make_video(root / "a.mp4", frames=10)
    (root / "a.txt").write_text("  a red car  \n")
    make_video(root / "sub" / "b.mkv", frames=12, height=32, width=48)
    make_video(root / "sub" / "deep" / "c.webm", frames=9, codec="libvpx-vp9")
    make_frame_folder(root / "frames", pattern(7, 16, 24))
    (root / "broken.mp4").write_text("this is not a video")
    (root / "readme.md").write_text("not a clip either (not a video extension)")
    (root / "captions.jsonl").write_text(
        json.dumps({"file": "sub/b.mkv", "caption": "a blue boat"})
        + "\n\n"
        + json.dumps({"video": "frames", "text": "a green field"})
        + "\n"
        + json.dumps({"file": "a.mp4", "caption": "loses to the sidecar"})
        + "\n"
    )
    return root


def test_video_folder_lists_videos_and_frame_folders_with_captions(tree):
    source = VideoFolder(str(tree))
    with pytest.warns(DataWarning, match="broken.mp4") as record:
        items = {item.key: item for item in source.items()}
    assert len([w for w in record if issubclass(w.category, DataWarning)]) == 1  # one warning per bad file
    assert set(items) == {"a", "sub/b", "sub/deep/c", "frames"}
    assert (items["a"].num_frames, items["a"].height, items["a"].width) == (10, 48, 64)
    assert (items["sub/b"].num_frames, items["sub/b"].height, items["sub/b"].width) == (12, 32, 48)
    assert (items["frames"].num_frames, items["frames"].height, items["frames"].width) == (7, 16, 24)
    assert items["a"].caption == "a red car"  # sidecar wins over captions.jsonl
    assert items["sub/b"].caption == "a blue boat"
    assert items["frames"].caption == "a green field"
    assert items["sub/deep/c"].caption == ""
    assert not source.paired and all(item.lq_path is None for item in items.values())


def test_video_folder_options(tree):
    with pytest.warns(DataWarning):
        flat = VideoFolder(str(tree), recursive=False, captions=False).items()
    assert {i.key for i in flat} == {"a", "frames"}  # frame folders directly under root still count
    assert all(i.caption == "" for i in flat)
    only_mkv = VideoFolder(str(tree), extensions=["mkv"]).items()
    assert sorted(i.key for i in only_mkv) == ["frames", "sub/b"]  # extensions filter video files only


def test_video_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        VideoFolder(str(tmp_path / "missing")).items()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no videos"):
        VideoFolder(str(tmp_path / "empty")).items()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.mp4").write_bytes(b"")
    with pytest.warns(DataWarning), pytest.raises(DataError, match="none of the 1"):
        VideoFolder(str(tmp_path / "bad")).items()


def test_a_cut_video_is_skipped_as_truncated_not_short(tmp_path):
    (tmp_path / "root").mkdir()
    make_video(tmp_path / "root" / "whole.mkv", frames=48)
    truncate(tmp_path / "root" / "whole.mkv", 0.3, tmp_path / "root" / "cut.mkv")
    with pytest.warns(DataWarning, match=r"cut.mkv: the video is truncated: only \d+ of the 48 frames"):
        items = VideoFolder(str(tmp_path / "root")).items()
    assert [item.key for item in items] == ["whole"] and items[0].num_frames == 48


def test_malformed_caption_line_names_file_and_line(tree):
    (tree / "captions.jsonl").write_text('{"file": "a.mp4", "caption": "ok"}\n{"caption": 3}\n')
    with pytest.raises(DataError, match=r"captions.jsonl:2"):  # before any file is probed
        VideoFolder(str(tree)).items()


def test_a_frame_folder_root_is_one_clip(tmp_path):
    make_frame_folder(tmp_path / "clip", pattern(5, 8, 8))
    assert [(i.key, i.num_frames) for i in VideoFolder(str(tmp_path / "clip")).items()] == [("clip", 5)]


def test_paired_folders_pair_by_relative_path_and_report_the_rest(tmp_path):
    # REDS4/UDM10-like: GT/<clip>/*.png next to LQ/<clip>/*.png; clip 001 lacks LQ, 002 lacks GT
    hq, lq = tmp_path / "GT", tmp_path / "BIx4"
    for clip in ("000", "001"):
        make_frame_folder(hq / clip, pattern(6, 32, 48))
    for clip in ("000", "002"):
        make_frame_folder(lq / clip, pattern(6, 8, 12))
    # YouHQ-like: an HQ video whose LQ is a frame folder of the same name
    make_video(hq / "walk.mp4", frames=8, height=32, width=48)
    make_frame_folder(lq / "walk", pattern(5, 8, 12))
    (hq / "walk.txt").write_text("a walk")
    source = PairedFolders(str(hq), str(lq))
    with pytest.warns(DataWarning) as record:
        items = {i.key: i for i in source.items()}
    messages = " | ".join(str(w.message) for w in record)
    assert "1 HQ clips" in messages and "001" in messages
    assert "1 LQ clips" in messages and "002" in messages
    assert "using the first 5" in messages  # walk: 8 HQ frames, 5 LQ frames
    assert set(items) == {"000", "walk"} and source.paired
    assert items["000"].lq_path == str(lq / "000")
    assert (items["000"].lq_height, items["000"].lq_width, items["000"].num_frames) == (8, 12, 6)
    assert (items["walk"].num_frames, items["walk"].caption) == (5, "a walk")


def test_paired_folders_error_when_nothing_pairs(tmp_path):
    make_frame_folder(tmp_path / "hq" / "x", pattern(2, 8, 8))
    make_frame_folder(tmp_path / "lq" / "y", pattern(2, 8, 8))
    with pytest.raises(DataError, match=r"no clip of .*\(x\) pairs with one of .*\(y\)"):
        PairedFolders(str(tmp_path / "hq"), str(tmp_path / "lq")).items()


def test_sample_clips_source_lists_items(tmp_path):
    source = SampleClips("val", size=16, frames=3, videos=False, cache_dir=str(tmp_path))
    items = source.items()
    assert items and all(i.num_frames == 3 and i.height == 16 and i.caption for i in items)
    assert not source.paired
