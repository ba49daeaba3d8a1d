"""The tiny configuration's 12-channel codec (plugins/diffvsr/half_unshuffle.py), by hand-computed values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from diffvsr import DiffVSR
from diffvsr.codecs import build_codec
from diffvsr.half_unshuffle import HalfResolutionUnshuffleCodec
from vsr_core.errors import ConfigError


def test_encode_averages_2x2_blocks_and_unshuffles_them_at_the_lr_size():
    # One 4x4 frame of one colour: the 2x2 block means are 2.5, 4.5, 10.5, 12.5 (row-major over the half frame);
    # the 2x2 unshuffle puts them, in that order, on 4 channels of one latent pixel, times the scaling.
    video = torch.arange(16.0).reshape(1, 1, 1, 4, 4).expand(1, 3, 2, 4, 4).clone()
    video[:, 1] *= -1  # colours stay apart: channels 4-7 are the negated means
    codec = HalfResolutionUnshuffleCodec(scaling=2.0)
    z = codec.encode(video / 16)
    assert z.shape == (1, 12, 2, 1, 1)
    means = torch.tensor([2.5, 4.5, 10.5, 12.5]) / 16 * 2
    expected = torch.cat([means, -means, means])
    torch.testing.assert_close(z[0, :, 1, 0, 0], expected)


def test_decode_is_pixel_shuffle_then_bicubic_x2_of_the_unscaled_latents():
    torch.manual_seed(0)
    z = torch.randn(1, 12, 3, 4, 5) * 0.3
    codec = HalfResolutionUnshuffleCodec(scaling=2.0)
    video = codec.decode(z)
    frame = z[0, :, 1][None] / 2.0  # frame 1, unscaled, [1, 12, 4, 5]
    half = torch.zeros(1, 3, 8, 10)
    for c in range(3):  # pixel_shuffle by hand: channel 4c + 2*dy + dx -> pixel (2y + dy, 2x + dx)
        for dy in range(2):
            for dx in range(2):
                half[0, c, dy::2, dx::2] = frame[0, 4 * c + 2 * dy + dx]
    expected = F.interpolate(half, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
    assert video.shape == (1, 3, 3, 16, 20)
    torch.testing.assert_close(video[:, :, 1], expected)


def test_a_half_resolution_frame_round_trips_exactly_through_the_latents():
    # A frame that is constant on 2x2 blocks is its own average pool: encode(x) holds it exactly, and the bicubic
    # upsampling of the decode is undone by the next encode's average pool only approximately -- so compare latents.
    torch.manual_seed(1)
    half = torch.rand(1, 3, 2, 6, 6) * 1.6 - 0.8
    video = half.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    codec = HalfResolutionUnshuffleCodec()
    z = codec.encode(video)
    shuffled = F.pixel_shuffle(z.transpose(1, 2).reshape(2, 12, 3, 3), 2) / codec.scaling
    torch.testing.assert_close(shuffled.reshape(1, 2, 3, 6, 6).transpose(1, 2), half)


def test_the_method_builds_it_for_x4_only_and_without_weights(tmp_path):
    method = DiffVSR(vae="half-unshuffle")
    assert isinstance(method.codec, HalfResolutionUnshuffleCodec)
    assert (method.unet.config.in_channels, method.unet.config.out_channels) == (15, 12)
    with pytest.raises(ConfigError, match="has no weights"):
        build_codec("half-unshuffle", "tiny", 4, vae_weights=str(tmp_path / "x.pt"))
    with pytest.raises(ConfigError, match="x4"):
        build_codec("half-unshuffle", "tiny", 2)
    with pytest.raises(ConfigError, match="scaling"):
        HalfResolutionUnshuffleCodec(scaling=0)
