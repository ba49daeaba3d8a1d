"""MSTA (Eq. 3-4, release reading): identity at initialisation, each term by value, its place in a block."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock

from diffvsr.msta import MultiScaleTemporalAttention, TimestepAdaLayerNorm, attach_msta
from diffvsr.video_context import VideoContext

B, T, H, W, C = 2, 3, 6, 4, 32


def _tokens(seed: int = 0, height: int = H, width: int = W) -> torch.Tensor:
    return torch.randn(B * T, height * width, C, generator=torch.Generator().manual_seed(seed))


def _randomise(module: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)


def _sequence(x: torch.Tensor) -> torch.Tensor:  # [B*T, S, C] -> [B*S, T, C]
    return x.reshape(B, T, -1, C).transpose(1, 2).reshape(-1, T, C)


def _tokens_of(x: torch.Tensor, s: int) -> torch.Tensor:
    return x.reshape(B, s, T, C).transpose(1, 2).reshape(B * T, s, C)


def _delta_by_hand(m: MultiScaleTemporalAttention, h: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """h' - h with h' = h_ori + alpha UPConv(h_down) (Eq. 3-4, release reading), from the module's weights."""
    full = _tokens_of(m.attention(F.layer_norm(_sequence(h), (C,), m.norm.weight, m.norm.bias)), height * width)
    grid = h.transpose(1, 2).reshape(B * T, C, height, width)
    down = F.conv2d(grid, m.down_conv.weight, m.down_conv.bias, stride=2, padding=1)
    sh, sw = down.shape[-2:]
    down_tokens = down.flatten(2).transpose(1, 2)
    attended = m.attention_small(F.layer_norm(_sequence(down_tokens), (C,), m.norm_small.weight, m.norm_small.bias))
    h_down = _tokens_of(attended, sh * sw) + down_tokens
    up = F.conv_transpose2d(
        h_down.transpose(1, 2).reshape(B * T, C, sh, sw), m.up_conv.weight, m.up_conv.bias, stride=2, padding=1
    )
    if up.shape[-2:] != (height, width):
        up = F.interpolate(up, size=(height, width), mode="bilinear", align_corners=False)
    return full + 0.5 * up.flatten(2).transpose(1, 2)


def test_msta_starts_as_exactly_the_identity():
    torch.manual_seed(0)
    msta = MultiScaleTemporalAttention(C, heads=1)
    assert torch.equal(msta(_tokens(), T, H, W), torch.zeros(B * T, H * W, C))
    # The image model's forward is untouched because both attention outputs and UPConv are zero, weights and biases.
    for layer in (msta.attention.to_out, msta.attention_small.to_out, msta.up_conv):
        assert not layer.weight.any() and not layer.bias.any()
    # DConv is not zero: the half-resolution branch learns once UPConv has moved.
    assert msta.down_conv.weight.any()


@pytest.mark.parametrize("size", [(H, W), (5, 3)], ids=["even", "odd"])
def test_msta_by_value(size):
    height, width = size
    msta = MultiScaleTemporalAttention(C, heads=1)
    _randomise(msta)
    h = _tokens(1, height, width)
    torch.testing.assert_close(msta(h, T, height, width), _delta_by_hand(msta, h, height, width), rtol=1e-4, atol=1e-4)


def test_msta_alpha_weights_the_half_resolution_branch():
    one = MultiScaleTemporalAttention(C, heads=1, alpha=1.0)
    _randomise(one)
    zero = MultiScaleTemporalAttention(C, heads=1, alpha=0.0)
    zero.load_state_dict(one.state_dict())
    h = _tokens(2)
    half = MultiScaleTemporalAttention(C, heads=1)
    half.load_state_dict(one.state_dict())
    torch.testing.assert_close(half(h, T, H, W), (one(h, T, H, W) + zero(h, T, H, W)) / 2, rtol=1e-5, atol=1e-5)


def test_ada_norm_is_layer_norm_modulated_by_the_timestep():
    norm = TimestepAdaLayerNorm(C)
    x = torch.randn(B * 4, T, C)
    timestep = torch.tensor([10, 900])
    torch.testing.assert_close(norm(x, timestep), F.layer_norm(x, (C,)))  # zero-initialised modulation
    _randomise(norm)
    scale, shift = norm.linear(F.silu(norm.emb(timestep))).chunk(2, dim=-1)
    expected = (
        F.layer_norm(x, (C,)) * (1 + scale.repeat_interleave(4, 0)[:, None]) + shift.repeat_interleave(4, 0)[:, None]
    )
    torch.testing.assert_close(norm(x, timestep), expected)
    msta = MultiScaleTemporalAttention(C, heads=1, norm="ada")
    with pytest.raises(ValueError, match="timestep"):
        msta(_tokens(), T, H, W)


def test_attached_msta_runs_after_cross_attention_before_the_feed_forward():
    torch.manual_seed(0)
    block = BasicTransformerBlock(C, 1, C, cross_attention_dim=8).eval()
    x, text = _tokens(3), torch.randn(B * T, 5, 8)
    image = copy.deepcopy(block)  # without MSTA's hooks
    with torch.no_grad():
        plain = block(x, encoder_hidden_states=text)
    context = VideoContext(num_frames=T, spatial_size=(H, W))
    msta = MultiScaleTemporalAttention(C, heads=1)
    attach_msta(block, msta, context)
    with torch.no_grad():
        assert torch.equal(block(x, encoder_hidden_states=text), plain)  # identity at initialisation
        _randomise(msta)
        h1 = image.attn1(image.norm1(x)) + x
        h2 = image.attn2(image.norm2(h1), encoder_hidden_states=text) + h1
        h3 = h2 + _delta_by_hand(msta, h2, H, W)
        expected = image.ff(image.norm3(h3)) + h3
        torch.testing.assert_close(block(x, encoder_hidden_states=text), expected, rtol=1e-4, atol=1e-4)
    assert any(k.startswith("msta.") for k in block.state_dict())
