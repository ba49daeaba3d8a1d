"""The configs: what each PLS stage and Table 1 strategy trains on, the stage chain through ``vsr fit`` with
``init_from``, and ``vsr restore`` with a DiffVSR checkpoint and its ``vsr export`` folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vsr_core.cli import main
from vsr_core.lightning_cli import VSRCLI

CONFIGS = Path(__file__).resolve().parents[3] / "plugins" / "diffvsr" / "configs"


# Tiny stand-ins for the paths and sizes of the full-size configs (the recipe itself is what is checked).
def _tiny(upscaler: Path) -> list[str]:
    return [
        "--model.init_args.pretrained",
        str(upscaler),
        "--model.init_args.preset",
        "tiny",
        "--model.init_args.vae",
        "2dvae",
        "--model.init_args.vae_weights",
        "null",
        "--data.init_args.train",
        "null",
        "--data.init_args.crop_size",
        "32",
        "--data.init_args.clip_frames",
        "3",
        "--data.init_args.batch_size",
        "1",
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.stride_range",
        "[1, 1]",
        "--trainer.devices",
        "1",
        "--trainer.accelerator",
        "cpu",
        "--trainer.precision",
        "32-true",
    ]


@pytest.mark.parametrize(
    "name, trainable, degradation, starts_from_a_stage",
    [
        ("sd-x4-upscaler-stage1", "temporal", "simple", False),
        ("sd-x4-upscaler-stage2", "temporal", "realbasicvsr", True),
        ("sd-x4-upscaler-stage3", "all", "realbasicvsr", True),
        ("sd-x4-upscaler-table1-direct", "temporal", "realbasicvsr", False),
        ("sd-x4-upscaler-table1-partial-stage2", "all", "realbasicvsr", True),
    ],
)
def test_stage_configs_hold_the_paper_recipe(tiny_upscaler, name, trainable, degradation, starts_from_a_stage):
    import yaml

    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    data = raw["data"]["init_args"]
    assert (data["clip_frames"], data["crop_size"], data["stride_range"], data["degradation"]) == (
        8,
        320,
        [1, 6],
        degradation,
    )
    model = raw["model"]["init_args"]
    assert model["learning_rate"] == 1e-4 and model["training"]["trainable"] == trainable
    assert model["vae"] == "te-3dvae" and model["text"]["encoder"] == "clip" and model["preset"] == "real"
    assert ("init_from" in model) == starts_from_a_stage
    cli = VSRCLI(
        args=["--config", str(CONFIGS / f"{name}.yaml"), *_tiny(tiny_upscaler), "--model.init_args.init_from", "null"],
        run=False,
    )
    assert cli.model.training_options.trainable == trainable and cli.datamodule.degradation == degradation


def _fit(config: str, root: Path, upscaler: Path, *extra: str) -> Path:
    args = [
        "fit",
        "--config",
        str(CONFIGS / config),
        *_tiny(upscaler),
        "--trainer.max_steps",
        "1",
        "--trainer.limit_val_batches",
        "0",
        "--trainer.logger.init_args.save_dir",
        str(root),
        "--trainer.enable_progress_bar",
        "false",
        "--samples.save_files",
        "false",
        "--model.init_args.gradient_checkpointing",
        "false",
        *extra,
    ]
    assert main(args) == 0
    return max(root.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)


def test_the_three_stages_chain_through_init_from(tiny_upscaler, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = _fit("sd-x4-upscaler-stage1.yaml", tmp_path / "s1", tiny_upscaler)
    state = torch.load(first, weights_only=True)["state_dict"]
    assert state and all(".temporal." in k or ".msta." in k for k in state)  # frozen image weights stay on disk
    second = _fit(
        "sd-x4-upscaler-stage2.yaml", tmp_path / "s2", tiny_upscaler, "--model.init_args.init_from", str(first)
    )
    third = _fit(
        "sd-x4-upscaler-stage3.yaml", tmp_path / "s3", tiny_upscaler, "--model.init_args.init_from", str(second)
    )
    final = torch.load(third, weights_only=True)["state_dict"]
    assert any("down_blocks.1.attentions.0.transformer_blocks.0.attn1" in k for k in final)  # stage 3 trains all


def _frames(folder: Path, count: int = 10, size: int = 12) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def test_vsr_fit_restore_and_export_with_the_tiny_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--model",
        "diffvsr.DiffVSR",
        "--trainer.max_steps",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.val_check_interval",
        "2",
        "--model.init_args.val_sampling",
        "{num_inference_steps: 2}",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "runs"),
        "--trainer.enable_progress_bar",
        "false",
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.crop_size",
        "32",
        "--samples.save_files",
        "false",
    ]
    assert main(args) == 0
    checkpoint = next((tmp_path / "runs").rglob("last.ckpt"))
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "export")]) == 0
    video = _frames(tmp_path / "clip")
    for source, out in ((checkpoint, "from-ckpt"), (tmp_path / "export", "from-export")):
        assert main(["restore", str(video), "--ckpt", str(source), "-o", str(tmp_path / out), "--steps", "2"]) == 0
        assert (tmp_path / out / "clip.mp4").is_file()


def test_vsr_restore_refuses_zero_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    from diffvsr import DiffVSR
    from vsr_core.export import export_method

    export_method(DiffVSR(sampling={"num_inference_steps": 2}), tmp_path / "export")
    video = _frames(tmp_path / "clip", count=3)
    assert (
        main(["restore", str(video), "--ckpt", str(tmp_path / "export"), "-o", str(tmp_path / "out"), "--steps", "0"])
        != 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: --steps must be an integer >= 1, got 0"
    assert not (tmp_path / "out" / "clip.mp4").exists()


def test_te3dvae_trains_through_vsr_fit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--config",
        str(CONFIGS / "te3dvae-tiny.yaml"),
        "--trainer.max_steps",
        "3",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.val_check_interval",
        "3",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "runs"),
        "--trainer.enable_progress_bar",
        "false",
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.crop_size",
        "32",
        "--samples.save_files",
        "false",
    ]
    assert main(args) == 0
    checkpoint = next((tmp_path / "runs").rglob("last.ckpt"))
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 3
