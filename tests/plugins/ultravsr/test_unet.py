"""The staged SD UNet with RTS: diffusers' own output at zero init, the release's sites and LoRA rule, TAI."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from ultravsr.options import RELEASE_UNET_PATTERNS, RTSOptions
from ultravsr.presets import SD21_UNET, get_preset
from ultravsr.rts import RTSAttentionUnit, rts_factory
from ultravsr.unet import attach_unet_rts, check_sd_unet, release_unet_targets, run_unet, unet_rts_channels
from vsr_core.errors import PretrainedError

TINY = get_preset("tiny")


def _unet(seed: int = 0, **overrides) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**{**TINY.unet, **overrides}).eval()


def _inputs(b=2, t=3, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, TINY.unet["in_channels"], t, size, size, generator=g)
    ctx = torch.randn(b, 5, TINY.unet["cross_attention_dim"], generator=g)
    return x, torch.tensor([17, 930])[:b], ctx


def _diffusers(unet, x, timestep, ctx):
    b, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    out = unet(frames, timestep.repeat_interleave(t), encoder_hidden_states=ctx.repeat_interleave(t, 0)).sample
    return out.reshape(b, t, c, h, w).transpose(1, 2)


def _perturb_rts(unet, scale=0.2):
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "RTS" in name:
                p.add_(torch.randn(p.shape, generator=g) * scale)


@pytest.mark.parametrize("size", [8, 7])  # 7: not a multiple of the UNet's factor (upsample sizes forwarded)
def test_zero_initialised_rts_reproduces_diffusers(size):
    unet = _unet()
    x, timestep, ctx = _inputs(size=size)
    with torch.no_grad():
        reference = _diffusers(unet, x, timestep, ctx)
        attach_unet_rts(unet, rts_factory(RTSOptions(), TINY.rts))
        torch.testing.assert_close(run_unet(unet, x, timestep, ctx), reference, atol=1e-5, rtol=1e-5)
        _perturb_rts(unet)
        assert (run_unet(unet, x, timestep, ctx) - reference).abs().max() > 1e-3  # the RTS modules are in the path


def test_rts_sites_follow_the_release():
    # SD 2.1: after down blocks 320/640/1280/1280, before up blocks 1280/1280/1280/640; none at the mid block.
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD21_UNET)
    assert unet_rts_channels(unet) == ([320, 640, 1280, 1280], [1280, 1280, 1280, 640])
    attach_unet_rts(unet, rts_factory(RTSOptions(), get_preset("real").rts))
    names = {n.split(".RTS")[0] for n, _ in unet.named_parameters() if "RTS" in n}
    assert names == {f"video_down_RTS_blocks.{i}" for i in range(4)} | {f"video_up_RTS_blocks.{i}" for i in range(4)}


def test_rts_acts_on_the_down_output_not_on_the_skips():
    unet = _unet()
    attach_unet_rts(unet, rts_factory(RTSOptions(), TINY.rts))
    _perturb_rts(unet)
    seen = []
    unet.up_blocks[0].register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["res_hidden_states_tuple"]), with_kwargs=True
    )
    x, timestep, ctx = _inputs()
    with torch.no_grad():
        run_unet(unet, x, timestep, ctx)
        frames = x.transpose(1, 2).reshape(-1, *x.shape[1:2], *x.shape[3:])
        emb = unet.time_embedding(unet.time_proj(timestep.repeat_interleave(3)))
        block_out, _ = unet.down_blocks[0](hidden_states=unet.conv_in(frames), temb=emb)
        after_rts = unet.video_down_RTS_blocks[0](block_out, num_frames=3)
    # Up block 0 reads down block 0's output (the downsampler's) as its first skip: the block's own output.
    torch.testing.assert_close(seen[0][0], block_out)
    assert (after_rts - block_out).abs().max() > 1e-3


def test_tai_equals_whole_clip_and_spatial_calls_see_at_most_b_frames(monkeypatch):
    unet = _unet()
    attach_unet_rts(unet, rts_factory(RTSOptions(), TINY.rts))
    _perturb_rts(unet)
    x, timestep, ctx = _inputs(b=2, t=5)
    seen: list[int] = []
    spatial = [unet.conv_in, *unet.down_blocks, unet.mid_block, *unet.up_blocks, unet.conv_out]
    for module in spatial:
        module.register_forward_pre_hook(
            lambda m, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).shape[0]),
            with_kwargs=True,
        )
    attended: list[int] = []
    original = RTSAttentionUnit.attend
    monkeypatch.setattr(
        RTSAttentionUnit, "attend", lambda self, qkv, n: attended.append(qkv.shape[0]) or original(self, qkv, n)
    )
    with torch.no_grad():
        whole = run_unet(unet, x, timestep, ctx)
        assert max(seen) == 10 and set(attended) == {10}
        for b in (1, 3):
            seen.clear(), attended.clear()
            torch.testing.assert_close(
                run_unet(unet, x, timestep, ctx, frames_per_batch=b), whole, atol=2e-5, rtol=1e-5
            )
            assert max(seen) <= b  # every spatial layer: at most b frames per call
            assert set(attended) == {10}  # RTS propagation: the whole sequence (2 clips x 5 frames)


def test_release_lora_rule_on_sd21():
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD21_UNET)
    targets = release_unet_targets(unet, RELEASE_UNET_PATTERNS)
    counts = {k: len(v) for k, v in targets.items()}
    assert counts == {"default_encoder": 94, "default_decoder": 148, "default_others": 16}
    assert "conv_in" in targets["default_encoder"] and "conv_out" in targets["default_decoder"]
    assert "mid_block.attentions.0.transformer_blocks.0.attn1.to_q" in targets["default_others"]
    assert "down_blocks.0.resnets.0.time_emb_proj" not in sum(targets.values(), [])  # no pattern matches it
    assert not [m for m in sum(targets.values(), []) if "norm" in m]


def test_a_unet_that_is_not_sd_layout_is_refused():
    with pytest.raises(PretrainedError, match="class_embed_type"):
        check_sd_unet(_unet(class_embed_type="timestep"), "folder/unet")
