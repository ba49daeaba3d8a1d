"""The inflated UNet: it reproduces the image model at initialisation (Must show) and stops doing so after one step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.resnet import ResnetBlock2D

from diffvsr.msta import MultiScaleTemporalAttention
from diffvsr.presets import unet_config
from diffvsr.temporal_layers import ClipGroupNorm, TemporalModule
from diffvsr.unet import inflate_unet, resnet_3d_sites, temporal_parameter_names, video_unet_forward
from vsr_core.nn import TemporalConvBlock
from vsr_core.testing import assert_reproduces_image_model

B, T, S = 2, 4, 8


def _image_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(**unet_config("tiny")).eval()


def _frame_inputs(seed: int = 1) -> tuple[tuple, dict]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(B * T, 7, S, S, generator=g)
    t = torch.tensor([700] * T + [80] * T)  # one timestep per clip, repeated per frame (row b*T + t)
    kwargs = {
        "encoder_hidden_states": torch.randn(B, 5, 16, generator=g).repeat_interleave(T, 0),
        "class_labels": torch.tensor([50] * T + [200] * T),
    }
    return (frames, t), kwargs


def _temporal_types() -> tuple[type, ...]:
    return (TemporalConvBlock, TemporalModule, MultiScaleTemporalAttention)


def test_sites_are_the_release_layout():
    unet = _image_unet()
    # A 3D residual block before every spatial transformer: after the ResNet that feeds it.
    assert resnet_3d_sites(unet) == [
        "down_blocks.1.resnets.0", "down_blocks.2.resnets.0", "mid_block.resnets.0",
        "up_blocks.0.resnets.0", "up_blocks.0.resnets.1", "up_blocks.1.resnets.0", "up_blocks.1.resnets.1",
    ]  # fmt: skip
    inflate_unet(unet)
    names = {n for n, m in unet.named_modules() if isinstance(m, _temporal_types())}
    msta = {n for n in names if n.endswith(".msta")}
    # One MSTA per spatial transformer (each has one block), so one per 3D residual block.
    assert len(msta) == 7 and all(".transformer_blocks.0.msta" in n for n in msta)
    modules = {n for n in names if n.endswith(".temporal") and ".resnets." not in n}
    assert modules == {
        "down_blocks.0.temporal",
        "down_blocks.1.temporal",
        "down_blocks.2.temporal",
        "mid_block.temporal",
        "up_blocks.0.temporal",
        "up_blocks.1.temporal",
        "up_blocks.2.temporal",
    }


def test_inflated_unet_reproduces_the_image_model_and_one_step_changes_that():
    image = _image_unet()
    video = inflate_unet(copy.deepcopy(image)).eval()
    args, kwargs = _frame_inputs()
    difference = assert_reproduces_image_model(
        video, image, *args, num_frames=T, atol=1e-6, check_weights=False, **kwargs
    )
    assert difference == 0.0  # every temporal branch adds an exact zero
    # The weights: every image weight is there under its name and value; every new one belongs to a temporal layer.
    image_state, video_state = image.state_dict(), video.state_dict()
    assert all(torch.equal(image_state[k], video_state[k]) for k in image_state)
    temporal = {n for n, m in video.named_modules() if isinstance(m, _temporal_types())}
    extra = set(video_state) - set(image_state)
    assert extra and all(any(k.startswith(p + ".") for p in temporal) for k in extra)
    counted = sum(p.numel() for n, p in video.named_parameters() if n in temporal_parameter_names(video))
    by_type = sum(p.numel() for n, m in video.named_modules() if n in temporal for p in m.parameters())
    assert counted == by_type > 0

    # One optimizer step on the temporal layers only: the per-frame outputs change, the image weights do not.
    video.train()
    params = [p for n, p in video.named_parameters() if n in temporal_parameter_names(video)]
    optimizer = torch.optim.SGD(params, lr=0.5)
    target = torch.randn(B * T, 4, S, S)
    F.mse_loss(video(*args, num_frames=T, **kwargs).sample, target).backward()
    optimizer.step()
    video.eval()
    with pytest.raises(AssertionError, match="differs from the image model"):
        assert_reproduces_image_model(video, image, *args, num_frames=T, atol=1e-6, check_weights=False, **kwargs)
    assert all(torch.equal(image_state[k], video.state_dict()[k]) for k in image_state)


def test_video_forward_uses_the_frames_layout_and_repeats_conditioning_per_frame():
    image = _image_unet()
    video = inflate_unet(copy.deepcopy(image)).eval()
    g = torch.Generator().manual_seed(2)
    latents, low_res = torch.randn(B, 4, T, S, S, generator=g), torch.randn(B, 3, T, S, S, generator=g)
    t, text, levels = torch.tensor([700, 80]), torch.randn(B, 5, 16, generator=g), torch.tensor([50, 200])
    with torch.no_grad():
        out = video_unet_forward(video, latents, low_res, t, text, levels)
        for b in range(B):
            for f in range(T):
                x = torch.cat([latents[b : b + 1, :, f], low_res[b : b + 1, :, f]], dim=1)  # 4 latent + 3 LR channels
                expected = image(
                    x, t[b : b + 1], encoder_hidden_states=text[b : b + 1], class_labels=levels[b : b + 1]
                ).sample
                torch.testing.assert_close(out[b : b + 1, :, f], expected, rtol=1e-5, atol=1e-5)


def test_clip_group_norm_option_is_the_image_model_on_single_frames_only():
    image = _image_unet()
    video = inflate_unet(copy.deepcopy(image), {"group_norm": "clip"}).eval()
    clip_norms = [n for n, m in video.named_modules() if isinstance(m, ClipGroupNorm)]
    resnets = [m for n, m in video.named_modules() if isinstance(m, ResnetBlock2D)]
    assert all(isinstance(r.norm1, ClipGroupNorm) and isinstance(r.norm2, ClipGroupNorm) for r in resnets)
    assert "conv_norm_out" in clip_norms and not any(n.endswith("attentions.0.norm") for n in clip_norms)
    args, kwargs = _frame_inputs()
    frames, t = args
    single = {k: v[::T] for k, v in kwargs.items()}
    with torch.no_grad():
        one = video(frames[::T], t[::T], num_frames=1, **single).sample
        torch.testing.assert_close(one, image(frames[::T], t[::T], **single).sample, rtol=0, atol=1e-6)
        many = video(*args, num_frames=T, **kwargs).sample
    assert (many - image(*args, **kwargs).sample).abs().max() > 1e-3


def test_an_inflated_unet_needs_the_clip_length():
    video = inflate_unet(_image_unet())
    args, kwargs = _frame_inputs()
    with pytest.raises(ValueError, match="num_frames"):
        with torch.no_grad():
            video(*args, **kwargs)


def test_without_temporal_layers_it_is_the_image_model():
    image = _image_unet()
    video = inflate_unet(copy.deepcopy(image), {"resnet_3d": False, "temporal_modules": False, "msta": False}).eval()
    args, kwargs = _frame_inputs()
    assert set(video.state_dict()) == set(image.state_dict())
    assert assert_reproduces_image_model(video, image, *args, num_frames=T, check_weights=False, **kwargs) == 0.0
