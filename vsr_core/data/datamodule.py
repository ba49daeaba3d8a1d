"""VideoDataModule: data loaders of uint8 clips + on-device float conversion and degradation.

Loaders yield ``uint8`` clips (a quarter of the bytes of float32 to move); after the batch is on
the training device, :meth:`VideoDataModule.on_after_batch_transfer` converts ``hq``/``lq`` to
float in ``[-1, 1]`` and, for unpaired data, creates ``lq = degradation(hq)`` there.

Reproducibility and exact resume: training sample ``p`` (a global position in an endless stream;
rank ``r`` of ``W`` takes positions ``r, r+W, r+2W, ...``) is a pure function of ``(seed, p)``
(see :class:`~vsr_core.data.dataset.ClipDataset`), and the degradation generator of a batch is
seeded from ``(seed, position of its first sample)``. The data module counts the training
batches it has handed over, saves the count in checkpoints (``state_dict``), and on resume the
:class:`ResumableSampler` starts right after the last consumed batch: 6 steps in one run equal 3
steps + resume + 3 steps, with any number of workers, gradient accumulation or optimizers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, DistributedSampler

from vsr_core.data.dataset import ClipDataset
from vsr_core.data.sources import SampleClips, VideoSource, limit_items
from vsr_core.errors import ConfigError

__all__ = ["ResumableSampler", "VideoDataModule"]

_TRAIN_SALT = 0x7A1
_EVAL_SALT = 0xE7A


def _mix_seed(*values: int) -> int:
    """A 63-bit seed that depends on all ``values`` (SeedSequence hashing, stable across runs)."""
    state = np.random.SeedSequence([int(v) & 0xFFFFFFFFFFFFFFFF for v in values]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


class ResumableSampler(DistributedSampler):
    """Endless, rank-aware stream of sample positions, served one epoch per ``iter()``.

    Rank ``r`` of ``W`` yields global positions ``b*B*W + i*W + r`` for its batches ``b`` (``B`` =
    ``batch_size``), so ranks never share a sample. An epoch is ``batches_per_epoch`` batches
    (``ceil(epoch_samples / W / B)``). Each ``iter()`` starts at batch ``start_batch()`` (the
    consumed-batch count, so a resumed run continues exactly) and runs to the end of that epoch.
    With an int ``start_batch`` the sampler advances itself from epoch to epoch.

    It subclasses ``DistributedSampler`` only so that Lightning does not wrap it in its own
    distributed sampler: the rank split above is done here.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        epoch_samples: int | None = None,
        start_batch: int | Callable[[], int] = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.batch_size = batch_size
        per_rank = math.ceil((epoch_samples or len(dataset)) / num_replicas)
        self.batches_per_epoch = max(1, math.ceil(per_rank / batch_size))
        self._start = start_batch

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def __iter__(self) -> Iterator[int]:
        first = self._start() if callable(self._start) else self._start
        end = (first // self.batches_per_epoch + 1) * self.batches_per_epoch
        w, r = self.num_replicas, self.rank
        for p in range(first * self.batch_size, end * self.batch_size):
            yield p * w + r
        if not callable(self._start):
            self._start = end


class _ResumableLoader(DataLoader):
    """A DataLoader Lightning regards as resumable; the state is the data module's batch count."""

    def __init__(self, *args, datamodule: VideoDataModule, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._datamodule = datamodule

    def state_dict(self) -> dict:
        return self._datamodule.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self._datamodule.load_state_dict(state_dict)


def _build_degradation(preset: str, scale: int, options: dict[str, Any] | None = None) -> torch.nn.Module:
    # Imported here: the degradation pipeline (kornia) is only needed once unpaired batches arrive.
    from vsr_core.data.degradations import build_degradation

    return build_degradation(preset, scale, **(options or {}))


class VideoDataModule(LightningDataModule):
    """Train/val/test/predict loaders of video clips for any :class:`~vsr_core.method.VSRMethod`.

    With no arguments it trains on the built-in sample clips (``SampleClips("train")``) and
    validates on the held-out ones (``SampleClips("val")``). Sources:

    * ``train``/``val``/``test``/``predict``: a :class:`VideoSource` (``VideoFolder``,
      ``PairedFolders``, ``SampleClips``); None = sample clips (test: the val source; predict:
      the test source). ``validate=False`` turns validation off.

    Clips: ``clip_frames`` frames at a temporal stride drawn from ``stride_range``, ``crop_size``
    square HQ crops (a multiple of ``scale``); evaluation uses ``val_crop_size`` (None = same as
    ``crop_size``, 0 = whole frames, then use ``val_batch_size=1``) and the first ``val_clips``
    clips (None = all). ``epoch_samples`` is the number of training samples per epoch over all
    ranks (None = one per clip). ``degradation`` is the preset that makes ``lq`` from ``hq`` on the
    device for unpaired sources, ``degradation_options`` overrides its parameters, e.g.
    ``{"second.noise": null, "codec.bitrate": [2e4, 5e4]}`` (see docs/degradations.md).

    Batches after transfer: ``hq`` float ``[B, 3, T, H, W]`` and ``lq`` ``[B, 3, T, H/s, W/s]`` in
    ``[-1, 1]``, ``prompt`` and ``key`` lists of ``B`` str.

    Args:
        train: training clips: a VideoSource (VideoFolder, PairedFolders, SampleClips, ItemList); null = the built-in sample clips.
        val: validation clips; null = the held-out sample clips.
        test: test clips; null = the validation source.
        predict: clips for ``vsr predict``; null = the test source.
        validate: false turns validation off.
        clip_frames: frames per clip.
        crop_size: side of the square HQ training crop in px (a multiple of scale); clips smaller than it are skipped.
        val_crop_size: crop for validation/test clips; null = crop_size, 0 = whole frames (then use val_batch_size 1).
        stride_range: (lo, hi) temporal strides drawn in training (evaluation uses lo).
        scale: upscaling factor; set from the method's scale (--model.scale).
        degradation: preset that makes LQ from HQ for unpaired sources: none, bicubic, simple, realesrgan,
            realbasicvsr (see docs/degradations.md).
        degradation_options: overrides of the preset's parameters, e.g. {"second.noise": null}.
        batch_size: training clips per batch (per device).
        val_batch_size: clips per validation/test batch.
        num_workers: DataLoader worker processes (0 = load in the main process).
        pin_memory: pinned host memory for faster GPU transfer.
        persistent_workers: keep workers alive between epochs.
        seed: seed of the clip order, crops, strides and degradations.
        val_clips: evaluate only the first N validation/test clips (null = all).
        epoch_samples: training samples per epoch over all ranks (null = one per clip).
    """

    def __init__(
        self,
        train: VideoSource | None = None,
        val: VideoSource | None = None,
        test: VideoSource | None = None,
        predict: VideoSource | None = None,
        validate: bool = True,
        clip_frames: int = 8,
        crop_size: int = 64,
        val_crop_size: int | None = None,
        stride_range: tuple[int, int] = (1, 1),
        scale: int = 4,
        degradation: Literal["none", "bicubic", "simple", "realesrgan", "realbasicvsr"] = "bicubic",
        degradation_options: dict[str, Any] | None = None,
        batch_size: int = 2,
        val_batch_size: int = 1,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        seed: int = 0,
        val_clips: int | None = None,
        epoch_samples: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or val_batch_size < 1:
            raise ConfigError(f"batch_size and val_batch_size must be >= 1 (got {batch_size}, {val_batch_size})")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0 (got {num_workers})")
        if crop_size % scale:
            raise ConfigError(f"crop_size {crop_size} must be a multiple of scale {scale}")
        self.train_source = train
        self.val_source = val
        self.test_source = test
        self.predict_source = predict
        self.validate = validate
        self.clip_frames = clip_frames
        self.crop_size = crop_size
        self.val_crop_size = val_crop_size
        self.stride_range = tuple(stride_range)
        self.scale = scale
        self.degradation = degradation
        self.degradation_options = dict(degradation_options or {})
        # Built now so that a wrong preset or option fails before training starts, not at the first batch.
        self._degrader = _build_degradation(degradation, scale, self.degradation_options)
        self._degrader_device: torch.device | None = None
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.seed = seed
        self.val_clips = val_clips
        self.epoch_samples = epoch_samples
        self.train_dataset: ClipDataset | None = None
        self.val_dataset: ClipDataset | None = None
        self.test_dataset: ClipDataset | None = None
        self.predict_dataset: ClipDataset | None = None
        self._train_batches = 0  # training batches handed to the model so far (saved in checkpoints)

    # -- sources -------------------------------------------------------------------------------
    def _train_src(self) -> VideoSource:
        if self.train_source is None:
            self.train_source = SampleClips("train")
        return self.train_source

    def _val_src(self) -> VideoSource:
        if self.val_source is None:
            self.val_source = SampleClips("val")
        return self.val_source

    def _test_src(self) -> VideoSource:
        return self.test_source if self.test_source is not None else self._val_src()

    def _predict_src(self) -> VideoSource:
        return self.predict_source if self.predict_source is not None else self._test_src()

    def prepare_data(self) -> None:
        """Render the built-in sample clips once per machine (a no-op when cached)."""
        for source in (self.train_source, self.val_source, self.test_source, self.predict_source):
            if isinstance(source, SampleClips):
                source.items()
        if self.train_source is None:
            self._train_src().items()
        if self.val_source is None and self.validate:
            self._val_src().items()

    def _eval_dataset(self, source: VideoSource) -> ClipDataset:
        crop = self.crop_size if self.val_crop_size is None else (self.val_crop_size or None)
        return ClipDataset(
            limit_items(source, self.val_clips),
            clip_frames=self.clip_frames,
            crop_size=crop,
            stride_range=(self.stride_range[0], self.stride_range[0]),
            scale=self.scale,
            random=False,
            seed=self.seed,
        )

    def setup(self, stage: str | None = None) -> None:
        if stage == "fit":
            # A new fit starts the sample stream from the beginning; Lightning restores the count
            # from a checkpoint (load_state_dict) only after this hook, when resuming.
            self._train_batches = 0
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = ClipDataset(
                self._train_src(),
                clip_frames=self.clip_frames,
                crop_size=self.crop_size,
                stride_range=self.stride_range,
                scale=self.scale,
                random=True,
                seed=self.seed,
            )
        if stage in (None, "fit", "validate") and self.validate and self.val_dataset is None:
            self.val_dataset = self._eval_dataset(self._val_src())
        if stage in (None, "test") and self.test_dataset is None:
            self.test_dataset = self._eval_dataset(self._test_src())
        if stage in (None, "predict") and self.predict_dataset is None:
            self.predict_dataset = self._eval_dataset(self._predict_src())

    # -- loaders -------------------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _loader_kwargs(self) -> dict:
        on_cuda = (
            self.trainer.strategy.root_device.type == "cuda" if self.trainer is not None else torch.cuda.is_available()
        )
        kwargs = {"num_workers": self.num_workers, "pin_memory": self.pin_memory and on_cuda}
        if self.num_workers > 0:
            kwargs["persistent_workers"] = self.persistent_workers
        return kwargs

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        rank, world = self._rank_world()
        sampler = ResumableSampler(
            self.train_dataset,
            batch_size=self.batch_size,
            num_replicas=world,
            rank=rank,
            epoch_samples=self.epoch_samples,
            start_batch=lambda: self._train_batches,
        )
        return _ResumableLoader(
            self.train_dataset, batch_size=self.batch_size, sampler=sampler, datamodule=self, **self._loader_kwargs()
        )

    def _eval_loader(self, dataset: ClipDataset) -> DataLoader:
        return DataLoader(dataset, batch_size=self.val_batch_size, shuffle=False, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader | list:
        if not self.validate:
            return []
        if self.val_dataset is None:
            self.setup("validate")
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        if self.test_dataset is None:
            self.setup("test")
        return self._eval_loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_dataset is None:
            self.setup("predict")
        return self._eval_loader(self.predict_dataset)

    # -- on-device preparation -----------------------------------------------------------------
    def _degrader_on(self, device: torch.device) -> torch.nn.Module:
        if self._degrader is None:
            self._degrader = _build_degradation(self.degradation, self.scale, self.degradation_options)
        if self._degrader_device != device:
            self._degrader = self._degrader.to(device)
            self._degrader_device = device
        return self._degrader

    @staticmethod
    def _to_float(x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(127.5).sub_(1.0) if x.dtype == torch.uint8 else x

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 -> float in ``[-1, 1]`` on the device; ``lq = degradation(hq)`` for unpaired data."""
        if not isinstance(batch, dict) or "hq" not in batch:
            return batch
        training = self.trainer is not None and self.trainer.training
        index = batch.pop("index", None)
        batch["hq"] = self._to_float(batch["hq"])
        if "lq" in batch:
            batch["lq"] = self._to_float(batch["lq"])
        else:
            hq = batch["hq"]
            first = int(index[0]) if index is not None else 0
            generator = torch.Generator(device=hq.device)
            generator.manual_seed(_mix_seed(self.seed, _TRAIN_SALT if training else _EVAL_SALT, first))
            with torch.no_grad():
                batch["lq"] = self._degrader_on(hq.device)(hq, generator=generator).clamp_(-1.0, 1.0)
        if training:
            self._train_batches += 1
        return batch

    # -- checkpoint state ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"train_batches": self._train_batches}

    def load_state_dict(self, state_dict: dict) -> None:
        self._train_batches = int(state_dict.get("train_batches", 0))
