"""SATB-VR weights: pretrained CogVideoX folders, the authors' release layout, checkpoints, full-size preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

from satb import SATBVR
from satb.presets import COGVIDEOX15_5B_TRANSFORMER, get_preset
from satb.weights import save_release
from vsr_core.diffusion.scheduler_config import PRESETS
from vsr_core.errors import CheckpointError, PretrainedError
from vsr_core.inference import LatentLayout
from vsr_core.latent import CogVideoXCodec

WORDS = ["a", "cat", "video", "cinematic", "painting", "high", "detail"]


def write_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(folder)


@pytest.fixture(scope="module")
def cogvideox_folder(tmp_path_factory) -> Path:
    """A tiny CogVideoX diffusers folder: transformer, vae, scheduler, text_encoder, tokenizer."""
    from transformers import T5Config, T5EncoderModel

    root = tmp_path_factory.mktemp("CogVideoX-tiny")
    torch.manual_seed(0)
    vae = CogVideoXCodec.tiny().vae
    vae.save_pretrained(root / "vae")
    channels = vae.config.latent_channels
    transformer = get_preset("tiny").transformer
    CogVideoXTransformer3DModel(**{**transformer, "in_channels": channels, "out_channels": channels}).save_pretrained(
        root / "transformer"
    )
    CogVideoXDDIMScheduler.from_config(
        {k: v for k, v in PRESETS["cogvideox"].items() if k != "_class_name"}
    ).save_pretrained(root / "scheduler")
    t5 = T5Config(vocab_size=16, d_model=transformer["text_embed_dim"], d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    T5EncoderModel(t5).save_pretrained(root / "text_encoder")
    write_tokenizer(root / "tokenizer")
    return root


def lq_clip(frames: int = 5, size: int = 4) -> torch.Tensor:
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def perturb_trainable(method: SATBVR) -> None:
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in method.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def test_pretrained_folder_loads_with_lora_and_t5(cogvideox_folder: Path) -> None:
    method = SATBVR(pretrained=str(cogvideox_folder), lora={"rank": 4, "alpha": 4.0})
    assert method.denoiser_options.finetune == "lora" and method.prompt_encoder.mode == "t5"
    assert method.frames_rule == (4, 1) and method.codec.spatial_factor == 8
    base = CogVideoXTransformer3DModel.from_pretrained(cogvideox_folder / "transformer")
    weight = method.denoiser.transformer_blocks[0].attn1.to_q.base_layer.weight
    assert torch.equal(weight, base.transformer_blocks[0].attn1.to_q.weight) and not weight.requires_grad
    trainable = {n.split(".")[0] for n, p in method.named_parameters() if p.requires_grad}
    assert trainable == {"predictor", "denoiser", "controlnet"}
    lora_only = [n for n, p in method.predictor.named_parameters() if p.requires_grad]
    assert lora_only and all(".lora_" in n for n in lora_only)
    out = method.eval().restore(
        lq_clip(),
        prompt=["a cat video"],
        num_inference_steps=2,
        guidance_scale=6.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == (1, 3, 5, 16, 16) and torch.isfinite(out).all()
    # 7 frames are not 4k+1: padded to 9 by repeating the last frame, cropped back, said once.
    assert "frames" not in method._said
    out = method.restore(lq_clip(frames=7, size=3), num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 7, 12, 12) and "frames" in method._said


def test_release_layout_round_trip(cogvideox_folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = SATBVR(pretrained=str(cogvideox_folder), lora={"rank": 4, "alpha": 4.0})
    perturb_trainable(first)
    release = save_release(first, tmp_path / "SATB-VR")
    for relative in (
        "controlnet/config.json",
        "controlnet/diffusion_pytorch_model.safetensors",
        "lora_transformer/pytorch_lora_weights.safetensors",
        "lora_predictor/pytorch_lora_weights.safetensors",
        "connectors.pt",
        "control_patch_embed.pt",
        "prompt_embeds.pt",
        "negative_prompt_embeds.pt",
    ):
        assert (release / relative).is_file(), relative
    config = json.loads((release / "controlnet/config.json").read_text())
    assert config["_class_name"] == "CogVideoXControlnet" and config["num_layers"] == 1
    connectors = torch.load(release / "connectors.pt", weights_only=True)
    assert "0.h_to_q.0.weight" in connectors and "0.c_mlp.2.weight" in connectors and "0.norm_q.weight" in connectors
    embed = torch.load(release / "control_patch_embed.pt", weights_only=True)
    assert {"text_proj.weight", "proj.weight", "res_block.0.time_mixer.mix_factor"} <= set(embed)
    assert "res_block.2.spatial_res_block.conv_shortcut.weight" in embed

    second = SATBVR(
        pretrained=str(cogvideox_folder),
        satb_weights=str(release),
        text={"encoder": "precomputed"},
        lora={"rank": 4, "alpha": 4.0},
    )
    ours = {n: p for n, p in first.named_parameters() if p.requires_grad}
    theirs = dict(second.named_parameters())
    assert set(ours) == {n for n, p in second.named_parameters() if p.requires_grad}
    for name, value in ours.items():
        torch.testing.assert_close(theirs[name], value, msg=name)
    lq = lq_clip()
    a = first.eval().restore(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    b = second.eval().restore(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)


def test_release_layout_problems_are_named(cogvideox_folder: Path, tmp_path: Path) -> None:
    first = SATBVR(pretrained=str(cogvideox_folder), lora={"rank": 4, "alpha": 4.0})
    release = save_release(first, tmp_path / "SATB-VR")
    (release / "connectors.pt").unlink()
    with pytest.raises(PretrainedError, match="connectors.pt is missing"):
        SATBVR(pretrained=str(cogvideox_folder), satb_weights=str(release))
    state = first.denoiser.connectors.state_dict()
    state["99.c_mlp.2.weight"] = state["0.c_mlp.2.weight"]
    torch.save(state, release / "connectors.pt")
    with pytest.raises(PretrainedError, match="unexpected"):
        SATBVR(pretrained=str(cogvideox_folder), satb_weights=str(release))
    with pytest.raises(PretrainedError, match="does not exist"):
        SATBVR(pretrained=str(cogvideox_folder), satb_weights=str(tmp_path / "nowhere"))


def test_frozen_pretrained_weights_stay_out_of_checkpoints(cogvideox_folder: Path) -> None:
    method = SATBVR(pretrained=str(cogvideox_folder), lora={"rank": 4, "alpha": 4.0})
    perturb_trainable(method)
    checkpoint = {"state_dict": method.state_dict()}
    method.on_save_checkpoint(checkpoint)
    saved = set(checkpoint["state_dict"])
    assert not any(k.endswith("base_layer.weight") for k in saved) and any(".lora_A." in k for k in saved)
    fresh = SATBVR(pretrained=str(cogvideox_folder), lora={"rank": 4, "alpha": 4.0})
    fresh.load_state_dict(checkpoint["state_dict"])
    torch.testing.assert_close(
        fresh.eval().restore(lq_clip(), num_inference_steps=1, generator=torch.Generator().manual_seed(0)),
        method.eval().restore(lq_clip(), num_inference_steps=1, generator=torch.Generator().manual_seed(0)),
    )
    del checkpoint["state_dict"][next(k for k in saved if ".lora_A." in k)]
    with pytest.raises(CheckpointError, match="missing"):
        fresh.load_state_dict(checkpoint["state_dict"])


def test_pretrained_folder_problems_are_named(cogvideox_folder: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(cogvideox_folder, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(PretrainedError, match="vae"):
        SATBVR(pretrained=str(broken))
    shutil.copytree(cogvideox_folder / "vae", broken / "vae")
    shutil.rmtree(broken / "transformer")
    with pytest.raises(PretrainedError, match="transformer"):
        SATBVR(pretrained=str(broken))
    with pytest.raises(PretrainedError, match="scheduler"):
        SATBVR(pretrained=str(broken / "vae"))
    with pytest.raises(PretrainedError, match="does not exist"):
        SATBVR(pretrained=str(tmp_path / "nothing-here"))


def block_parameters(d: int, head_dim: int, time_dim: int) -> int:
    """One CogVideoX block: 2 adaptive LayerNorm-Zero, attention with QK LayerNorm, 4x GELU FFN."""
    norm_zero = time_dim * 6 * d + 6 * d + 2 * d
    attention = 4 * (d * d + d) + 2 * 2 * head_dim
    ffn = (d * 4 * d + 4 * d) + (4 * d * d + d)
    return 2 * norm_zero + attention + ffn


def test_real_preset_matches_cogvideox15_5b_on_meta() -> None:
    cfg = COGVIDEOX15_5B_TRANSFORMER
    d, head, time_dim, layers = 3072, cfg["attention_head_dim"], cfg["time_embed_dim"], cfg["num_layers"]
    assert cfg["num_attention_heads"] * head == d
    patch_in = cfg["in_channels"] * cfg["patch_size"] ** 2 * cfg["patch_size_t"]
    embeddings = (
        (patch_in * d + d)
        + (cfg["text_embed_dim"] * d + d)
        + (d * time_dim + time_dim)
        + (time_dim * time_dim + time_dim)
    )
    head_out = 2 * d + (time_dim * 2 * d + 2 * d) + 2 * d + (d * patch_in + patch_in)
    base = embeddings + layers * block_parameters(d, head, time_dim) + head_out
    assert base == 5_570_676_352  # CogVideoX1.5-5B's transformer: 5.57 B parameters

    with torch.device("meta"):
        method = SATBVR(preset="real")
    report = method.parameter_report()
    print(
        {
            name: f"{total / 1e9:.3f}B total, {trainable / 1e9:.3f}B trainable"
            for name, (total, trainable) in report.items()
        }
    )
    lora = layers * 64 * (4 * 2 * d + 2 * (d + 4 * d))  # rank 64 on q, k, v, out and both FFN projections
    assert report["predictor"] == (base + lora, lora)
    connector = 4 * (d * 512 + 512 + 512 * d + d) + 2 * 2 * (d // 48)
    embed = sum(p.numel() for p in method.denoiser.control_patch_embed.parameters())
    assert report["denoiser"] == (base + lora + layers * connector + embed, lora + layers * connector + embed)
    controlnet = embeddings + 6 * block_parameters(d, head, time_dim) + embed
    assert report["controlnet"] == (controlnet, controlnet)
    trainable = sum(p.numel() for p in method.parameters() if p.requires_grad)
    assert trainable == 2 * lora + layers * connector + embed + controlnet
    assert method.codec.spatial_factor == 8 and method.codec.temporal_factor == 4 and method.frames_rule == (4, 1)
    # the release's 1024-px tiles with stride 768, in LQ pixels at x4
    assert (method.native_tile, method.native_tile_overlap) == (256, 64)
    # latent tiles in whole 2x2 patches of the causal 4x8x8 VAE; 81-frame windows 64 frames apart (80/64)
    assert method.latent_layout == LatentLayout(
        16, temporal_factor=4, spatial_factor=8, causal=True, latent_multiple=2
    )
    assert (method.temporal_window, method.temporal_overlap) == (81, 16)
    assert all(not any(p.requires_grad for p in m.parameters()) for m in (method.codec,))


def test_absent_prompt_is_the_empty_prompt_plus_the_template_said_once(cogvideox_folder: Path, caplog) -> None:
    """No CogVLM2 captioner here: no caption means the empty prompt + the release's quality template, said once."""
    from satb.text import POSITIVE_TEMPLATE

    method = SATBVR(pretrained=str(cogvideox_folder), lora={"rank": 4, "alpha": 4.0}, sampling={"guidance_scale": 1.0})
    texts = []
    original = method._denoise
    method._denoise = lambda x, t, x_lq, text, rotary: texts.append(text) or original(x, t, x_lq, text, rotary)
    caplog.set_level("INFO")
    for _ in range(2):
        method.eval().restore(lq_clip(), num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    said = [r.getMessage() for r in caplog.records if "no caption" in r.getMessage()]
    message = "no caption given (the release captions with CogVLM2, not part of vsr): empty prompt + the release's"
    assert said == [f"SATB-VR: {message} quality template"]
    expected = method.prompt_encoder.encoder.encode([POSITIVE_TEMPLATE])
    torch.testing.assert_close(texts[0], expected, rtol=0, atol=0)


def test_full_size_module_names_and_shapes_are_the_release_classes() -> None:
    """The state-dict names and shapes of connectors.pt, control_patch_embed.pt and controlnet/ (JSON fixture)."""
    release = json.loads((Path(__file__).parent / "fixtures" / "release_modules.json").read_text())
    with torch.device("meta"):
        method = SATBVR(preset="real")

    def shapes(module: torch.nn.Module) -> dict[str, list[int]]:
        return {name: list(tensor.shape) for name, tensor in module.state_dict().items()}

    connectors = method.denoiser.connectors
    assert len(connectors) == release["connectors"]["count"]
    for connector in connectors:
        assert shapes(connector) == release["connectors"]["each"]
    assert shapes(method.denoiser.control_patch_embed) == release["control_patch_embed"]
    controlnet = shapes(method.controlnet)
    blocks = {k: v for k, v in controlnet.items() if k.startswith("transformer_blocks.")}
    assert {k: v for k, v in controlnet.items() if k not in blocks} == release["controlnet"]["outside_blocks"]
    assert {int(k.split(".")[1]) for k in blocks} == set(range(release["controlnet"]["num_layers"]))
    base_block = shapes(method.denoiser.transformer_blocks[0])
    assert {k.split(".", 2)[2]: v for k, v in blocks.items() if k.startswith("transformer_blocks.0.")} == {
        k.replace(".base_layer", ""): v for k, v in base_block.items() if ".lora_" not in k
    }
