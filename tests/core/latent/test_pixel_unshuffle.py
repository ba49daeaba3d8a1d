"""PixelUnshuffleCodec: exact round trip, channel layout, frame folding, chunking/tiling exactness, checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vsr_core.errors import ConfigError
from vsr_core.latent import PixelUnshuffleCodec


def _video(frames: int = 4, height: int = 32, width: int = 48) -> torch.Tensor:
    return torch.rand(2, 3, frames, height, width, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_round_trip_is_bit_exact_and_shapes_follow_the_factors() -> None:
    codec = PixelUnshuffleCodec(factor=4)
    video = _video()
    z = codec.encode(video)
    assert z.shape == (2, 48, 4, 8, 12) and codec.latent_channels == 48
    assert torch.equal(codec.decode(z), video)
    folded = PixelUnshuffleCodec(factor=2, temporal_factor=2)
    z = folded.encode(video)
    assert z.shape == (2, 24, 2, 16, 24)
    assert torch.equal(folded.decode(z), video)


def test_layout_is_pixel_unshuffle_of_each_frame_and_of_stacked_frame_pairs() -> None:
    video = _video()
    z = PixelUnshuffleCodec(factor=4).encode(video)
    torch.testing.assert_close(z[:, :, 2], F.pixel_unshuffle(video[:, :, 2], 4), rtol=0, atol=0)
    z = PixelUnshuffleCodec(factor=2, temporal_factor=2).encode(video)
    pair = torch.cat([video[:, :, 2:3], video[:, :, 3:4]], dim=2).flatten(1, 2)  # channels (c, dt)
    torch.testing.assert_close(z[:, :, 1], F.pixel_unshuffle(pair, 2), rtol=0, atol=0)


def test_scaling_and_shift() -> None:
    video = _video()
    z = PixelUnshuffleCodec(factor=2, scaling=0.5, shift=0.25).encode(video)
    torch.testing.assert_close(z, (PixelUnshuffleCodec(factor=2).encode(video) - 0.25) * 0.5)
    torch.testing.assert_close(PixelUnshuffleCodec(factor=2, scaling=0.5, shift=0.25).decode(z), video)


def test_decode_clamps_to_the_pixel_range() -> None:
    codec = PixelUnshuffleCodec(factor=2)
    out = codec.decode(torch.full((1, 12, 1, 4, 4), 3.0))
    assert out.max().item() == 1.0


def test_frame_rules() -> None:
    assert PixelUnshuffleCodec().valid_frames(5) == 5
    codec = PixelUnshuffleCodec(factor=2, temporal_factor=4)
    assert [codec.valid_frames(n) for n in (1, 4, 5, 9)] == [4, 4, 8, 12]
    assert codec.latent_frames(9) == 3 and codec.pixel_frames(3) == 12


def test_chunking_and_tiling_are_exact() -> None:
    video = _video(frames=8, height=48, width=64)
    ref = PixelUnshuffleCodec(factor=4, temporal_factor=2)
    z = ref.encode(video)
    for options in (
        {"frames_per_chunk": 2},
        {"tile_size": 16, "tile_overlap": 8},
        {"tile_size": 24, "tile_overlap": 8, "frames_per_chunk": 4},
    ):
        codec = PixelUnshuffleCodec(factor=4, temporal_factor=2, **options)
        torch.testing.assert_close(codec.encode(video), z, rtol=0, atol=1e-6, msg=str(options))
        torch.testing.assert_close(codec.decode(z), video, rtol=0, atol=1e-6, msg=str(options))


def test_gradients_flow_through_the_frozen_codec() -> None:
    video = _video().requires_grad_(True)
    codec = PixelUnshuffleCodec(factor=2, tile_size=16, tile_overlap=8)
    codec.decode(codec.encode(video) * 2).sum().backward()
    assert video.grad is not None and video.grad.abs().sum() > 0


def test_bad_inputs_and_options_are_config_errors() -> None:
    codec = PixelUnshuffleCodec(factor=4, temporal_factor=2)
    with pytest.raises(ConfigError, match=r"needs a multiple of 2 frames, got 3 \(valid_frames\(3\) = 4\)"):
        codec.encode(_video(frames=3))
    with pytest.raises(ConfigError, match="divisible by 4, got 30x48"):
        codec.encode(_video(height=30))
    with pytest.raises(ConfigError, match=r"expects video \[B,3,T,H,W\]"):
        codec.encode(torch.zeros(1, 4, 2, 8, 8))
    with pytest.raises(ConfigError, match=r"expects latents \[B,96,t,h,w\]"):
        codec.decode(torch.zeros(1, 3, 2, 8, 8))
    with pytest.raises(ConfigError, match="frames_per_chunk=3 must be a positive multiple of the temporal factor 2"):
        PixelUnshuffleCodec(factor=4, temporal_factor=2, frames_per_chunk=3)
    with pytest.raises(ConfigError, match="must be >= 1"):
        PixelUnshuffleCodec(factor=0)
