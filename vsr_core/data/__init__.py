"""Data: streaming video I/O, clip sources, the clip dataset and the Lightning data module.

Heavy submodules load on first attribute access, so ``import vsr_core.data`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "VideoInfo": "video_io",
    "VideoReader": "video_io",
    "FrameFolderReader": "video_io",
    "VideoWriter": "video_io",
    "open_video": "video_io",
    "probe_video": "video_io",
    "frames_to_tensor": "video_io",
    "tensor_to_frames": "video_io",
    "VIDEO_EXTENSIONS": "video_io",
    "IMAGE_EXTENSIONS": "video_io",
    "VideoItem": "sources",
    "VideoSource": "sources",
    "VideoFolder": "sources",
    "PairedFolders": "sources",
    "SampleClips": "sources",
    "ItemList": "sources",
    "DataWarning": "sources",
    "ensure_sample_clips": "sample_clips",
    "ClipDataset": "dataset",
    "ClipPlan": "dataset",
    "VideoDataModule": "datamodule",
    "ResumableSampler": "datamodule",
}

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ClipDataset",
    "ClipPlan",
    "DataWarning",
    "FrameFolderReader",
    "ItemList",
    "PairedFolders",
    "ResumableSampler",
    "SampleClips",
    "VideoDataModule",
    "VideoFolder",
    "VideoInfo",
    "VideoItem",
    "VideoReader",
    "VideoSource",
    "VideoWriter",
    "ensure_sample_clips",
    "frames_to_tensor",
    "open_video",
    "probe_video",
    "tensor_to_frames",
]

if TYPE_CHECKING:  # pragma: no cover
    from vsr_core.data.datamodule import ResumableSampler, VideoDataModule
    from vsr_core.data.dataset import ClipDataset, ClipPlan
    from vsr_core.data.sample_clips import ensure_sample_clips
    from vsr_core.data.sources import (
        DataWarning,
        ItemList,
        PairedFolders,
        SampleClips,
        VideoFolder,
        VideoItem,
        VideoSource,
    )
    from vsr_core.data.video_io import (
        IMAGE_EXTENSIONS,
        VIDEO_EXTENSIONS,
        FrameFolderReader,
        VideoInfo,
        VideoReader,
        VideoWriter,
        frames_to_tensor,
        open_video,
        probe_video,
        tensor_to_frames,
    )


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vsr_core.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vsr_core.data.{module}"), name)
    globals()[name] = value
    return value
