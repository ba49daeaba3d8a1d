"""TemporalDecoderCodec: per-frame encoding, chunked temporal decoding against diffusers, plugin VAEs, loading."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder, StableVideoDiffusionPipeline
from diffusers.configuration_utils import register_to_config
from torch import nn

from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.latent import TemporalDecoderCodec, WanCodec

SCALE = 0.18215


def _video(batch: int, frames: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _latents(batch: int, frames: int, size: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 4, frames, size, size, generator=torch.Generator().manual_seed(seed))


class PostQuantTemporalVAE(AutoencoderKLTemporalDecoder):
    """A stand-in for DiffVSR's TE-3DVAE: SVD's VAE plus a ``post_quant_conv`` and a ``(3, k, k)`` output time conv.

    Saved with ``_class_name`` rewritten to ``AutoencoderKLTemporalDecoder`` it is what the released
    TE-3DVAE looks like to a loader: the same config keys and class name, other tensors.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        latent_channels: int = 4,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        force_upcast: bool = True,
        shift_factor: float = 0.0,
        time_kernel: int = 1,
    ) -> None:
        super().__init__(
            in_channels, out_channels, down_block_types, block_out_channels, layers_per_block, latent_channels,
            sample_size, scaling_factor, force_upcast,
        )  # fmt: skip
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)
        k = time_kernel
        self.decoder.time_conv_out = nn.Conv3d(out_channels, out_channels, (3, k, k), padding=(1, k // 2, k // 2))

    def decode(self, z: torch.Tensor, num_frames: int, return_dict: bool = True):
        return super().decode(self.post_quant_conv(z), num_frames=num_frames, return_dict=return_dict)


def _as_released(folder: Path) -> None:
    # DiffVSR's release calls its TE-3DVAE "AutoencoderKLTemporalDecoder" in config.json.
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config["_class_name"] = "AutoencoderKLTemporalDecoder"
    config_file.write_text(json.dumps(config))


def test_tiny_factors_shapes_and_real_size() -> None:
    codec = TemporalDecoderCodec.tiny()
    assert (codec.spatial_factor, codec.temporal_factor, codec.latent_channels) == (2, 1, 4)
    assert codec.scaling_factor == SCALE and not codec.causal
    assert [codec.valid_frames(n) for n in (1, 7)] == [1, 7] and codec.latent_frames(7) == 7
    z = codec.encode(_video(2, 3))
    assert z.shape == (2, 4, 3, 16, 16)
    video = codec.decode(z)
    assert video.shape == (2, 3, 3, 32, 32) and video.abs().max() <= 1
    with pytest.raises(ConfigError, match="needs height and width divisible by 2, got 31x32"):
        codec.encode(torch.zeros(1, 3, 2, 31, 32))
    with torch.device("meta"):
        svd = TemporalDecoderCodec.real()
    assert (svd.spatial_factor, svd.latent_channels, svd.scaling_factor) == (8, 4, SCALE)
    assert sum(p.numel() for p in svd.parameters()) == 97_742_847


def test_encode_is_the_scaled_posterior_mode_of_every_frame() -> None:
    codec = TemporalDecoderCodec.tiny()
    video = _video(2, 3)
    z = codec.encode(video)
    for b in range(2):
        for i in range(3):
            expected = codec.vae.encode(video[b : b + 1, :, i]).latent_dist.mode() * SCALE
            torch.testing.assert_close(z[b : b + 1, :, i], expected, rtol=1e-5, atol=1e-6)
    # The encoder is per frame: chunks of frames give the same latents.
    torch.testing.assert_close(TemporalDecoderCodec.tiny(encode_chunk_size=2).encode(video), z, rtol=1e-5, atol=1e-6)


def test_posterior_sampling_is_optional_and_seeded() -> None:
    codec = TemporalDecoderCodec.tiny()
    video = _video(1, 3)
    sampled = codec.encode(video, sample_posterior=True, generator=torch.Generator().manual_seed(7))
    frames = video[0].transpose(0, 1)  # [T, 3, H, W], the order the codec encodes them in
    dist = codec.vae.encode(frames).latent_dist
    expected = dist.sample(generator=torch.Generator().manual_seed(7)) * SCALE
    torch.testing.assert_close(sampled[0].transpose(0, 1), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(sampled, codec.encode(video), atol=1e-3)


def test_decode_equals_the_svd_pipeline_chunk_by_chunk() -> None:
    # Reference: diffusers' own StableVideoDiffusionPipeline.decode_latents on [B, F, C, h, w] latents.
    vae = TemporalDecoderCodec.tiny().vae
    z = _latents(1, 5)
    pipe = SimpleNamespace(vae=vae)
    for chunk in (2, 5):
        expected = StableVideoDiffusionPipeline.decode_latents(
            pipe, z.transpose(1, 2), num_frames=5, decode_chunk_size=chunk
        )
        decoded = TemporalDecoderCodec(vae=vae, decode_chunk_size=chunk).decode(z)
        torch.testing.assert_close(decoded, expected.clamp(-1, 1), rtol=1e-5, atol=1e-6)


def test_each_clip_of_a_batch_is_decoded_chunk_by_chunk_with_num_frames() -> None:
    codec = TemporalDecoderCodec.tiny(decode_chunk_size=2)
    z = _latents(2, 5)
    decoded = codec.decode(z)
    for b in range(2):
        for start in (0, 2, 4):
            chunk = z[b, :, start : start + 2].transpose(0, 1) / SCALE  # [n, c, h, w]
            expected = codec.vae.decode(chunk, num_frames=chunk.shape[0]).sample.clamp(-1, 1)
            torch.testing.assert_close(
                decoded[b, :, start : start + 2], expected.transpose(0, 1), rtol=1e-5, atol=1e-6
            )


def test_chunks_are_what_the_temporal_layers_see() -> None:
    z = _latents(1, 5)
    whole = TemporalDecoderCodec.tiny().decode(z)
    # One chunk of all frames is the unchunked decode, bit for bit.
    torch.testing.assert_close(TemporalDecoderCodec.tiny(decode_chunk_size=5).decode(z), whole, rtol=0, atol=0)
    torch.testing.assert_close(TemporalDecoderCodec.tiny(decode_chunk_size=9).decode(z), whole, rtol=0, atol=0)
    chunked = TemporalDecoderCodec.tiny(decode_chunk_size=2)
    assert (chunked.decode(z) - whole).abs().max() > 1e-3  # the temporal layers mix frames
    # Changing the last frame's latents changes frame 0 through the temporal layers, unless it is in another chunk.
    edited = z.clone()
    edited[:, :, 4] += 1.0
    assert not torch.allclose(TemporalDecoderCodec.tiny().decode(edited)[:, :, 0], whole[:, :, 0], atol=1e-4)
    torch.testing.assert_close(chunked.decode(edited)[:, :, :4], chunked.decode(z)[:, :, :4], rtol=0, atol=0)


def test_save_pretrained_and_load_back(tmp_path: Path) -> None:
    codec = TemporalDecoderCodec.tiny(seed=3)
    codec.vae.save_pretrained(tmp_path / "model" / "vae")
    loaded = TemporalDecoderCodec.from_pretrained(tmp_path / "model", decode_chunk_size=2)
    video, z = _video(1, 3), _latents(1, 3)
    torch.testing.assert_close(loaded.encode(video), codec.encode(video), rtol=0, atol=0)
    codec.decode_chunk_size = 2  # read at call time
    torch.testing.assert_close(loaded.decode(z), codec.decode(z), rtol=0, atol=0)
    assert not torch.allclose(TemporalDecoderCodec.tiny(seed=4).encode(video), codec.encode(video))
    half = TemporalDecoderCodec.from_pretrained(tmp_path / "model", torch_dtype="bfloat16")
    assert half.vae_dtype == torch.bfloat16 and half.decode(z).dtype == torch.float32


def test_a_plugin_vae_class_is_built_loaded_and_driven_through_its_own_decode(tmp_path: Path) -> None:
    config = {"shift_factor": 0.1, "time_kernel": 3}
    codec = TemporalDecoderCodec.tiny(vae_class=PostQuantTemporalVAE, config=config)
    vae = codec.vae
    assert type(vae) is PostQuantTemporalVAE and codec.shift_factor == 0.1
    video, z = _video(1, 3), _latents(1, 3)
    frames = video[0].transpose(0, 1)
    torch.testing.assert_close(
        codec.encode(video)[0].transpose(0, 1),
        (vae.encode(frames).latent_dist.mode() - 0.1) * SCALE,
        rtol=1e-5,
        atol=1e-6,
    )
    expected = vae.decode(z[0].transpose(0, 1) / SCALE + 0.1, num_frames=3).sample.clamp(-1, 1)
    torch.testing.assert_close(codec.decode(z)[0].transpose(0, 1), expected, rtol=1e-5, atol=1e-6)
    # An already built module brings its class along.
    torch.testing.assert_close(TemporalDecoderCodec(vae=vae).decode(z), codec.decode(z), rtol=0, atol=0)

    vae.save_pretrained(tmp_path / "released" / "vae")
    _as_released(tmp_path / "released" / "vae")
    loaded = TemporalDecoderCodec.from_pretrained(tmp_path / "released", vae_class=PostQuantTemporalVAE)
    torch.testing.assert_close(loaded.decode(z), codec.decode(z), rtol=0, atol=0)


def test_weights_of_another_architecture_under_the_same_name_are_refused(tmp_path: Path) -> None:
    hint = r"DiffVSR's TE-3DVAE reuses SVD's class name\): pass its vae_class"
    # Same shapes plus a post_quant_conv: diffusers would drop it with a warning.
    TemporalDecoderCodec.tiny(vae_class=PostQuantTemporalVAE).vae.save_pretrained(tmp_path / "a" / "vae")
    _as_released(tmp_path / "a" / "vae")
    with pytest.raises(
        PretrainedError,
        match=r"has 2 tensor\(s\) AutoencoderKLTemporalDecoder lacks \(e.g. post_quant_conv.bias\); .*" + hint,
    ):
        TemporalDecoderCodec.from_pretrained(tmp_path / "a")
    # A 3x3x3 output time conv: diffusers raises with a long message; one line names the tensor.
    TemporalDecoderCodec.tiny(vae_class=PostQuantTemporalVAE, config={"time_kernel": 3}).vae.save_pretrained(
        tmp_path / "b" / "vae"
    )
    _as_released(tmp_path / "b" / "vae")
    with pytest.raises(
        PretrainedError,
        match=r"does not fit AutoencoderKLTemporalDecoder \(decoder.time_conv_out.weight is \[3, 3, 3, 3, 3\] in the "
        r"folder, \[3, 3, 3, 1, 1\] in AutoencoderKLTemporalDecoder\); .*" + hint,
    ):
        TemporalDecoderCodec.from_pretrained(tmp_path / "b")
    # SVD weights into the plugin class: post_quant_conv would stay uninitialized on the meta device.
    TemporalDecoderCodec.tiny().vae.save_pretrained(tmp_path / "svd" / "vae")
    with pytest.raises(
        PretrainedError, match=r"lacks 2 tensor\(s\) PostQuantTemporalVAE has \(e.g. post_quant_conv.bias\)"
    ):
        TemporalDecoderCodec.from_pretrained(tmp_path / "svd", vae_class=PostQuantTemporalVAE)


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="AutoencoderKL.decode takes no num_frames: it is a per-frame VAE, use AutoencoderKLCodec"
    ):
        TemporalDecoderCodec.tiny(vae_class=AutoencoderKL)
    with pytest.raises(ConfigError, match="vae_class must be a torch.nn.Module class"):
        TemporalDecoderCodec.tiny(vae_class=dict)
    for bad in (0, -2, 1.5):
        with pytest.raises(ConfigError, match=rf"decode_chunk_size={bad} must be a positive number of frames"):
            TemporalDecoderCodec.tiny(decode_chunk_size=bad)
    with pytest.raises(ConfigError, match="encode_chunk_size=0 must be a positive"):
        TemporalDecoderCodec.tiny(encode_chunk_size=0)
    with pytest.raises(TypeError):
        TemporalDecoderCodec.tiny(frames_per_chunk=2)  # encode_chunk_size / decode_chunk_size say which side

    class NoScaling(nn.Module):
        config: ClassVar[dict] = {"block_out_channels": [32, 32], "latent_channels": 4}

        def encode(self, x):
            raise NotImplementedError

        def decode(self, z, num_frames):
            raise NotImplementedError

    with pytest.raises(ConfigError, match="NoScaling's config has no scaling_factor"):
        TemporalDecoderCodec(vae=NoScaling())
    WanCodec.tiny().vae.save_pretrained(tmp_path / "wan" / "vae")
    with pytest.raises(PretrainedError, match="holds an AutoencoderKLWan, not an AutoencoderKLTemporalDecoder"):
        TemporalDecoderCodec.from_pretrained(tmp_path / "wan")


def test_frozen_by_default_and_encoder_trainable() -> None:
    codec = TemporalDecoderCodec.tiny().train()
    assert not any(p.requires_grad for p in codec.parameters()) and not codec.vae.training
    partial = TemporalDecoderCodec.tiny(encoder_trainable=True).train()
    encoder = {id(p) for m in (partial.vae.encoder, partial.vae.quant_conv) for p in m.parameters()}
    assert all(p.requires_grad == (id(p) in encoder) for p in partial.parameters())
    assert partial.vae.encoder.training and not partial.vae.decoder.training


def _relative_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).pow(2).mean() / b.var()).sqrt().item()


def test_spatial_tiles_approximate_the_whole_frame() -> None:
    video = _video(1, 3, size=64, seed=1)
    whole = TemporalDecoderCodec.tiny(decode_chunk_size=2)
    z = whole.encode(video)
    x = whole.decode(z)
    tiled = TemporalDecoderCodec.tiny(decode_chunk_size=2, tile_size=48, tile_overlap=16)
    assert tiled.encode(video[..., :48, :48]).shape == (1, 4, 3, 24, 24)
    enc_err, dec_err = _relative_rms(tiled.encode(video), z), _relative_rms(tiled.decode(z), x)
    assert enc_err < 0.45 and dec_err < 0.3, (enc_err, dec_err)
    # A frame no larger than a tile is not tiled at all.
    small = z[..., :24, :24]
    torch.testing.assert_close(tiled.decode(small), whole.decode(small), rtol=0, atol=0)
