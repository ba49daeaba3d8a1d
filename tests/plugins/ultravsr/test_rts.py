"""RTS module (Eq. 5-8) pinned by value: the shift, both units by hand, zero-init identity, the release's names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ultravsr.rts import RTSAttentionUnit, RTSConvUnit, RTSModule, attention_width, conv_width
from vsr_core.errors import ConfigError
from vsr_core.nn import BlockwiseRunner


def _run(stages, frames, num_frames, frames_per_batch=None):
    return BlockwiseRunner(stages, frames_per_batch=frames_per_batch).run_frames({"x": frames}, num_frames)["x"]


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.3)


def test_release_widths_and_parameter_names():
    # RTSConvBlock: nhidden // (10 * 3) * 3; RTSAttenBlock: dim // (4 * 8 * 3) * (8 * 3) (release arithmetic).
    assert conv_width(320, 10) == 30 and conv_width(1280, 10) == 126 and conv_width(256, 10) == 24
    assert (
        attention_width(320, 4, 8) == 72 and attention_width(1280, 4, 8) == 312 and attention_width(512, 4, 8) == 120
    )
    shapes = {k: tuple(v.shape) for k, v in RTSModule(320).state_dict().items()}
    assert shapes == {
        "RTSConv.conv1.weight": (30, 320, 1, 1),
        "RTSConv.conv_blocks.0.weight": (30, 30, 3, 3),
        "RTSConv.conv_blocks.0.bias": (30,),
        "RTSConv.conv3.weight": (320, 30, 1, 1),
        "RTSAtten.temperature": (8, 1, 1),
        "RTSAtten.qkv.weight": (72, 320, 1, 1),
        "RTSAtten.qkv_dwconv.weight": (72, 1, 3, 3),
        "RTSAtten.qkv_dwconv.bias": (72,),
        "RTSAtten.project_out.weight": (320, 24, 1, 1),
    }


@pytest.mark.parametrize("middle", ["zero", "keep"])
def test_shift_gives_each_frame_the_thirds_of_its_neighbours(middle):
    unit = RTSConvUnit(9, reduction=1, middle=middle)  # 9 channels -> 9: thirds of 3
    with torch.no_grad():
        unit.conv1.weight.copy_(torch.eye(9)[:, :, None, None])  # reduce = identity, to read the shift itself
    b, t = 2, 4
    x = torch.randn(b * t, 9, 2, 3)
    stages = unit.stages("x")
    state = stages[0].module({"x": x})
    shifted = stages[1].module(state, num_frames=t)["_rts_f"].reshape(b, t, 9, 2, 3)
    clips = x.reshape(b, t, 9, 2, 3)
    for i in range(t):
        first = clips[:, i - 1, :3] if i > 0 else torch.zeros_like(clips[:, 0, :3])
        last = clips[:, i + 1, 6:] if i < t - 1 else torch.zeros_like(clips[:, 0, 6:])
        mid = clips[:, i, 3:6] if middle == "keep" else torch.zeros_like(clips[:, i, 3:6])
        assert torch.equal(shifted[:, i, :3], first)  # F_{i-1}^{-1}: from the previous frame, zeros at the start
        assert torch.equal(shifted[:, i, 6:], last)  # F_{i+1}^{1}: from the next frame, zeros at the end
        assert torch.equal(shifted[:, i, 3:6], mid)


@pytest.mark.parametrize("activation", ["silu", "relu"])
def test_conv_unit_by_hand(activation):
    unit = RTSConvUnit(6, reduction=1, activation=activation, middle="zero")
    _randomize(unit)
    b, t = 1, 3
    x = torch.randn(b * t, 6, 4, 4)
    f = F.conv2d(x, unit.conv1.weight).reshape(b, t, 6, 4, 4)
    agg = torch.zeros_like(f)
    agg[:, 1:, :2] = f[:, :-1, :2]
    agg[:, :-1, 4:] = f[:, 1:, 4:]
    act = F.silu if activation == "silu" else F.relu
    inner = act(F.conv2d(agg.reshape(b * t, 6, 4, 4), unit.conv_blocks[0].weight, unit.conv_blocks[0].bias, padding=1))
    expected = F.conv2d(inner, unit.conv3.weight) + x  # Eq. 6
    torch.testing.assert_close(_run(unit.stages("x"), x, t), expected)


@pytest.mark.parametrize("attention", ["channel", "spatial"])
def test_attention_unit_by_hand(attention):
    heads = 2
    unit = RTSAttentionUnit(12, reduction=1, heads=heads, attention=attention)
    _randomize(unit, seed=1)
    b, t, h, w = 1, 3, 2, 3
    x = torch.randn(b * t, 12, h, w)
    qkv = F.conv2d(F.conv2d(x, unit.qkv.weight), unit.qkv_dwconv.weight, unit.qkv_dwconv.bias, padding=1, groups=12)
    q, k, v = (part.reshape(t, heads, 2, h * w) for part in qkv.chunk(3, dim=1))
    out = torch.zeros(t, heads, 2, h * w)
    for i in range(t):
        for j in (i - 1, i, i + 1):  # Eq. 7: keys/values of the previous, own and next frame
            if not 0 <= j < t:
                continue  # zero padding: a missing neighbour contributes nothing
            for head in range(heads):
                qi, kj, vj = q[i, head], k[j, head], v[j, head]
                if attention == "channel":
                    qi, kj = F.normalize(qi, dim=-1), F.normalize(kj, dim=-1)
                    attn = torch.softmax(qi @ kj.T * unit.temperature[head], dim=-1)  # [c, c]
                    out[i, head] += attn @ vj
                else:
                    attn = torch.softmax(qi.T @ kj / 2**0.5, dim=-1)  # [hw, hw], r = 2 channels per head
                    out[i, head] += (attn @ vj.T).T
    expected = F.conv2d(out.reshape(t, 4, h, w), unit.project_out.weight) + x  # Eq. 8
    torch.testing.assert_close(_run(unit.stages("x"), x, t), expected, atol=1e-5, rtol=1e-5)


def test_zero_initialised_module_is_the_identity_and_learns_to_mix_frames():
    module = RTSModule(12, conv_reduction=1, attention_reduction=1, heads=2)
    x = torch.randn(2 * 7, 12, 3, 3)
    assert torch.equal(module(x, num_frames=7), x)
    _randomize(module)
    out = module(x, num_frames=7)
    changed = x.clone()
    changed[3] += 1.0  # frame 3 of clip 0
    delta = (module(changed, num_frames=7) - out).abs().flatten(1).amax(1)
    # The shift reaches one neighbour and the attention over shifted K/V one more: frames 1..5.
    assert (delta[1:6] > 0).all()
    assert delta[0] == 0 and delta[6] == 0  # three frames away
    assert delta[7:].max() == 0  # the other clip never sees it


def test_blockwise_equals_whole_clip():
    module = RTSModule(12, conv_reduction=1, attention_reduction=1, heads=2)
    _randomize(module, seed=3)
    x = torch.randn(2 * 5, 12, 4, 4)
    whole = _run(module.stages("x"), x, 5)
    for b in (1, 3):
        torch.testing.assert_close(_run(module.stages("x"), x, 5, frames_per_batch=b), whole)


@pytest.mark.parametrize(("middle", "attention"), [("zero", "channel"), ("keep", "spatial")])
def test_inplace_stage_equals_the_staged_module_and_writes_into_its_input(middle, attention):
    module = RTSModule(12, conv_reduction=1, attention_reduction=1, heads=2, middle=middle, attention=attention)
    _randomize(module, seed=5)
    x = torch.randn(2 * 5, 12, 4, 4)  # two clips of 5 frames: windows must not cross from one clip to the next
    whole = _run(module.stages("x"), x, 5)
    for b in (None, 1, 2, 5):
        frames = x.clone()
        seen: list[int] = []
        handle = module.RTSConv.conv_blocks[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
        with torch.no_grad():
            out = _run([module.inplace_stage("x", b)], frames, 5)
        handle.remove()
        torch.testing.assert_close(out, whole, atol=1e-5, rtol=1e-5)
        assert out.data_ptr() == frames.data_ptr()  # the residuals went into the input, no second copy
        assert max(seen) <= (5 if b is None else b)


def test_inplace_stage_refuses_autograd():
    module = RTSModule(12, conv_reduction=1, attention_reduction=1, heads=2)
    with pytest.raises(RuntimeError, match="inference"):
        _run([module.inplace_stage("x", 1)], torch.randn(5, 12, 4, 4), 5)


def test_units_that_do_not_fit_are_refused():
    with pytest.raises(ConfigError, match="no channels"):
        RTSConvUnit(8, reduction=10)
    with pytest.raises(ConfigError, match="no channels"):
        RTSAttentionUnit(64, reduction=4, heads=8)
    with pytest.raises(ConfigError, match="needs its convolution unit"):
        RTSModule(64, conv=False, attention_unit=False)
