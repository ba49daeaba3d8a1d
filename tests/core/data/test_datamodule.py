"""VideoDataModule: batches after transfer, resumable rank-aware sampling, exact resume, CLI config."""

from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from video_factory import AvgPoolNoise, box_downscale, make_frame_folder, make_video, pattern

from vsr_core.data import datamodule as dm_module
from vsr_core.data.datamodule import ResumableSampler, VideoDataModule
from vsr_core.data.sources import PairedFolders, SampleClips, VideoFolder

_REAL_BUILD = dm_module._build_degradation  # kept before the autouse fixture swaps in the stand-in


@pytest.fixture(autouse=True)
def stand_in_degradation(monkeypatch):
    """Box downscale + seeded noise, so the tests do not depend on the degradation presets."""
    monkeypatch.setattr(dm_module, "_build_degradation", lambda preset, scale, options=None: AvgPoolNoise(scale))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    for k in range(5):
        make_video(root / f"v{k}.mp4", frames=12, height=40, width=48, seed=k)
        (root / f"v{k}.txt").write_text(f"clip {k}")
    return str(root)


def _dm(folder, **kwargs) -> VideoDataModule:
    args = dict(train=VideoFolder(folder), val=VideoFolder(folder), clip_frames=3, crop_size=16, num_workers=0)
    args.update(kwargs)
    return VideoDataModule(**args)


def test_defaults_need_no_arguments_and_touch_no_files():
    dm = VideoDataModule()
    assert (dm.clip_frames, dm.crop_size, dm.scale, dm.batch_size, dm.degradation) == (8, 64, 4, 2, "bicubic")
    assert dm.train_source is None and dm.train_dataset is None  # sample clips are made only in prepare/setup


def test_batch_after_transfer_is_float_with_lq_from_hq(folder):
    dm = _dm(folder, batch_size=3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["hq"].dtype == torch.uint8 and batch["hq"].shape == (3, 3, 3, 16, 16)
    raw = batch["hq"].clone()
    out = dm.on_after_batch_transfer(batch, 0)
    assert set(out) == {"hq", "lq", "prompt", "key"}  # the sample positions are consumed here
    assert out["hq"].dtype == torch.float32 and out["hq"].shape == (3, 3, 3, 16, 16)
    assert out["hq"].min() >= -1 and out["hq"].max() <= 1
    torch.testing.assert_close(out["hq"], raw.float() / 127.5 - 1)
    assert out["lq"].shape == (3, 3, 3, 4, 4) and out["lq"].min() >= -1 and out["lq"].max() <= 1
    clean = torch.nn.functional.avg_pool3d(out["hq"], (1, 4, 4))
    assert 0.01 < (out["lq"] - clean).std() < 0.1  # the stand-in's seeded noise on top of the box downscale
    assert isinstance(out["prompt"], list) and len(out["prompt"]) == 3
    assert all(p == f"clip {k[1]}" for p, k in zip(out["prompt"], out["key"], strict=True))


def test_degradation_noise_is_a_function_of_the_sample_positions(folder):
    dm = _dm(folder)
    dm.setup("fit")
    loader = dm.train_dataloader()
    first = [dm.on_after_batch_transfer(b, 0)["lq"] for b, _ in zip(loader, range(2), strict=False)]
    again = [dm.on_after_batch_transfer(b, 0)["lq"] for b, _ in zip(dm.train_dataloader(), range(2), strict=False)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])


def test_paired_lq_is_converted_not_degraded(tmp_path):
    hq = pattern(4, 32, 32)
    make_frame_folder(tmp_path / "GT" / "c", hq)
    make_frame_folder(tmp_path / "LQ" / "c", box_downscale(hq, 4))
    paired = PairedFolders(str(tmp_path / "GT"), str(tmp_path / "LQ"))
    dm = VideoDataModule(train=paired, val=paired, clip_frames=2, crop_size=16, num_workers=0, batch_size=1)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    raw_lq = batch["lq"].clone()
    out = dm.on_after_batch_transfer(batch, 0)
    torch.testing.assert_close(out["lq"], raw_lq.float() / 127.5 - 1)
    val = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert val["hq"].shape == (1, 3, 2, 16, 16) and val["lq"].shape == (1, 3, 2, 4, 4)


def test_sampler_yields_disjoint_rank_streams_from_the_start_batch():
    data = list(range(10))
    ranks = [ResumableSampler(data, batch_size=2, num_replicas=2, rank=r) for r in range(2)]
    assert ranks[0].batches_per_epoch == 3 and len(ranks[0]) == 6
    epoch0 = [list(s) for s in ranks]
    assert epoch0[0] == [0, 2, 4, 6, 8, 10] and epoch0[1] == [1, 3, 5, 7, 9, 11]
    assert list(ranks[0]) == [12, 14, 16, 18, 20, 22]  # self-advancing: the next epoch
    resumed = ResumableSampler(data, batch_size=2, num_replicas=2, rank=1, start_batch=lambda: 4)
    assert list(resumed) == [17, 19, 21, 23]  # batch 4 of 3 per epoch: the rest of epoch 1


def test_sampler_is_not_replaced_by_lightning_in_ddp(folder):
    from torch.utils.data import DistributedSampler

    dm = _dm(folder)
    dm.setup("fit")
    assert isinstance(dm.train_dataloader().sampler, DistributedSampler)


class _Recorder(pl.LightningModule):
    """Records what each training step sees."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((tuple(batch["key"]), batch["hq"].sum().item(), batch["lq"].sum().item()))
        return (self.w - batch["lq"].mean()) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(folder, steps, ckpt_dir=None, ckpt_path=None, workers=0):
    model = _Recorder()
    callbacks = [ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_top_k=-1)] if ckpt_dir else []
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(ckpt_dir),
        callbacks=callbacks,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(model, _dm(folder, batch_size=2, num_workers=workers, epoch_samples=8), ckpt_path=ckpt_path)
    return model.seen


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_is_exact(folder, tmp_path, workers):
    straight = _fit(folder, 6, workers=workers)
    first = _fit(folder, 3, ckpt_dir=tmp_path, workers=workers)  # epochs of 4 steps: resume mid-epoch
    (ckpt,) = glob.glob(str(tmp_path / "*.ckpt"))
    rest = _fit(folder, 6, ckpt_path=ckpt, workers=workers)
    assert first + rest == straight
    assert len({keys for keys, _, _ in straight}) > 1


def test_state_dict_round_trip(folder):
    dm = _dm(folder)
    dm.setup("fit")  # Lightning: setup first, then load_state_dict when resuming
    dm.load_state_dict({"train_batches": 7})
    assert dm.state_dict() == {"train_batches": 7}
    assert next(iter(dm.train_dataloader().sampler)) == 14  # batch 7 * batch size 2
    dm.setup("fit")  # a new fit starts from the beginning
    assert next(iter(dm.train_dataloader().sampler)) == 0


def test_validation_can_be_disabled_and_eval_sets_limited(folder):
    assert _dm(folder, validate=False).val_dataloader() == []
    dm = _dm(folder, val_clips=2, val_crop_size=0, scale=4)
    dm.setup("validate")
    assert len(dm.val_dataset) == 2
    batch = next(iter(dm.val_dataloader()))
    assert batch["hq"].shape == (1, 3, 3, 40, 48)  # whole frames (multiples of the scale)
    dm.setup("test")
    assert len(dm.test_dataset) == 2  # test defaults to the val source


def test_default_sources_are_the_sample_clip_splits(monkeypatch, tmp_path):
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path))

    class SmallSampleClips(SampleClips):
        def __init__(self, split: str) -> None:
            super().__init__(split, size=16, frames=4, videos=False)

    monkeypatch.setattr(dm_module, "SampleClips", SmallSampleClips)
    dm = VideoDataModule(clip_frames=2, crop_size=8, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    train_keys = {i.key for i in dm.train_dataset.items}
    val_keys = {i.key for i in dm.val_dataset.items}
    assert train_keys and val_keys and not train_keys & val_keys


class _CLIModel(pl.LightningModule):
    def __init__(self, width: int = 4) -> None:
        super().__init__()


def test_cli_prints_defaults_and_takes_a_video_folder(folder, capsys):
    with pytest.raises(SystemExit):
        LightningCLI(
            _CLIModel,
            VideoDataModule,
            subclass_mode_data=True,
            run=False,
            args=["--data", "VideoDataModule", "--print_config"],
        )
    config = yaml.safe_load(capsys.readouterr().out)["data"]
    assert config["class_path"].endswith("VideoDataModule")
    assert config["init_args"]["crop_size"] == 64 and config["init_args"]["stride_range"] == [1, 1]
    cli = LightningCLI(
        _CLIModel,
        VideoDataModule,
        subclass_mode_data=True,
        run=False,
        args=[
            "--data.train",
            "VideoFolder",
            "--data.train.root",
            folder,
            "--data.train.recursive",
            "false",
            "--data.stride_range",
            "[1, 2]",
            "--data.val",
            "SampleClips",
            "--data.val.size",
            "16",
        ],
    )
    dm = cli.datamodule
    assert (
        isinstance(dm.train_source, VideoFolder) and dm.train_source.root == folder and not dm.train_source.recursive
    )
    assert isinstance(dm.val_source, SampleClips) and dm.val_source.size == 16
    assert dm.stride_range == (1, 2)


@pytest.mark.skipif(importlib.util.find_spec("vsr_core.data.degradations") is None, reason="degradations not present")
def test_real_bicubic_preset_makes_lq(folder, monkeypatch):
    monkeypatch.setattr(dm_module, "_build_degradation", _REAL_BUILD)
    dm = _dm(folder, degradation="bicubic")
    dm.setup("fit")
    out = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert out["lq"].shape == (2, 3, 3, 4, 4) and out["lq"].min() >= -1 and out["lq"].max() <= 1


@pytest.mark.slow
def test_ddp_ranks_see_disjoint_samples(folder, tmp_path):
    worker = Path(__file__).with_name("ddp_data_worker.py")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, str(worker), folder, str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    positions = [[p for batch in r["positions"] for p in batch] for r in ranks]
    assert positions[0] == [0, 2, 4, 6, 8, 10, 12, 14] and positions[1] == [1, 3, 5, 7, 9, 11, 13, 15]
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 4
    assert all(
        a[1] != b[1] for a, b in zip(ranks[0]["seen"], ranks[1]["seen"], strict=True)
    )  # different clips/crops/noise
