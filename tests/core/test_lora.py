"""LoRA via peft in the diffusers file format: training touches only LoRA, save/load/merge keep the function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel
from safetensors import safe_open
from torch import nn

from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.lora import LORA_WEIGHT_NAME, add_lora, load_lora, lora_state_dict, merge_lora, save_lora

TINY = {
    "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 4, "out_channels": 4, "time_embed_dim": 2,
    "text_embed_dim": 8, "num_layers": 1, "sample_width": 8, "sample_height": 8, "sample_frames": 8, "patch_size": 2,
    "temporal_compression_ratio": 4, "max_text_seq_length": 8,
}  # fmt: skip


def _base(tmp_path: Path) -> Path:
    """A tiny random CogVideoX transformer saved once: every model below loads the same base weights."""
    folder = tmp_path / "base"
    if not folder.exists():
        torch.manual_seed(0)
        CogVideoXTransformer3DModel(**TINY).save_pretrained(folder)
    return folder


def _model(tmp_path: Path) -> CogVideoXTransformer3DModel:
    return CogVideoXTransformer3DModel.from_pretrained(_base(tmp_path)).eval()


def _inputs() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, 2, 4, 8, 8, generator=gen), torch.randn(2, 8, 8, generator=gen), torch.tensor([10, 600])


def _run(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(*_inputs(), return_dict=False)[0]


def _train(model: nn.Module, steps: int = 2) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5)
    x, text, t = _inputs()
    for _ in range(steps):
        loss = model(x, text, t, return_dict=False)[0].square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_training_changes_only_lora_parameters(tmp_path: Path) -> None:
    model = _model(tmp_path)
    before_out = _run(model)
    config = add_lora(model, rank=4, alpha=8)
    assert config.r == 4 and config.lora_alpha == 8
    # B starts at zero: the adapted model computes the base function.
    torch.testing.assert_close(_run(model), before_out, rtol=0, atol=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 8  # A and B of to_q, to_k, to_v, to_out.0
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train(model)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, snapshot[n])}
    assert changed and changed <= trainable
    assert not torch.allclose(_run(model), before_out)


def test_save_writes_the_diffusers_file_and_load_restores_the_function(tmp_path: Path) -> None:
    model = _model(tmp_path)
    add_lora(model, rank=4)
    _train(model)
    path = save_lora(model, tmp_path / "adapter")
    assert path == tmp_path / "adapter" / LORA_WEIGHT_NAME
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        metadata = json.loads(handle.metadata()["lora_adapter_metadata"])
    assert "transformer.transformer_blocks.0.attn1.to_q.lora_A.weight" in keys and len(keys) == 8
    assert metadata["transformer.r"] == 4 and sorted(metadata["transformer.target_modules"]) == [
        "to_k",
        "to_out.0",
        "to_q",
        "to_v",
    ]
    assert keys == set(lora_state_dict(model))

    fresh = _model(tmp_path)
    load_lora(fresh, tmp_path / "adapter")  # adapter created from the file's metadata
    torch.testing.assert_close(_run(fresh), _run(model), rtol=0, atol=0)


def test_the_file_loads_through_diffusers_own_loader(tmp_path: Path) -> None:
    model = _model(tmp_path)
    add_lora(model, rank=4, alpha=2)
    _train(model)
    save_lora(model, tmp_path / "adapter")
    state, metadata = CogVideoXPipeline.lora_state_dict(tmp_path / "adapter", return_lora_metadata=True)
    assert set(state) == set(lora_state_dict(model))
    assert metadata["transformer.r"] == 4 and metadata["transformer.lora_alpha"] == 2
    theirs = _model(tmp_path)
    CogVideoXPipeline.load_lora_into_transformer(state, transformer=theirs, metadata=metadata)
    torch.testing.assert_close(_run(theirs), _run(model), rtol=1e-6, atol=1e-6)


def test_mismatching_files_are_one_line_errors(tmp_path: Path) -> None:
    model = _model(tmp_path)
    add_lora(model, rank=4, target_modules=["to_q"])
    save_lora(model, tmp_path / "q_only")
    other = _model(tmp_path)
    add_lora(other, rank=4)  # expects to_q, to_k, to_v, to_out.0
    with pytest.raises(PretrainedError, match=r"does not match the model's LoRA adapter 'default': 6 missing keys"):
        load_lora(other, tmp_path / "q_only")
    bigger = _model(tmp_path)
    add_lora(bigger, rank=8, target_modules=["to_q"])
    with pytest.raises(PretrainedError, match="size mismatch") as err:
        load_lora(bigger, tmp_path / "q_only")
    assert "\n" not in str(err.value)
    with pytest.raises(PretrainedError, match=r"has no 'unet.' LoRA weights \(it holds: transformer\)"):
        load_lora(_model(tmp_path), tmp_path / "q_only", prefix="unet")
    with pytest.raises(PretrainedError, match="does not exist"):
        load_lora(_model(tmp_path), tmp_path / "nowhere")


def test_merge_keeps_the_function_and_removes_the_adapter(tmp_path: Path) -> None:
    model = _model(tmp_path)
    add_lora(model, rank=4)
    _train(model)
    expected = _run(model)
    merge_lora(model)
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert not hasattr(model, "peft_config")
    torch.testing.assert_close(_run(model), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="has no LoRA layers"):
        merge_lora(model)


class Block(nn.Module):
    """A plain (non-diffusers) module with attention-style projection names."""

    def __init__(self) -> None:
        super().__init__()
        self.to_q, self.to_k, self.proj = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.to_q(x) * self.to_k(x).sigmoid())


def test_plain_modules_use_peft_injection(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Block()
    add_lora(model, rank=2, target_modules=["to_q", "to_k"], init_lora_weights="gaussian")
    x = torch.randn(4, 6)
    save_lora(model, tmp_path, prefix="block")
    assert set(lora_state_dict(model, prefix="block")) == {
        "block.to_q.lora_A.weight", "block.to_q.lora_B.weight", "block.to_k.lora_A.weight", "block.to_k.lora_B.weight"
    }  # fmt: skip
    torch.manual_seed(0)
    fresh = Block()
    load_lora(fresh, tmp_path / LORA_WEIGHT_NAME, prefix="block")
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    expected = model(x)
    merge_lora(model)
    assert isinstance(model.to_q, nn.Linear) and not hasattr(model, "peft_config")
    torch.testing.assert_close(model(x), expected, rtol=1e-6, atol=1e-6)


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    model = _model(tmp_path)
    with pytest.raises(ConfigError, match="cannot add LoRA to CogVideoXTransformer3DModel: Target modules"):
        add_lora(model, rank=4, target_modules=["no_such_layer"])
    with pytest.raises(ConfigError, match="rank must be >= 1"):
        add_lora(model, rank=0)
    add_lora(model, rank=2)
    with pytest.raises(ConfigError, match="already has a LoRA adapter named 'default'"):
        add_lora(model, rank=2)
    with pytest.raises(ConfigError, match="has no LoRA adapter 'other'"):
        lora_state_dict(model, adapter_name="other")
