"""`vsr export`: a checkpoint as a diffusers-format folder that loads back with identical weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vsr_core.commands.export import export_method, load_exported, main


@pytest.fixture
def trained(tmp_path) -> tuple[Path, torch.nn.Module]:
    from reference.model import ReferenceVSR

    from vsr_core.testing import tiny_trainer

    torch.manual_seed(0)
    method = ReferenceVSR(scale=2, channels=4, num_blocks=1)
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
    assert (
        record["class_path"] == "reference.model.ReferenceVSR"
        and record["weights"] == "raw"
    )
    assert record["init_args"]["channels"] == 4 and list(record["components"]) == [
        "net"
    ]
    assert (
        tmp_path / "export" / "net" / "diffusion_pytorch_model.safetensors"
    ).is_file()
    loaded = load_exported(tmp_path / "export")
    for (k, a), b in zip(method.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    lq = torch.rand(1, 3, 3, 8, 8) * 2 - 1
    assert torch.equal(method.eval().restore(lq), loaded.restore(lq))


def test_ema_weights_are_exported_by_default(trained, tmp_path, capsys):
    ckpt, method = trained
    checkpoint = torch.load(ckpt, weights_only=False)
    ema = {k: torch.full_like(v, 0.5) for k, v in method.named_parameters()}
    checkpoint["ema_state_dict"] = ema
    torch.save(checkpoint, tmp_path / "ema.ckpt")
    assert main([str(tmp_path / "ema.ckpt"), "-o", str(tmp_path / "e")]) == 0
    assert (
        json.loads((tmp_path / "e" / "vsr_method.json").read_text())["weights"] == "ema"
    )
    loaded = load_exported(tmp_path / "e")
    assert all(torch.all(p == 0.5) for p in loaded.parameters())
    assert (
        main(
            [str(tmp_path / "ema.ckpt"), "-o", str(tmp_path / "r"), "--weights", "raw"]
        )
        == 0
    )
    assert torch.equal(
        load_exported(tmp_path / "r").net.stem.weight, method.net.stem.weight
    )
    # asking for EMA from a checkpoint without it, or exporting over files: one line, no folder left
    assert main([str(ckpt), "-o", str(tmp_path / "x"), "--weights", "ema"]) != 0
    assert main([str(ckpt), "-o", str(tmp_path / "e")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert not (tmp_path / "x").exists()


def test_lora_adapter_is_exported_in_diffusers_format_and_reloaded(tmp_path):
    from reference.model import ReferenceVSR

    from vsr_core.lora import LORA_WEIGHT_NAME, add_lora

    torch.manual_seed(1)
    method = ReferenceVSR(scale=2, channels=4, num_blocks=1)
    add_lora(
        method.net, rank=2, target_modules=["conv1", "conv2"], init_lora_weights=False
    )
    export_method(method, tmp_path / "lora")
    assert (tmp_path / "lora" / "net_lora" / LORA_WEIGHT_NAME).is_file()
    base = set(
        load_file(
            str(tmp_path / "lora" / "net" / "diffusion_pytorch_model.safetensors")
        )
    )
    assert not any("lora" in k for k in base) and "blocks.0.conv1.weight" in base
    loaded = load_exported(tmp_path / "lora")
    lq = torch.rand(1, 3, 3, 8, 8) * 2 - 1
    assert torch.allclose(method.eval().restore(lq), loaded.restore(lq), atol=1e-6)
    assert "default" in loaded.net.peft_config
