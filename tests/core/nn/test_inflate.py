"""Inflating a tiny diffusers UNet (saved and loaded back) to video: exact at init, trainable, names unchanged."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.utils import BaseOutput
from torch import nn

from vsr_core.errors import ConfigError
from vsr_core.nn import (
    TemporalConvBlock,
    TemporalSelfAttention,
    inflate_to_video,
    is_inflated,
    modules_of_type,
    output_channels,
    repeat_per_frame,
    run_on_frames,
    temporal_modules,
    temporal_parameters,
    temporal_state_dict,
)
from vsr_core.testing import assert_reproduces_image_model

B, T = 2, 3
TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (16, 32),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 16,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}
SITES = modules_of_type(Transformer2DModel, ResnetBlock2D, under=["down_blocks.0", "mid_block", "up_blocks.1"])


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("unet")
    UNet2DConditionModel(**TINY_UNET).save_pretrained(path)
    return path


def _load(path: Path) -> UNet2DConditionModel:
    return UNet2DConditionModel.from_pretrained(path).eval()


def _factory(zero_init: bool = True):
    def build(site):
        # Attention after transformers, convolution after resnets: both kinds of temporal module in one model.
        if isinstance(site.module, Transformer2DModel):
            return TemporalSelfAttention(site.channels, num_heads=4, zero_init=zero_init)
        return TemporalConvBlock(site.channels, norm_groups=8, zero_init=zero_init)

    return build


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(B * T, 4, 8, 8, generator=g)  # frames of B clips, row b*T + t
    timestep = repeat_per_frame(torch.tensor([10, 500]), T)
    text = repeat_per_frame(torch.randn(B, 5, 16, generator=g), T)
    return sample, timestep, text


def test_inflated_unet_equals_image_model_then_learns(unet_dir: Path) -> None:
    image = _load(unet_dir)
    video = inflate_to_video(_load(unet_dir), _factory(), after=SITES)
    assert set(temporal_modules(video)) == {
        "down_blocks.0.resnets.0",
        "down_blocks.0.attentions.0",
        "up_blocks.1.resnets.0",
        "up_blocks.1.resnets.1",
        "up_blocks.1.attentions.0",
        "up_blocks.1.attentions.1",
        "mid_block.attentions.0",
        "mid_block.resnets.0",
        "mid_block.resnets.1",
    }
    sample, timestep, text = _inputs()
    difference = assert_reproduces_image_model(
        video, image, sample, timestep, encoder_hidden_states=text, num_frames=T, atol=1e-6
    )
    assert difference <= 1e-6

    # One optimizer step on the temporal modules only.
    spatial_before = {k: v.clone() for k, v in image.state_dict().items()}
    optimizer = torch.optim.Adam(temporal_parameters(video), lr=1e-2)
    video.train()
    loss = F.mse_loss(video(sample, timestep, text, num_frames=T).sample, torch.randn_like(sample))
    loss.backward()
    optimizer.step()
    video.eval()
    state = video.state_dict()
    assert all(torch.equal(state[k], v) for k, v in spatial_before.items()), "a spatial weight moved"
    with torch.no_grad():
        moved = (video(sample, timestep, text, num_frames=T).sample - image(sample, timestep, text).sample).abs().max()
    assert moved > 1e-4
    with pytest.raises(AssertionError, match="differs from the image model"):
        assert_reproduces_image_model(video, image, sample, timestep, encoder_hidden_states=text, num_frames=T)


def test_state_dict_keeps_image_names_and_loads_image_weights(unet_dir: Path) -> None:
    image = _load(unet_dir)
    torch.manual_seed(5)
    fresh = UNet2DConditionModel(**TINY_UNET).eval()  # random weights, not the saved ones
    video = inflate_to_video(fresh, _factory(), after=SITES)
    image_keys, video_keys = set(image.state_dict()), set(video.state_dict())
    temporal_keys = set(temporal_state_dict(video))
    assert image_keys <= video_keys and video_keys - image_keys == temporal_keys
    assert all(".temporal." in k for k in temporal_keys)
    assert {n for n, _ in video.named_parameters()} >= {n for n, _ in image.named_parameters()}

    result = video.load_state_dict(image.state_dict(), strict=False)
    assert set(result.missing_keys) == temporal_keys and not result.unexpected_keys
    sample, timestep, text = _inputs(1)
    assert_reproduces_image_model(video, image, sample, timestep, encoder_hidden_states=text, num_frames=T)


def test_temporal_modules_mix_frames_of_a_clip_only(unet_dir: Path) -> None:
    video = inflate_to_video(_load(unet_dir), _factory(zero_init=False), after=SITES)
    image = _load(unet_dir)
    sample, timestep, text = _inputs()
    poked = sample.clone()
    poked[0] += 1.0  # frame 0 of clip 0
    with torch.no_grad():
        base = video(sample, timestep, text, num_frames=T).sample
        out = video(poked, timestep, text, num_frames=T).sample
        image_change = (image(poked, timestep, text).sample - image(sample, timestep, text).sample).abs()
    change = (out - base).abs().amax(dim=(1, 2, 3))
    assert change[1:T].min() > 1e-4  # frames 1, 2 of clip 0 see frame 0 now
    assert change[T:].max() <= 1e-6  # clip 1 is untouched
    assert image_change[1:].max() == 0  # the image model is per frame
    with pytest.raises(ValueError, match="does not split into clips of num_frames=4"):
        video(sample, timestep, text, num_frames=4)
    with pytest.raises(ValueError, match="call the inflated model with num_frames=T"):
        video(sample, timestep, text)


def test_activation_checkpointing_recomputes_the_same_clips(unet_dir: Path) -> None:
    plain = inflate_to_video(_load(unet_dir), _factory(zero_init=False), after=SITES).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.enable_gradient_checkpointing()
    sample, timestep, text = _inputs()
    grads = []
    for model in (plain, checkpointed):
        model(sample, timestep, text, num_frames=T).sample.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in temporal_parameters(model)]))
    assert grads[0].abs().max() > 0 and torch.allclose(grads[0], grads[1], atol=1e-6)


def test_deepcopy_is_an_independent_inflated_model(unet_dir: Path) -> None:
    video = inflate_to_video(_load(unet_dir), _factory(), after=SITES)
    twin = copy.deepcopy(video)
    assert is_inflated(twin)
    originals, copies = temporal_modules(video), temporal_modules(twin)
    assert all(originals[name] is not copies[name] for name in originals)
    with torch.no_grad():
        for p in temporal_parameters(twin):
            p.normal_()
    sample, timestep, text = _inputs()
    with torch.no_grad():
        reference = _load(unet_dir)(sample, timestep, text).sample
        assert torch.equal(video(sample, timestep, text, num_frames=T).sample, reference)
        assert not torch.allclose(twin(sample, timestep, text, num_frames=T).sample, reference, atol=1e-3)


class _Recorder(nn.Module):
    """A temporal module that records what it receives and adds the timestep it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[tuple[int, ...], dict]] = []

    def forward(self, video: torch.Tensor, **kwargs) -> torch.Tensor:
        self.calls.append((tuple(video.shape), kwargs))
        return video + kwargs.get("offset", 0.0)


def test_any_2d_module_by_name_with_temporal_kwargs() -> None:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.SiLU(), nn.Conv2d(6, 3, 1))
    reference = copy.deepcopy(net)
    recorder = _Recorder()
    attention = TemporalSelfAttention(6, num_heads=2, zero_init=False)
    modules = {"0": attention, "2": recorder}
    inflate_to_video(net, lambda site: modules[site.name], after=["0", "2"])
    frames = torch.randn(B * T, 3, 4, 4)
    out = net(frames, num_frames=T, temporal_kwargs={"offset": 0.5})
    # By hand: conv -> temporal attention on [B, 6, T, 4, 4] -> SiLU -> conv -> + 0.5.
    hidden = run_on_frames(attention, reference[0](frames), T)
    expected = reference[2](F.silu(hidden)) + 0.5
    assert torch.allclose(out, expected, atol=1e-6)
    assert recorder.calls == [((B, 3, T, 4, 4), {"offset": 0.5})]
    assert [s for s in temporal_modules(net)] == ["0", "2"] and output_channels(net[0]) == 6


class _TupleLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2, x


@dataclass
class _Output(BaseOutput):
    sample: torch.Tensor
    extra: torch.Tensor


class _OutputNet(nn.Module):
    """A 2D network whose layer returns a diffusers-style output dataclass (``.sample`` first)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = _OutputLayer()

    def forward(self, x: torch.Tensor) -> _Output:
        return self.layer(x)


class _OutputLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> _Output:
        return _Output(sample=x * 3, extra=x)


def test_tuple_and_output_dataclass_transform_the_first_item() -> None:
    net = nn.Sequential(_TupleLayer())
    inflate_to_video(net, lambda site: _Recorder(), after=["0"])
    x = torch.randn(B * T, 2, 1, 1)
    first, second = net(x, num_frames=T, temporal_kwargs={"offset": 1.0})
    assert torch.equal(first, x * 2 + 1) and torch.equal(second, x)
    output_net = inflate_to_video(_OutputNet(), lambda site: _Recorder(), after=["layer"])
    out = output_net(x, num_frames=T, temporal_kwargs={"offset": 1.0})
    assert isinstance(out, _Output) and torch.equal(out.sample, x * 3 + 1) and torch.equal(out.extra, x)


def test_site_channels_and_selection_errors(unet_dir: Path) -> None:
    unet = _load(unet_dir)
    assert output_channels(unet.get_submodule("down_blocks.0.attentions.0")) == 16
    assert output_channels(unet.get_submodule("down_blocks.1")) == 32
    assert output_channels(unet.get_submodule("up_blocks.1.resnets.0")) == 16
    assert output_channels(unet.get_submodule("mid_block")) == 32
    assert output_channels(nn.SiLU()) is None
    with pytest.raises(ConfigError, match="has no module named 'down_blocks.9'"):
        inflate_to_video(unet, _factory(), after=["down_blocks.9"])
    with pytest.raises(ConfigError, match="matches no module"):
        inflate_to_video(unet, _factory(), after=nn.Conv3d)
    inflate_to_video(unet, _factory(), after=["mid_block.attentions.0"])
    with pytest.raises(ConfigError, match="already has a child named 'temporal'"):
        inflate_to_video(unet, _factory(), after=["mid_block.attentions.0"])
    # Modules inside attached temporal modules are never sites of a later inflation.
    with pytest.raises(ConfigError, match="matches no module"):
        inflate_to_video(unet, _factory(), after=TemporalSelfAttention)
    # The other transformers: more sites on the same model, still one hook on the root.
    inflate_to_video(unet, _factory(), after=modules_of_type(Transformer2DModel, under=["down_blocks", "up_blocks"]))
    assert len(temporal_modules(unet)) == 4 and len(unet._forward_pre_hooks) == 1
    sample, timestep, text = _inputs()
    assert_reproduces_image_model(unet, _load(unet_dir), sample, timestep, text, num_frames=T)


def test_helper_rejects_renamed_or_changed_weights(unet_dir: Path) -> None:
    image = _load(unet_dir)
    sample, timestep, text = _inputs()

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unet = _load(unet_dir)

        def forward(self, *args, num_frames: int, **kwargs):
            return self.unet(*args, **kwargs)

    with pytest.raises(AssertionError, match="renamed or lost"):
        assert_reproduces_image_model(Wrapped(), image, sample, timestep, text, num_frames=T)
    changed = inflate_to_video(_load(unet_dir), _factory(), after=SITES)
    with torch.no_grad():
        changed.conv_in.bias.add_(1e-3)
    with pytest.raises(AssertionError, match="image weights differ"):
        assert_reproduces_image_model(changed, image, sample, timestep, text, num_frames=T)
