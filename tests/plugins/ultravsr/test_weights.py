"""``model_vsr.pkl``: a tiny model written exactly as the release writes it loads with no missing or unexpected key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from peft import LoraConfig

from ultravsr import UltraVSR
from ultravsr.options import RTSOptions
from ultravsr.presets import get_preset
from ultravsr.rts import rts_factory
from ultravsr.unet import attach_unet_rts
from ultravsr.vae import attach_decoder_rts
from ultravsr.weights import RELEASE_FILE, read_release
from vsr_core.errors import PretrainedError
from vsr_core.export import export_method
from vsr_core.latent import AutoencoderKLCodec

TINY = get_preset("tiny")


def _release_unet_lists(unet):
    """``initialize_unet`` of the release, line by line (build_models.py at commit f3672761)."""
    enc, dec, others = [], [], []
    grep = ["to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut", "conv_out",
            "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj"]  # fmt: skip
    for n, _ in unet.named_parameters():
        if "bias" in n or "norm" in n:
            continue
        for pattern in grep:
            if pattern in n and ("down_blocks" in n or "conv_in" in n) and ("RTS" not in n):
                enc.append(n.replace(".weight", ""))
                break
            elif pattern in n and ("up_blocks" in n or "conv_out" in n) and ("RTS" not in n):
                dec.append(n.replace(".weight", ""))
                break
            elif pattern in n and ("RTS" not in n):
                others.append(n.replace(".weight", ""))
                break
    return enc, dec, others


def _release_vae_list(vae):
    """``initialize_vae`` of the release (its duplicates included)."""
    targets = []
    grep = ["conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "to_k", "to_q", "to_v", "to_out.0"]
    for n, _ in vae.named_parameters():
        if "bias" in n or "norm" in n:
            continue
        for pattern in grep:
            if pattern in n and ("encoder" in n) and ("RTS" not in n):
                targets.append(n.replace(".weight", ""))
            elif ("quant_conv" in n) and ("post_quant_conv" not in n) and ("RTS" not in n):
                targets.append(n.replace(".weight", ""))
    return targets


def write_release_file(path: Path, seed: int = 11) -> dict:
    """A tiny UltraVSR written the way the release saves ``model_vsr.pkl`` (peft adapters, RTS, conv_in)."""
    unet = UNet2DConditionModel(**TINY.unet)
    attach_unet_rts(unet, rts_factory(RTSOptions(), TINY.rts))
    enc, dec, others = _release_unet_lists(unet)
    for name, modules in (("default_encoder", enc), ("default_decoder", dec), ("default_others", others)):
        unet.add_adapter(LoraConfig(r=4, init_lora_weights="gaussian", target_modules=modules), adapter_name=name)
    vae = AutoencoderKL(**AutoencoderKLCodec.preset_config(TINY.vae_preset, TINY.vae_config))
    attach_decoder_rts(vae, rts_factory(RTSOptions(), TINY.rts))
    vae_modules = _release_vae_list(vae)
    vae.add_adapter(
        LoraConfig(r=4, init_lora_weights="gaussian", target_modules=vae_modules), adapter_name="default_encoder"
    )
    g = torch.Generator().manual_seed(seed)
    record = {
        "unet_lora_encoder_modules": enc,
        "unet_lora_decoder_modules": dec,
        "unet_lora_others_modules": others,
        "rank_unet": 4,
        "state_dict_unet": {
            n: torch.randn(p.shape, generator=g) * 0.05
            for n, p in unet.named_parameters()
            if "lora" in n or "conv_in" in n or "RTS" in n
        },
        "vae_lora_modules": vae_modules,
        "rank_vae": 4,
        "state_dict_vae": {
            n: torch.randn(p.shape, generator=g) * 0.05 for n, p in vae.named_parameters() if "lora" in n or "RTS" in n
        },
    }
    torch.save(record, path)
    return record


def test_the_release_layout_loads_with_every_key(tmp_path: Path):
    path = tmp_path / RELEASE_FILE
    record = write_release_file(path)
    unet_keys, vae_keys = record["state_dict_unet"], record["state_dict_vae"]
    # The layout's names, as the release's loader indexes them.
    assert "conv_in.base_layer.weight" in unet_keys and "conv_in.lora_A.default_encoder.weight" in unet_keys
    assert "video_down_RTS_blocks.0.RTSConv.conv1.weight" in unet_keys
    assert "up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.default_decoder.weight" in unet_keys
    assert "mid_block.resnets.0.conv1.lora_A.default_others.weight" in unet_keys
    assert "decoder.video_up_RTS_blocks.0.RTSAtten.temperature" in vae_keys
    assert (
        "encoder.conv_in.lora_A.default_encoder.weight" in vae_keys
        and "quant_conv.lora_B.default_encoder.weight" in vae_keys
    )

    method = UltraVSR(weights=str(path))
    unet_params, vae_params = dict(method.unet.named_parameters()), dict(method.codec.vae.named_parameters())
    for name, value in unet_keys.items():
        torch.testing.assert_close(unet_params[name], value, rtol=0, atol=0)
    for name, value in vae_keys.items():
        torch.testing.assert_close(vae_params[name], value, rtol=0, atol=0)
    # Every trained parameter of the generator came from the file (nothing left at its initial value).
    trainable = {n for n, p in method.unet.named_parameters() if p.requires_grad}
    assert trainable <= set(unet_keys)
    assert {n for n, p in method.codec.vae.named_parameters() if p.requires_grad} == set(vae_keys)


def test_export_writes_the_release_layout_and_reads_it_back(tmp_path: Path):
    source = tmp_path / RELEASE_FILE
    write_release_file(source)
    method = UltraVSR(weights=str(source)).eval()
    export_method(method, tmp_path / "export")
    exported = read_release(tmp_path / "export")
    original = torch.load(source, weights_only=True)
    assert set(exported["state_dict_unet"]) == set(original["state_dict_unet"])
    assert set(exported["state_dict_vae"]) == set(original["state_dict_vae"])
    assert sorted(exported["unet_lora_encoder_modules"]) == sorted(original["unet_lora_encoder_modules"])
    assert sorted(exported["vae_lora_modules"]) == sorted(set(original["vae_lora_modules"]))
    lq = torch.rand(1, 3, 3, 8, 8) * 2 - 1
    torch.testing.assert_close(UltraVSR(weights=str(tmp_path / "export")).eval().restore(lq), method.restore(lq))


def _corrupt(tmp_path: Path, change) -> Path:
    path = tmp_path / "bad.pkl"
    record = write_release_file(path)
    change(record)
    torch.save(record, path)
    return path


def test_keys_that_do_not_match_are_named(tmp_path: Path):
    extra = "down_blocks.0.resnets.0.conv9.lora_A.default_encoder.weight"
    path = _corrupt(tmp_path, lambda r: r["state_dict_unet"].update({extra: torch.zeros(1)}))
    with pytest.raises(PretrainedError, match=r"1 unexpected \(first: down_blocks\.0\.resnets\.0\.conv9"):
        UltraVSR(weights=str(path))
    gone = "video_up_RTS_blocks.1.RTSAtten.qkv.weight"
    path = _corrupt(tmp_path, lambda r: r["state_dict_unet"].pop(gone))
    with pytest.raises(PretrainedError, match=rf"1 missing \(first: {gone}"):
        UltraVSR(weights=str(path))
    path = _corrupt(tmp_path, lambda r: r.pop("state_dict_vae"))
    with pytest.raises(PretrainedError, match="has no 'state_dict_vae'"):
        UltraVSR(weights=str(path))


def test_ranks_targets_and_shapes_are_checked(tmp_path: Path):
    path = _corrupt(tmp_path, lambda r: r.update(rank_unet=8))
    with pytest.raises(PretrainedError, match="LoRA ranks 8"):
        UltraVSR(weights=str(path))
    path = _corrupt(tmp_path, lambda r: r["unet_lora_others_modules"].pop())
    with pytest.raises(PretrainedError, match="default_others LoRA targets differ"):
        UltraVSR(weights=str(path))
    key = "video_down_RTS_blocks.0.RTSConv.conv1.weight"
    path = _corrupt(tmp_path, lambda r: r["state_dict_unet"].update({key: torch.zeros(3, 3)}))
    with pytest.raises(PretrainedError, match=f"{key} has shape"):
        UltraVSR(weights=str(path))


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_pickle_with_other_globals_is_refused_before_anything_runs(tmp_path: Path, capsys):
    path = tmp_path / "evil.pkl"
    torch.save({"rank_unet": _Payload()}, path)
    with pytest.raises(PretrainedError) as error:
        UltraVSR(weights=str(path))
    assert "\n" not in str(error.value) and "code ran" not in capsys.readouterr().out
