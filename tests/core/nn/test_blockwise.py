"""Block-wise runner: whole-clip results, with no spatial call seeing more than frames_per_batch frames."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vsr_core.errors import ConfigError
from vsr_core.nn import (
    BlockwiseRunner,
    TemporalSelfAttention,
    TemporalShift,
    frames_to_video,
    spatial,
    temporal,
    temporal_shift,
    video_to_frames,
)

B, C, T, H, W = 2, 3, 5, 4, 4


def _frame_net(cin: int, cout: int) -> nn.Module:
    # Per-frame layers only (GroupNorm normalises each frame on its own).
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(2, cout), nn.SiLU())


class _Model(nn.Module):
    """spatial, spatial -> temporal attention -> spatial -> temporal shift -> spatial."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc1, self.enc2, self.mid = _frame_net(C, 6), _frame_net(6, 6), _frame_net(6, 6)
        self.attention = TemporalSelfAttention(6, num_heads=2, zero_init=False)
        self.shift = TemporalShift(fold_div=3, direction="both")
        self.dec = nn.Conv2d(6, C, 1)
        self.calls: dict[str, list[tuple[int, ...]]] = {}
        for name in ("enc1", "enc2", "mid", "dec", "attention", "shift"):
            getattr(self, name).register_forward_pre_hook(self._record(name))

    def _record(self, name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            self.calls.setdefault(name, []).append(tuple(args[0].shape))

        return hook

    def stages(self) -> list:
        return [
            spatial(self.enc1),
            spatial(self.enc2),
            temporal(self.attention),
            spatial(self.mid),
            temporal(self.shift),
            spatial(self.dec),
        ]

    def whole_clip(self, video: torch.Tensor) -> torch.Tensor:
        """The same network written out by hand, every layer on all frames at once."""
        num_frames = video.shape[2]
        h = self.enc2(self.enc1(video_to_frames(video)))
        h = self.mid(video_to_frames(self.attention(frames_to_video(h, num_frames))))
        h = video_to_frames(self.shift(frames_to_video(h, num_frames)))
        return frames_to_video(self.dec(h), num_frames)


def _video(frames: int = T, batch: int = B) -> torch.Tensor:
    return torch.randn(batch, C, frames, H, W, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("frames_per_batch", [1, 3, 4, 64])
def test_equals_whole_clip_with_bounded_spatial_calls(frames_per_batch: int) -> None:
    model = _Model()
    video = _video()
    with torch.no_grad():
        expected = model.whole_clip(video)
        model.calls.clear()
        out = BlockwiseRunner(model.stages(), frames_per_batch=frames_per_batch)(video)
    assert torch.allclose(out, expected, atol=1e-5)
    rows = B * T
    for name in ("enc1", "enc2", "mid", "dec"):
        sizes = [shape[0] for shape in model.calls[name]]
        assert max(sizes) <= frames_per_batch, (name, sizes)
        assert sum(sizes) == rows and len(sizes) == -(-rows // frames_per_batch)
    # Temporal modules see every frame of every clip, once.
    assert model.calls["attention"] == [(B, 6, T, H, W)] and model.calls["shift"] == [(B, 6, T, H, W)]


def test_whole_clip_mode_and_interleaving() -> None:
    model = _Model()
    video = _video()
    with torch.no_grad():
        BlockwiseRunner(model.stages(), frames_per_batch=None)(video)
    assert all(shape[0] == B * T for name in ("enc1", "dec") for shape in model.calls[name])
    # enc1 and enc2 are fused: each mini-batch goes through both before the next starts.
    order: list[str] = []
    model = _Model()
    for name in ("enc1", "enc2"):
        getattr(model, name).register_forward_pre_hook(lambda m, a, n=name: order.append(n))
    with torch.no_grad():
        BlockwiseRunner(model.stages(), frames_per_batch=4)(video)
    assert order == ["enc1", "enc2"] * 3


def test_temporal_stages_see_across_mini_batches() -> None:
    """Processing each mini-batch as its own clip (the scheme TAI replaces) gives a different result."""
    model = _Model()
    video = _video(frames=6, batch=1)
    runner = BlockwiseRunner(model.stages(), frames_per_batch=3)
    with torch.no_grad():
        blockwise = runner(video)
        separate = torch.cat([runner(video[:, :, :3]), runner(video[:, :, 3:])], dim=2)
    assert torch.allclose(blockwise, model.whole_clip(video), atol=1e-5)
    assert (blockwise - separate).abs().max() > 1e-3


def test_gradients_match_whole_clip() -> None:
    model = _Model()
    video = _video()
    grads = []
    for run in (model.whole_clip, BlockwiseRunner(model.stages(), frames_per_batch=3)):
        model.zero_grad()
        run(video).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_structured_state_and_frames_layout() -> None:
    """A U-Net-like state: features and a skip, both per frame; the temporal stage works on the frames layout."""
    torch.manual_seed(2)
    enc, dec = nn.Conv2d(C, 6, 3, padding=1), nn.Conv2d(6, C, 1)
    seen: list[int] = []

    def encode(frames: torch.Tensor) -> dict[str, torch.Tensor]:
        seen.append(frames.shape[0])
        feats = enc(frames)
        return {"h": feats, "skip": feats * 0.5}

    def propagate(state: dict[str, torch.Tensor], num_frames: int) -> dict[str, torch.Tensor]:
        h = temporal_shift(state["h"], fold_div=3, direction="both", num_frames=num_frames)
        return {"h": h, "skip": state["skip"]}

    def decode(state: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.append(state["h"].shape[0])
        return dec(state["h"] + state["skip"])

    video = _video()
    stages = [spatial(encode), temporal(propagate, layout="frames"), spatial(decode)]
    with torch.no_grad():
        out = BlockwiseRunner(stages, frames_per_batch=2)(video)
        feats = enc(video_to_frames(video))
        shifted = temporal_shift(feats, fold_div=3, direction="both", num_frames=T)
        expected = frames_to_video(dec(shifted + feats * 0.5), T)
    assert torch.allclose(out, expected, atol=1e-5) and max(seen) == 2


def test_structured_states_are_assembled_in_place_with_gradients() -> None:
    """Tuples, dicts and plain values in a state: the mini-batch results fill one output; gradients still flow."""
    torch.manual_seed(3)
    conv = nn.Conv2d(C, 4, 3, padding=1)

    def split(frames: torch.Tensor) -> dict:
        h = conv(frames)
        return {"h": h, "skips": (h * 2, h.square()), "size": (H, W)}

    def propagate(state: dict, num_frames: int) -> dict:
        return {**state, "h": temporal_shift(state["h"], fold_div=2, direction="right", num_frames=num_frames)}

    def merge(state: dict) -> torch.Tensor:
        assert state["size"] == (H, W)  # plain values pass through untouched
        return state["h"] + state["skips"][0] - state["skips"][1]

    video = _video().requires_grad_()
    stages = [spatial(split), temporal(propagate, layout="frames"), spatial(merge)]
    grads, outs = [], []
    for b in (None, 2, 3):
        conv.zero_grad()
        video.grad = None
        out = BlockwiseRunner(stages, frames_per_batch=b)(video)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append((video.grad.clone(), conv.weight.grad.clone()))
    for out, (g_video, g_weight) in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(out, outs[0])
        torch.testing.assert_close(g_video, grads[0][0])
        torch.testing.assert_close(g_weight, grads[0][1], atol=1e-4, rtol=1e-5)  # summed in another order


def test_bad_arguments() -> None:
    model = _Model()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="frames_per_batch must be a positive number of frames"):
            BlockwiseRunner(model.stages(), frames_per_batch=bad)
    with pytest.raises(ValueError, match=r"expects a video \[B, C, T, H, W\]"):
        BlockwiseRunner(model.stages(), frames_per_batch=2)(video_to_frames(_video()))
    with pytest.raises(ValueError, match="use layout='frames'"):
        BlockwiseRunner([spatial(lambda x: (x, x)), temporal(model.shift)], frames_per_batch=2)(_video())
    with pytest.raises(ValueError, match="non-empty list"):
        BlockwiseRunner([model.enc1], frames_per_batch=2)
