"""Built-in sample clips: real textures, disjoint splits, deterministic, cached atomically."""

from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
import pytest

from vsr_core.data import sample_clips
from vsr_core.data.sample_clips import PHOTOS, VIDEOS, ensure_sample_clips, sample_cache_root
from vsr_core.data.video_io import FrameFolderReader
from vsr_core.errors import DataError

SIZE, FRAMES = 32, 6


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    return root, {split: ensure_sample_clips(split, SIZE, FRAMES, root) for split in ("train", "val")}


def test_splits_are_disjoint_in_clips_and_in_sources(cache):
    _, clips = cache
    train, val = ({c.key for c in clips[s]} for s in ("train", "val"))
    assert train and val and not train & val
    for kind in (PHOTOS, VIDEOS):
        assert not {s.loader if kind is PHOTOS else s.filename for s in kind["train"]} & {
            s.loader if kind is PHOTOS else s.filename for s in kind["val"]
        }
    # both kinds present in both splits, alternating, so the first few clips cover both
    for split in ("train", "val"):
        keys = [c.key for c in clips[split]]
        photos = {p.key for p in PHOTOS[split]}
        assert keys[0] in photos and keys[1] not in photos and keys[2] in photos
        assert any(k.startswith(v.key + "_") for v in VIDEOS[split] for k in keys)


def test_clips_are_frame_folders_of_the_asked_size_with_captions(cache):
    _, clips = cache
    for clip in clips["train"] + clips["val"]:
        reader = FrameFolderReader(clip.path)
        assert reader.num_frames == clip.frames == FRAMES
        assert (reader.height, reader.width) == (clip.height, clip.width)
        assert clip.height <= SIZE and clip.width <= SIZE and clip.caption


def test_camera_motion_moves_real_texture(cache):
    _, clips = cache
    astronaut = next(c for c in clips["train"] if c.key == "astronaut")
    frames = FrameFolderReader(astronaut.path).read_clip(0, FRAMES).numpy().astype(float)
    steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert (steps > 0.5).all()  # every frame moves ...
    assert (steps < 40).all()  # ... smoothly, not a cut
    assert frames.std() > 20  # textured, not flat


def test_rendering_is_deterministic(cache, tmp_path):
    _, clips = cache
    again = ensure_sample_clips("val", SIZE, FRAMES, tmp_path)
    assert [c.key for c in again] == [c.key for c in clips["val"]]
    for a, b in zip(again, clips["val"], strict=True):
        np.testing.assert_array_equal(
            FrameFolderReader(a.path).read_clip(0, FRAMES), FrameFolderReader(b.path).read_clip(0, FRAMES)
        )


def test_second_call_reuses_the_cache(cache, monkeypatch):
    root, clips = cache
    monkeypatch.setattr(sample_clips, "_render_split", lambda *a, **k: pytest.fail("re-rendered a cached set"))
    assert ensure_sample_clips("train", SIZE, FRAMES, root) == clips["train"]
    assert not [n for n in os.listdir(root) if n.startswith(".tmp")]


def test_cache_root_follows_vsr_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path))
    assert sample_cache_root() == tmp_path / "sample_clips"
    monkeypatch.delenv("VSR_CACHE_DIR")
    assert sample_cache_root().parts[-3:] == (".cache", "vsr", "sample_clips")


def _render(root: str) -> list[str]:
    return [c.path for c in ensure_sample_clips("val", 16, 3, root, videos=False)]


def test_concurrent_processes_share_one_complete_set(tmp_path):
    with mp.get_context("fork").Pool(2) as pool:
        a, b = pool.map(_render, [str(tmp_path)] * 2)
    assert a == b
    assert os.listdir(tmp_path) == [f"v{sample_clips.RECIPE_VERSION}-val-16px-3f-p"]  # no temp folders left


def test_bad_arguments_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="split"):
        ensure_sample_clips("test", cache_dir=tmp_path)
    with pytest.raises(DataError, match="empty"):
        ensure_sample_clips("val", cache_dir=tmp_path, photos=False, videos=False)
