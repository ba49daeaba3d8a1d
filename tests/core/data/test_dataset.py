"""ClipDataset: shapes, pure per-sample randomness, strides, aligned paired crops, skipping."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from video_factory import box_downscale, make_frame_folder, make_video, pattern

from vsr_core.data.dataset import ClipDataset
from vsr_core.data.sources import DataWarning, PairedFolders, VideoFolder, VideoItem
from vsr_core.data.video_io import open_video
from vsr_core.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    make_video(root / "a.mp4", frames=20, height=48, width=64, seed=1)
    make_video(root / "b.mkv", frames=16, height=40, width=56, seed=2)
    make_frame_folder(root / "c", pattern(12, 32, 40, seed=3))
    (root / "b.txt").write_text("boats")
    return VideoFolder(str(root))


def test_training_sample_shapes_and_types(videos):
    ds = ClipDataset(videos, clip_frames=4, crop_size=16, scale=4, seed=0)
    assert len(ds) == 3
    sample = ds[5]
    assert sample["hq"].dtype == torch.uint8 and sample["hq"].shape == (3, 4, 16, 16)
    assert "lq" not in sample and sample["index"] == 5
    assert isinstance(sample["prompt"], str) and sample["key"] in {"a", "b", "c"}
    assert sample["prompt"] == ("boats" if sample["key"] == "b" else "")


def test_samples_are_a_pure_function_of_seed_and_index(videos):
    ds1 = ClipDataset(videos, clip_frames=3, crop_size=16, stride_range=(1, 3), seed=7)
    ds2 = ClipDataset(videos, clip_frames=3, crop_size=16, stride_range=(1, 3), seed=7)
    for index in (11, 0, 4, 11):  # any order, fresh instances: same samples
        assert ds1.plan(index) == ds2.plan(index)
        assert torch.equal(ds1[index]["hq"], ds2[index]["hq"])
    other = ClipDataset(videos, clip_frames=3, crop_size=16, stride_range=(1, 3), seed=8)
    assert [other.plan(i) for i in range(12)] != [ds1.plan(i) for i in range(12)]


def test_every_pass_visits_every_clip_once(videos):
    ds = ClipDataset(videos, clip_frames=2, crop_size=8, seed=3)
    for epoch in range(4):
        assert sorted(ds.plan(epoch * 3 + k).item for k in range(3)) == [0, 1, 2]


def test_clip_content_is_the_planned_frames_and_crop(videos):
    ds = ClipDataset(videos, clip_frames=3, crop_size=16, stride_range=(2, 4), scale=2, seed=1)
    strides = set()
    for index in range(9):
        plan = ds.plan(index)
        strides.add(plan.stride)
        assert 2 <= plan.stride <= 4 and plan.top % 2 == 0 and plan.left % 2 == 0
        item = ds.items[plan.item]
        frames = open_video(item.path).read_clip(plan.start, 3, plan.stride)
        expected = frames[:, plan.top : plan.top + 16, plan.left : plan.left + 16].permute(3, 0, 1, 2)
        assert torch.equal(ds[index]["hq"], expected)
    assert len(strides) > 1


def test_evaluation_takes_first_frames_centre_crop_or_whole_frames(videos):
    ds = ClipDataset(videos, clip_frames=4, crop_size=16, scale=4, random=False)
    item = ds.items[0]
    plan = ds.plan(0)
    assert (plan.start, plan.stride) == (0, 1)
    assert (plan.top, plan.left) == ((item.height - 16) // 8 * 4, (item.width - 16) // 8 * 4)
    assert torch.equal(ds[0]["hq"], ds[0]["hq"])
    with pytest.raises(IndexError):
        ds.plan(3)
    whole = ClipDataset(videos, clip_frames=2, crop_size=None, scale=3, random=False)
    for i, item in enumerate(whole.items):
        assert whole[i]["hq"].shape == (3, 2, item.height // 3 * 3, item.width // 3 * 3)


def test_paired_crops_are_aligned(tmp_path):
    hq_frames = pattern(6, 40, 48)
    lq_frames = box_downscale(hq_frames, 4)  # exact 4x box average: the LQ crop must equal the downscaled HQ crop
    make_frame_folder(tmp_path / "GT" / "000", hq_frames)
    make_frame_folder(tmp_path / "LQ" / "000", lq_frames)
    ds = ClipDataset(
        PairedFolders(str(tmp_path / "GT"), str(tmp_path / "LQ")), clip_frames=3, crop_size=16, scale=4, seed=2
    )
    for index in range(6):
        sample = ds[index]
        hq = sample["hq"].permute(1, 2, 3, 0).numpy()
        assert sample["lq"].shape == (3, 3, 4, 4)
        np.testing.assert_array_equal(sample["lq"].permute(1, 2, 3, 0).numpy(), box_downscale(hq, 4))


def test_pairs_with_the_wrong_scale_are_skipped(tmp_path):
    make_frame_folder(tmp_path / "GT" / "000", pattern(4, 32, 32))
    make_frame_folder(tmp_path / "LQ" / "000", pattern(4, 16, 16))
    with pytest.raises(DataError, match="is not 4x its LQ"):
        ClipDataset(PairedFolders(str(tmp_path / "GT"), str(tmp_path / "LQ")), clip_frames=2, crop_size=8, scale=4)


def _item(key, frames, h, w):
    return VideoItem(key, f"/nowhere/{key}", frames, h, w)


def test_short_or_small_clips_are_skipped_with_one_warning_saying_how_many_and_why():
    items = [_item("ok", 10, 64, 64), _item("short", 3, 64, 64), _item("small", 10, 16, 64)]
    with pytest.warns(DataWarning) as record:
        ds = ClipDataset(items, clip_frames=4, crop_size=32)
    assert [i.key for i in ds.items] == ["ok"]
    messages = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert messages == [
        "training data: skipping 2 of 3 clips: short has 3 frames, fewer than the 4 a clip needs (clip_frames=4, stride 1); "
        "small frames are 64x16, smaller than crop_size=32 (lower --data.crop_size to train on them)"
    ]
    with pytest.warns(DataWarning) as record:
        ClipDataset(items[:1] + items[2:] * 4, clip_frames=4, crop_size=32, random=False)
    (message,) = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert message.startswith("evaluation data: skipping 4 of 5 clips: small frames are 64x16")
    assert message.endswith("; and 1 more (set --data.val_crop_size 0 to evaluate whole frames, or a smaller one)")


def test_no_usable_clip_is_a_data_error_saying_what_to_change():
    with pytest.raises(DataError, match=r"none of the 2 clips.*fewer than the 8.*lower clip_frames"):
        ClipDataset([_item("a", 5, 64, 64), _item("b", 6, 64, 64)], clip_frames=8, crop_size=32)


def test_invalid_configuration():
    items = [_item("a", 10, 64, 64)]
    with pytest.raises(ConfigError, match="multiple of scale"):
        ClipDataset(items, crop_size=30, scale=4)
    with pytest.raises(ConfigError, match="stride_range"):
        ClipDataset(items, crop_size=32, stride_range=(3, 2))
    with pytest.raises(ConfigError, match="crop_size"):
        ClipDataset(items, crop_size=None, random=True)


def test_a_file_that_breaks_after_listing_is_replaced_by_another_clip(tmp_path):
    make_video(tmp_path / "good.mp4", frames=8, seed=1)
    make_video(tmp_path / "gone.mp4", frames=8, seed=2)
    ds = ClipDataset(VideoFolder(str(tmp_path)), clip_frames=2, crop_size=16, seed=0)
    os.remove(tmp_path / "gone.mp4")
    index = next(i for i in range(10) if ds.items[ds.plan(i).item].key == "gone")
    with pytest.warns(DataWarning, match="gone.mp4"):
        sample = ds[index]
    assert sample["key"] == "good"
    with pytest.warns(DataWarning):
        assert torch.equal(ds[index]["hq"], sample["hq"])  # the replacement is deterministic too
