"""DiffVSR's 3D layers by value: the release's ResnetBlock3DCNN and TemporalModule3D, shifted attention, clip norms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffvsr.temporal_layers import (
    ClipGroupNorm,
    ShiftedAttention,
    TemporalModule,
    TemporalResnet,
    use_clip_group_norm,
)
from diffvsr.video_context import VideoContext

B, C, T, H, W, D = 2, 16, 5, 4, 3, 12


def _video(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, C, T, H, W, generator=torch.Generator().manual_seed(seed))


def _randomise(module: nn.Module, seed: int = 3) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)


def _frame_group_norm(video: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """Per-frame group norm written out: statistics over (C/G, H, W) of each frame."""
    b, c, t, h, w = video.shape
    x = video.permute(0, 2, 1, 3, 4).reshape(b, t, norm.num_groups, c // norm.num_groups, h, w)
    mean = x.mean(dim=(3, 4, 5), keepdim=True)
    var = x.var(dim=(3, 4, 5), keepdim=True, unbiased=False)
    x = ((x - mean) / torch.sqrt(var + norm.eps)).reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
    return x * norm.weight.view(1, c, 1, 1, 1) + norm.bias.view(1, c, 1, 1, 1)


def test_temporal_resnet_by_value():
    block = TemporalResnet(C, kernel_size=5, temb_channels=D, groups=4)
    _randomise(block)
    x, temb = _video(), torch.randn(B, D)
    h = F.conv3d(F.silu(_frame_group_norm(x, block.norm1)), block.conv1.weight, block.conv1.bias, padding=(2, 0, 0))
    h = h + (F.silu(temb) @ block.time_emb_proj.weight.T + block.time_emb_proj.bias)[:, :, None, None, None]
    h = F.conv3d(F.silu(_frame_group_norm(h, block.norm2)), block.conv2.weight, block.conv2.bias, padding=(1, 0, 0))
    torch.testing.assert_close(block(x, temb), x + h, rtol=1e-4, atol=1e-4)
    assert block.conv1.kernel_size == (5, 1, 1) and block.conv2.kernel_size == (3, 1, 1)  # the release's kernels
    # Frames mix: changing frame 0 changes frames 0..3 (receptive field 2 + 1) and not frame 4.
    y = x.clone()
    y[:, :, 0] += 1
    changed = (block(y, temb) - block(x, temb)).abs().amax(dim=(0, 1, 3, 4)) > 0
    assert changed.tolist() == [True, True, True, True, False]


def test_temporal_module_is_the_identity_at_start_and_its_formula_after():
    context = VideoContext(num_frames=T)
    module = TemporalModule(C, D, context, groups=4)
    x, temb = _video(1), torch.randn(B, D)
    assert torch.equal(module(x, temb), x)
    assert not module.shift_conv.weight.any() and not module.shift_conv.bias.any()
    _randomise(module)
    frames = module.spatial_resnet(
        module.temporal_resnet(x, temb).transpose(1, 2).reshape(B * T, C, H, W), temb.repeat_interleave(T, 0)
    )
    out = F.conv2d(frames, module.shift_conv.weight, module.shift_conv.bias).reshape(B, T, C, H, W).transpose(1, 2)
    torch.testing.assert_close(module(x, temb), x + out, rtol=1e-4, atol=1e-4)
    # Inside the UNet the time embedding comes from the call's context (one row per frame, clip-major).
    context.time_embedding = temb.repeat_interleave(T, 0)
    torch.testing.assert_close(module(x), module(x, temb))


def test_shifted_attention_takes_half_of_keys_and_values_from_the_previous_frame():
    attention = ShiftedAttention(C)
    x = _video(2)
    assert torch.equal(attention(x), x)  # zero output projection
    _randomise(attention)
    tokens = x.permute(0, 2, 3, 4, 1).reshape(B, T, H * W, C)
    n = F.layer_norm(tokens, (C,), attention.norm.weight, attention.norm.bias)
    q, k, v = (n @ layer.weight.T for layer in (attention.to_q, attention.to_k, attention.to_v))
    half = C // 2
    k_shift, v_shift = k.clone(), v.clone()
    k_shift[:, :, :, :half] = torch.cat([torch.zeros_like(k[:, :1, :, :half]), k[:, :-1, :, :half]], dim=1)
    v_shift[:, :, :, :half] = torch.cat([torch.zeros_like(v[:, :1, :, :half]), v[:, :-1, :, :half]], dim=1)
    attended = torch.softmax(q @ k_shift.transpose(-1, -2) / C**0.5, dim=-1) @ v_shift
    out = tokens + attended @ attention.to_out.weight.T + attention.to_out.bias
    torch.testing.assert_close(attention(x), out.reshape(B, T, H, W, C).permute(0, 4, 1, 2, 3), rtol=1e-4, atol=1e-4)


def test_clip_group_norm_normalises_over_every_frame_of_a_clip():
    context = VideoContext(num_frames=T)
    plain = nn.GroupNorm(4, C)
    _randomise(plain)
    parent = nn.Sequential(plain)
    assert use_clip_group_norm(parent, context) == 1
    clip = parent[0]
    assert isinstance(clip, ClipGroupNorm) and clip.weight is plain.weight and clip.bias is plain.bias
    x = _video(4)
    frames = x.transpose(1, 2).reshape(B * T, C, H, W)
    expected = F.group_norm(x, 4, plain.weight, plain.bias, plain.eps)  # 5D: statistics over (C/G, T, H, W)
    torch.testing.assert_close(clip(frames), expected.transpose(1, 2).reshape(B * T, C, H, W))
    torch.testing.assert_close(clip(x), expected)
    assert not torch.allclose(plain(frames), clip(frames), atol=1e-3)  # per frame is something else
