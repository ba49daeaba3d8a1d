"""Small synthetic video batches for tests: smooth moving textures, no files, no decoding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from vsr_core.video_ops import resize_frames

__all__ = ["downscale", "moving_texture", "SyntheticClips", "SyntheticDataModule"]


def moving_texture(frames: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """A ``[3, T, size, size]`` clip in [-1, 1]: a smooth random texture panning by a pixel per frame."""
    coarse = torch.rand(3, 1, size // 4 + 2, size // 4 + 2, generator=generator) * 2 - 1
    texture = F.interpolate(coarse, size=(size + frames + 8, size + frames + 8), mode="bicubic", align_corners=False)
    texture = texture[:, 0].clamp(-1, 1)
    clip = torch.stack([texture[:, i : i + size, i : i + size] for i in range(frames)], dim=1)
    return clip.contiguous()


def downscale(video: torch.Tensor, scale: int) -> torch.Tensor:
    """Area downscaling of ``[3, T, H, W]`` or ``[B, 3, T, H, W]`` by ``scale`` (identity for 1)."""
    if video.dim() == 4:
        return resize_frames(video[None], 1 / scale, "area")[0]
    return resize_frames(video, 1 / scale, "area")


class SyntheticClips(Dataset):
    """``num_clips`` samples of the vsr batch dict: ``hq [3,T,H,W]``, ``lq [3,T,H/s,W/s]``, ``prompt``, ``key``."""

    def __init__(self, num_clips: int = 8, frames: int = 5, size: int = 32, scale: int = 4, seed: int = 0) -> None:
        if size % scale:
            raise ValueError(f"size {size} must be a multiple of scale {scale}")
        self.num_clips, self.frames, self.size, self.scale, self.seed = num_clips, frames, size, scale, seed

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + index)
        hq = moving_texture(self.frames, self.size, generator)
        return {"hq": hq, "lq": downscale(hq, self.scale), "prompt": "", "key": f"synthetic_{index:04d}"}


class SyntheticDataModule(LightningDataModule):
    """A data module over :class:`SyntheticClips` with vsr's batch dict (float tensors already)."""

    def __init__(
        self, num_clips: int = 8, frames: int = 5, size: int = 32, scale: int = 4, batch_size: int = 2
    ) -> None:
        super().__init__()
        self.num_clips, self.frames, self.size, self.scale, self.batch_size = (
            num_clips,
            frames,
            size,
            scale,
            batch_size,
        )

    def _loader(self, seed: int, shuffle: bool) -> DataLoader:
        data = SyntheticClips(self.num_clips, self.frames, self.size, self.scale, seed=seed)
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(seed=0, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._loader(seed=1, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(seed=2, shuffle=False)
