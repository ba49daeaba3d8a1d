"""Memory-lean construction (satb/build.py): shared base tensors, copies only after casting, no third random model."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import CogVideoXTransformer3DModel

from satb import SATBVR
from satb.build import build_controlnet, build_denoiser, cast_frozen, random_base
from satb.presets import get_preset

from .test_weights import cogvideox_folder  # noqa: F401 (the tiny CogVideoX folder fixture)

SPEC = get_preset("tiny")


def storages(module: torch.nn.Module) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in [*module.parameters(), *module.buffers()]}


def test_denoiser_takes_the_base_tensors_without_copying() -> None:
    torch.manual_seed(0)
    base = random_base(SPEC, 12)
    denoiser = build_denoiser(base, SPEC, lq_condition=True)
    assert storages(base) <= storages(denoiser)
    for name, value in base.state_dict().items():
        assert torch.equal(denoiser.state_dict()[name], value), name
    # Only the new modules own memory of their own, and nothing is left on the meta device.
    own = {id(p) for m in (denoiser.connectors, denoiser.control_patch_embed) for p in m.parameters()}
    shared = {id(p) for p in denoiser.parameters()} - own
    assert len(shared) == len(list(base.parameters()))
    assert not any(t.is_meta for t in [*denoiser.parameters(), *denoiser.buffers()])
    assert denoiser.config.enable_connector and denoiser.config.enable_control_patchemb


def test_denoiser_draws_no_random_weights_for_the_base_blocks(monkeypatch) -> None:
    """A third random 5.6 B model was drawn and thrown away before; now only the new LQ modules are initialized."""
    torch.manual_seed(0)
    base = random_base(SPEC, 12)
    drawn: list[int] = []
    original = torch.nn.Linear.reset_parameters

    def counting(self: torch.nn.Linear) -> None:
        if self.weight.device.type != "meta":
            drawn.append(self.weight.numel())
        original(self)

    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", counting)
    denoiser = build_denoiser(base, SPEC, lq_condition=True)
    new_linear = sum(
        m.weight.numel()
        for part in (denoiser.connectors, denoiser.control_patch_embed)
        for m in part.modules()
        if isinstance(m, torch.nn.Linear)
    )
    assert sum(drawn) == new_linear


def test_controlnet_copies_the_first_blocks_in_fp32_from_a_bf16_base() -> None:
    torch.manual_seed(0)
    base = random_base(SPEC, 12).to(torch.bfloat16)
    controlnet = build_controlnet(base, SPEC)
    assert all(p.dtype == torch.float32 for p in controlnet.parameters())
    assert not storages(base) & storages(controlnet)
    block = controlnet.transformer_blocks[0].state_dict()
    for name, value in base.transformer_blocks[0].state_dict().items():
        assert torch.equal(block[name], value.float()), name
    assert not any(t.is_meta for t in controlnet.parameters())


def test_cast_frozen_keeps_trainable_weights_in_fp32() -> None:
    layer = torch.nn.Linear(3, 3).to(torch.bfloat16)
    layer.bias.requires_grad_(False)
    cast_frozen([layer, None], torch.bfloat16)
    assert layer.weight.dtype == torch.float32 and layer.bias.dtype == torch.bfloat16


def test_pretrained_loads_in_the_frozen_dtype_and_copies_after(cogvideox_folder: Path, monkeypatch) -> None:  # noqa: F811
    asked: list[torch.dtype | None] = []
    original = CogVideoXTransformer3DModel.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        asked.append(kwargs.get("torch_dtype"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(CogVideoXTransformer3DModel, "from_pretrained", classmethod(recording))
    method = SATBVR(pretrained=str(cogvideox_folder), torch_dtype="bfloat16", lora={"rank": 4, "alpha": 4.0})
    assert asked == [torch.bfloat16]  # read once, already in bf16: no fp32 copy of the base ever exists
    frozen = [p for p in method.parameters() if not p.requires_grad]
    trainable = [p for p in method.parameters() if p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    # The predictor is its own copy; the denoiser holds the loaded tensors.
    assert not storages(method.predictor) & storages(method.denoiser)

    asked.clear()
    full = SATBVR(pretrained=str(cogvideox_folder), torch_dtype="bfloat16", denoiser_options={"finetune": "full"})
    assert asked == [torch.float32]  # a copy of the base trains fully: read in fp32, the frozen ones cast after
    assert all(p.dtype == torch.float32 for p in full.denoiser.parameters())
    assert all(p.dtype == torch.bfloat16 for n, p in full.predictor.named_parameters() if not p.requires_grad)
