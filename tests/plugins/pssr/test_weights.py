"""The authors' checkpoint layout (DiffSynth key names): a tiny model written in exactly that layout loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from safetensors.torch import load_file, save_file

from pssr import PSSR
from pssr.weights import diffsynth_to_diffusers, diffusers_to_diffsynth
from vsr_core.errors import PretrainedError

D, F, TEXT, FREQ, C, RANK, LAYERS = 128, 256, 16, 32, 48, 32, 3  # the tiny preset (PixelUnshuffle 4x4: 48 channels)


def diffsynth_dit(layers: int, with_fusion: bool = False) -> dict[str, tuple[int, ...]]:
    """DiffSynth ``WanModel`` (PS-SR: 2c input channels) keys and shapes, written from its module definitions."""
    keys = {
        "patch_embedding.weight": (D, 2 * C, 1, 2, 2),
        "patch_embedding.bias": (D,),
        "text_embedding.0.weight": (D, TEXT),
        "text_embedding.0.bias": (D,),
        "text_embedding.2.weight": (D, D),
        "text_embedding.2.bias": (D,),
        "time_embedding.0.weight": (D, FREQ),
        "time_embedding.0.bias": (D,),
        "time_embedding.2.weight": (D, D),
        "time_embedding.2.bias": (D,),
        "time_projection.1.weight": (6 * D, D),
        "time_projection.1.bias": (6 * D,),
        "head.head.weight": (4 * C, D),
        "head.head.bias": (4 * C,),
        "head.modulation": (1, 2, D),
    }
    for i in range(layers):
        for attn in ("self_attn", "cross_attn"):
            for p in "qkvo":
                keys[f"blocks.{i}.{attn}.{p}.weight"] = (D, D)
                keys[f"blocks.{i}.{attn}.{p}.bias"] = (D,)
            keys[f"blocks.{i}.{attn}.norm_q.weight"] = (D,)
            keys[f"blocks.{i}.{attn}.norm_k.weight"] = (D,)
        keys.update(
            {
                f"blocks.{i}.norm3.weight": (D,),
                f"blocks.{i}.norm3.bias": (D,),
                f"blocks.{i}.ffn.0.weight": (F, D),
                f"blocks.{i}.ffn.0.bias": (F,),
                f"blocks.{i}.ffn.2.weight": (D, F),
                f"blocks.{i}.ffn.2.bias": (D,),
                f"blocks.{i}.modulation": (1, 6, D),
            }
        )
        if with_fusion:
            keys[f"fc_layers.{i}.weight"] = (D, 2 * D)
            keys[f"fc_layers.{i}.bias"] = (D,)
    return keys


def diffsynth_base(layers: int) -> dict[str, tuple[int, ...]]:
    """``base.safetensors`` of train_base.py: peft LoRA (adapter ``default``) + patch embedding + head."""
    keys = {
        "patch_embedding.weight": (D, 2 * C, 1, 2, 2),
        "patch_embedding.bias": (D,),
        "head.head.weight": (4 * C, D),
        "head.head.bias": (4 * C,),
    }
    for i in range(layers):
        for attn in ("self_attn", "cross_attn"):
            for p in "qkvo":
                keys[f"blocks.{i}.{attn}.{p}.lora_A.default.weight"] = (RANK, D)
                keys[f"blocks.{i}.{attn}.{p}.lora_B.default.weight"] = (D, RANK)
        keys[f"blocks.{i}.ffn.0.lora_A.default.weight"] = (RANK, D)
        keys[f"blocks.{i}.ffn.0.lora_B.default.weight"] = (F, RANK)
        keys[f"blocks.{i}.ffn.2.lora_A.default.weight"] = (RANK, F)
        keys[f"blocks.{i}.ffn.2.lora_B.default.weight"] = (D, RANK)
    return keys


def write_release(folder: Path, draft_blocks: int = 1, drop: str | None = None) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    files = {}
    for name, spec in (("base", diffsynth_base(LAYERS)), ("draft", diffsynth_dit(draft_blocks, with_fusion=True))):
        state = {k: torch.randn(shape, generator=g) * 0.02 for k, shape in spec.items() if k != drop}
        save_file(state, str(folder / f"{name}.safetensors"))
        files[name] = state
    return files


def test_key_names_match_diffusers_own_converter():
    theirs = diffsynth_dit(2)
    converted = convert_wan_transformer_to_diffusers({k: torch.zeros(1) for k in theirs})
    ours = {diffsynth_to_diffusers(k) for k in theirs}
    assert ours == set(converted)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=8,
        attention_head_dim=16,
        in_channels=2 * C,
        out_channels=C,
        text_dim=TEXT,
        freq_dim=FREQ,
        ffn_dim=F,
        num_layers=2,
    )
    assert ours == set(model.state_dict())  # every diffusers key has its DiffSynth name, nothing else
    assert {diffusers_to_diffsynth(k) for k in ours} == set(theirs)  # and back
    assert diffsynth_to_diffusers("fc_layers.3.weight") == "fusion.3.weight"
    assert (
        diffsynth_to_diffusers("blocks.7.cross_attn.o.lora_B.default.weight", "base")
        == "blocks.7.attn2.to_out.0.lora_B.base.weight"
    )


def test_a_release_folder_loads_with_no_missing_or_unexpected_keys(tmp_path):
    files = write_release(tmp_path)
    method = PSSR(preset="tiny", pssr_weights=str(tmp_path))
    base, draft = files["base"], files["draft"]
    own = method.state_dict()
    assert torch.equal(
        own["transformer.blocks.1.attn2.to_k.lora_A.base.weight"], base["blocks.1.cross_attn.k.lora_A.default.weight"]
    )
    assert torch.equal(
        own["transformer.blocks.2.ffn.net.2.lora_B.base.weight"], base["blocks.2.ffn.2.lora_B.default.weight"]
    )
    assert torch.equal(own["base_io.patch_embedding.weight"], base["patch_embedding.weight"])
    assert torch.equal(own["base_io.proj_out.bias"], base["head.head.bias"])
    assert torch.equal(own["draft.fusion.0.weight"], draft["fc_layers.0.weight"])
    assert torch.equal(own["draft.transformer.blocks.0.norm2.weight"], draft["blocks.0.norm3.weight"])
    assert torch.equal(own["draft.transformer.scale_shift_table"], draft["head.modulation"])
    assert torch.equal(own["draft.transformer.blocks.0.scale_shift_table"], draft["blocks.0.modulation"])
    assert torch.equal(own["draft.transformer.condition_embedder.time_proj.weight"], draft["time_projection.1.weight"])


def test_export_writes_the_release_layout_back(tmp_path):
    files = write_release(tmp_path)
    method = PSSR(preset="tiny", pssr_weights=str(tmp_path))
    out = tmp_path / "again"
    method.export_pretrained(out)
    for name in ("base", "draft"):
        written = load_file(str(out / f"{name}.safetensors"))
        assert set(written) == set(files[name])
        for key, value in files[name].items():
            assert torch.equal(written[key], value), key


@pytest.mark.parametrize(
    "drop, pattern",
    [
        (
            "blocks.0.self_attn.q.lora_A.default.weight",
            r"base.safetensors does not fit.*1 missing \(e.g. blocks.0.self_attn.q.lora_A",
        ),
        ("fc_layers.0.bias", r"draft.safetensors does not fit.*1 missing \(e.g. fc_layers.0.bias"),
    ],
)
def test_a_missing_key_is_named(tmp_path, drop, pattern):
    write_release(tmp_path, drop=drop)
    with pytest.raises(PretrainedError, match=pattern):
        PSSR(preset="tiny", pssr_weights=str(tmp_path))


def test_a_draft_with_another_block_count_is_refused(tmp_path):
    write_release(tmp_path, draft_blocks=2)
    with pytest.raises(PretrainedError, match="has a draft of 2 blocks, this configuration keeps 1"):
        PSSR(preset="tiny", pssr_weights=str(tmp_path))


def test_missing_or_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(PretrainedError, match="base.safetensors does not exist"):
        PSSR(preset="tiny", pssr_weights=str(tmp_path))
    write_release(tmp_path)
    (tmp_path / "draft.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(PretrainedError, match="draft.safetensors cannot be read as safetensors"):
        PSSR(preset="tiny", pssr_weights=str(tmp_path))


def test_another_lora_rank_is_a_shape_error(tmp_path):
    write_release(tmp_path)
    with pytest.raises(PretrainedError, match=r"has shape \(32, 128\), this model expects \(16, 128\)"):
        PSSR(preset="tiny", pssr_weights=str(tmp_path), lora={"rank": 16, "alpha": 16.0})
