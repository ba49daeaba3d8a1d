"""`vsr export` (the command): a checkpoint as a folder that loads back with identical weights; `vsr restore --ckpt FOLDER`.

The library (layouts, pretrained=, bad folders) is tested in tests/core/test_export.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vsr_core.commands.export import main
from vsr_core.export import load_exported


@pytest.fixture
def trained(tmp_path) -> tuple[Path, torch.nn.Module]:
    from vsr_core.testing import BoringMethod, tiny_trainer

    torch.manual_seed(0)
    method = BoringMethod(scale=2, width=4)
    with torch.no_grad():
        for p in method.parameters():
            p.normal_()  # non-zero everywhere, so a weight that is not carried over shows
    trainer = tiny_trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(method)
    path = tmp_path / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path, method


def test_export_raw_weights_load_back_identical(trained, tmp_path, capsys):
    ckpt, method = trained
    assert main([str(ckpt), "-o", str(tmp_path / "export")]) == 0
    record = json.loads((tmp_path / "export" / "vsr_method.json").read_text())
    assert record["class_path"] == "vsr_core.testing.boring.BoringMethod" and record["weights"] == "raw"
    assert record["init_args"]["width"] == 4 and list(record["components"]) == ["net"]
    assert (tmp_path / "export" / "net" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = load_exported(tmp_path / "export")
    for (k, a), b in zip(method.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    lq = torch.rand(1, 3, 3, 8, 8) * 2 - 1
    assert torch.equal(method.eval().restore(lq), loaded.restore(lq))


def test_ema_weights_are_exported_by_default(trained, tmp_path, capsys):
    ckpt, method = trained
    checkpoint = torch.load(ckpt, weights_only=True)
    ema = {k: torch.full_like(v, 0.5) for k, v in method.named_parameters()}
    checkpoint["ema_state_dict"] = ema
    torch.save(checkpoint, tmp_path / "ema.ckpt")
    assert main([str(tmp_path / "ema.ckpt"), "-o", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "vsr_method.json").read_text())["weights"] == "ema"
    loaded = load_exported(tmp_path / "e")
    assert all(torch.all(p == 0.5) for p in loaded.parameters())
    assert main([str(tmp_path / "ema.ckpt"), "-o", str(tmp_path / "r"), "--weights", "raw"]) == 0
    assert torch.equal(load_exported(tmp_path / "r").net[0].weight, method.net[0].weight)
    # asking for EMA from a checkpoint without it, or exporting over files: one line, no folder left
    assert main([str(ckpt), "-o", str(tmp_path / "x"), "--weights", "ema"]) != 0
    assert main([str(ckpt), "-o", str(tmp_path / "e")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert not (tmp_path / "x").exists()


def test_restore_reads_an_export_folder_like_its_checkpoint(trained, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from vsr_core.commands.restore import main as restore
    from vsr_core.data.video_io import VideoReader

    ckpt, _ = trained
    assert main([str(ckpt), "-o", str(tmp_path / "export")]) == 0
    (tmp_path / "clip").mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "clip" / f"{i:03d}.png")
    common = [str(tmp_path / "clip"), "--device", "cpu"]
    assert restore([*common, "--ckpt", str(ckpt), "-o", str(tmp_path / "from_ckpt")]) == 0
    assert restore([*common, "--ckpt", str(tmp_path / "export"), "-o", str(tmp_path / "from_export")]) == 0
    a = VideoReader(tmp_path / "from_ckpt" / "clip.mp4").read_clip(0, 5)
    b = VideoReader(tmp_path / "from_export" / "clip.mp4").read_clip(0, 5)
    assert a.shape == (5, 32, 32, 3) and torch.equal(a, b)
    # a folder that is not an export: one line naming vsr_method.json
    (tmp_path / "plain").mkdir()
    capsys.readouterr()
    assert restore([*common, "--ckpt", str(tmp_path / "plain"), "-o", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "vsr_method.json" in err


def test_an_export_folder_can_be_exported_again(trained, tmp_path, capsys):
    ckpt, method = trained
    assert main([str(ckpt), "-o", str(tmp_path / "a")]) == 0
    assert main([str(tmp_path / "a"), "-o", str(tmp_path / "b")]) == 0
    copy = load_exported(tmp_path / "b")
    assert torch.equal(copy.net[0].weight, method.net[0].weight)
    assert main([str(tmp_path / "a"), "-o", str(tmp_path / "c"), "--weights", "ema"]) != 0
    assert "--weights applies to checkpoints" in capsys.readouterr().err


def test_a_malicious_checkpoint_is_refused_before_anything_runs(malicious_checkpoint, tmp_path, capsys):
    path, marker = malicious_checkpoint
    assert main([str(path), "-o", str(tmp_path / "export")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "refused" in err
    assert not marker.exists() and not (tmp_path / "export").exists()


def test_ema_weights_that_do_not_fit_are_one_line(trained, tmp_path, capsys):
    ckpt, method = trained
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["ema_state_dict"] = {"net.0.weight": torch.zeros(1)}
    torch.save(checkpoint, tmp_path / "bad_ema.ckpt")
    assert main([str(tmp_path / "bad_ema.ckpt"), "-o", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "net.0.weight does not fit" in err and not (tmp_path / "x").exists()
