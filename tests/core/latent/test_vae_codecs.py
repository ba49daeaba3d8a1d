"""Codecs over diffusers VAEs: factors, latent scaling against the VAE itself, save/load, freezing, tiling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.latent import AutoencoderKLCodec, CogVideoXCodec, WanCodec

CODECS = [AutoencoderKLCodec, CogVideoXCodec, WanCodec]


def _video(frames: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _frames(cls) -> int:
    return 9 if cls.causal else 3


@pytest.mark.parametrize(
    "cls, factors",
    [(AutoencoderKLCodec, (2, 1, 4)), (CogVideoXCodec, (8, 4, 4)), (WanCodec, (8, 4, 4))],
)
def test_tiny_shapes_and_frame_rules(cls, factors) -> None:
    codec = cls.tiny()
    assert (codec.spatial_factor, codec.temporal_factor, codec.latent_channels) == factors
    frames = _frames(cls)
    z = codec.encode(_video(frames))
    f, _, c = factors
    assert z.shape == (1, c, codec.latent_frames(frames), 32 // f, 32 // f)
    video = codec.decode(z)
    assert video.shape == (1, 3, frames, 32, 32) and video.abs().max() <= 1
    if cls.causal:
        assert [codec.valid_frames(n) for n in (1, 2, 5, 6, 9)] == [1, 5, 5, 9, 9]
        assert codec.latent_frames(9) == 3 and codec.pixel_frames(3) == 9
        with pytest.raises(ConfigError, match=r"needs 4k\+1 frames, got 8 \(valid_frames\(8\) = 9\)"):
            codec.encode(_video(8))
    else:
        assert codec.valid_frames(7) == 7 and codec.latent_frames(7) == 7


def test_autoencoder_kl_scales_each_frame_like_diffusers() -> None:
    codec = AutoencoderKLCodec.tiny(config={"shift_factor": 0.1})
    video = _video(3)
    z = codec.encode(video)
    vae = codec.vae
    frame = vae.encode(video[:, :, 1]).latent_dist.mode()
    torch.testing.assert_close(z[:, :, 1], (frame - 0.1) * 0.5)
    torch.testing.assert_close(codec.decode(z)[:, :, 2], vae.decode(z[:, :, 2] / 0.5 + 0.1).sample.clamp(-1, 1))


def test_autoencoder_kl_spatial_factor_comes_from_block_out_channels() -> None:
    assert AutoencoderKLCodec.preset_config("sd-x4-upscaler")["scaling_factor"] == 0.08333
    with torch.device("meta"):
        assert AutoencoderKLCodec.real("sd").spatial_factor == 8
        assert AutoencoderKLCodec.real("sd-x4-upscaler").spatial_factor == 4


def test_autoencoder_kl_per_channel_statistics() -> None:
    stats = {"latents_mean": [0.1, 0.2, 0.3, 0.4], "latents_std": [1.0, 2.0, 0.5, 4.0]}
    codec = AutoencoderKLCodec.tiny(config=stats)
    video = _video(2)
    frame = codec.vae.encode(video[:, :, 0]).latent_dist.mode()
    mean = torch.tensor(stats["latents_mean"]).view(1, 4, 1, 1)
    std = torch.tensor(stats["latents_std"]).view(1, 4, 1, 1)
    z = codec.encode(video)
    torch.testing.assert_close(z[:, :, 0], (frame - mean) * 0.5 / std)
    torch.testing.assert_close(
        codec.decode(z)[:, :, 0], codec.vae.decode(frame).sample.clamp(-1, 1), rtol=1e-4, atol=1e-5
    )


def test_cogvideox_scales_like_the_pipeline() -> None:
    codec = CogVideoXCodec.tiny()
    video = _video(5)
    z = codec.encode(video)
    torch.testing.assert_close(z, codec.vae.encode(video).latent_dist.mode() * 0.7)
    torch.testing.assert_close(codec.decode(z), codec.vae.decode(z / 0.7).sample.clamp(-1, 1))


def test_wan_normalizes_per_channel_like_the_pipeline() -> None:
    codec = WanCodec.tiny()
    video = _video(5)
    mean = torch.tensor([0.1, -0.2, 0.3, -0.4]).view(1, 4, 1, 1, 1)
    std = torch.tensor([0.5, 1.5, 2.0, 1.0]).view(1, 4, 1, 1, 1)
    raw = codec.vae.encode(video).latent_dist.mode()
    z = codec.encode(video)
    torch.testing.assert_close(z, (raw - mean) / std)
    torch.testing.assert_close(codec.decode(z), codec.vae.decode(raw).sample, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", CODECS)
def test_save_pretrained_and_load_back(cls, tmp_path: Path) -> None:
    codec = cls.tiny(seed=3)
    codec.vae.save_pretrained(tmp_path / "model" / "vae")
    loaded = cls.from_pretrained(tmp_path / "model")
    video = _video(_frames(cls))
    torch.testing.assert_close(loaded.encode(video), codec.encode(video), rtol=0, atol=0)
    # A different seed is a different random VAE: the comparison above is not vacuous.
    assert not torch.allclose(cls.tiny(seed=4).encode(video), codec.encode(video))
    (tmp_path / "no_vae" / "transformer").mkdir(parents=True)
    with pytest.raises(
        PretrainedError,
        match=r"no_vae has no 'vae/' folder \(expected a diffusers-format model folder with vae/config.json and weights\)",
    ):
        cls.from_pretrained(tmp_path / "no_vae")


def test_loading_the_wrong_vae_class_is_a_clear_error(tmp_path: Path) -> None:
    WanCodec.tiny().vae.save_pretrained(tmp_path / "wan" / "vae")
    with pytest.raises(PretrainedError, match="holds an AutoencoderKLWan, not an AutoencoderKLCogVideoX"):
        CogVideoXCodec.from_pretrained(tmp_path / "wan")
    config = json.loads((tmp_path / "wan" / "vae" / "config.json").read_text())
    assert config["_class_name"] == "AutoencoderKLWan"


def test_torch_dtype_is_applied(tmp_path: Path) -> None:
    AutoencoderKLCodec.tiny().vae.save_pretrained(tmp_path / "vae")
    codec = AutoencoderKLCodec.from_pretrained(tmp_path, torch_dtype="bfloat16")
    assert codec.vae_dtype == torch.bfloat16
    z = codec.encode(_video(2))
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    with pytest.raises(ConfigError, match="unknown torch_dtype"):
        AutoencoderKLCodec.tiny(torch_dtype="float13")


@pytest.mark.parametrize("cls", CODECS)
def test_frozen_by_default_and_encoder_trainable(cls) -> None:
    codec = cls.tiny()
    assert not any(p.requires_grad for p in codec.parameters())
    codec.train()
    assert not codec.training and not codec.vae.training
    partial = cls.tiny(encoder_trainable=True).train()
    encoder = {id(p) for m in partial.encoder_modules() for p in m.parameters()}
    assert encoder and all(p.requires_grad == (id(p) in encoder) for p in partial.parameters())
    assert partial.vae.encoder.training and not partial.vae.decoder.training
    full = cls.tiny(trainable=True).train()
    assert all(p.requires_grad for p in full.parameters()) and full.vae.decoder.training


def test_posterior_sampling_is_seeded() -> None:
    codec = AutoencoderKLCodec.tiny()
    video = _video(2)
    a = codec.encode(video, sample_posterior=True, generator=torch.Generator().manual_seed(1))
    b = codec.encode(video, sample_posterior=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, codec.encode(video))


def test_frame_chunks_match_the_whole_clip_for_a_per_frame_vae() -> None:
    video = _video(5)
    z = AutoencoderKLCodec.tiny().encode(video)
    chunked = AutoencoderKLCodec.tiny(frames_per_chunk=2)
    torch.testing.assert_close(chunked.encode(video), z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked.decode(z), AutoencoderKLCodec.tiny().decode(z), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError):
        CogVideoXCodec.tiny(frames_per_chunk=4)  # causal 3D VAEs batch frames inside diffusers


def _relative_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).pow(2).mean() / b.var()).sqrt().item()


@pytest.mark.parametrize("cls", CODECS)
def test_tiles_approximate_the_whole_frame(cls) -> None:
    # Random tiny VAEs normalize over the whole (tile) extent, so tiles cannot match exactly; they
    # must stay close, and for the 3D VAEs at least as close as diffusers' own tiling.
    video = _video(_frames(cls), size=64, seed=1)
    whole = cls.tiny()
    z = whole.encode(video)
    x = whole.decode(z)
    tiled = cls.tiny(tile_size=48, tile_overlap=16)
    enc_err, dec_err = _relative_rms(tiled.encode(video), z), _relative_rms(tiled.decode(z), x)
    assert enc_err < 0.45 and dec_err < 0.3, (enc_err, dec_err)
    if cls.causal:
        theirs = cls.tiny(tile_size=48, tile_overlap=16, diffusers_tiling=True)
        assert theirs.vae.use_tiling and theirs.tile_size is None
        assert enc_err <= _relative_rms(theirs.encode(video), z) and dec_err <= _relative_rms(theirs.decode(z), x)


def test_diffusers_tiling_switches_map_pixels_to_diffusers_arguments() -> None:
    cog = CogVideoXCodec.tiny(tile_size=48, tile_overlap=16, diffusers_tiling=True, slicing=True)
    assert cog.vae.tile_sample_min_height == 48 and cog.vae.tile_overlap_factor_width == pytest.approx(1 / 3)
    assert cog.vae.use_slicing
    wan = WanCodec.tiny(tile_size=64, tile_overlap=16, diffusers_tiling=True)
    assert wan.vae.tile_sample_min_width == 64 and wan.vae.tile_sample_stride_height == 48


def test_real_sizes_on_the_meta_device() -> None:
    expected = {
        (AutoencoderKLCodec, "sd"): 83_653_863,
        (AutoencoderKLCodec, "sd-x4-upscaler"): 55_325_927,
        (CogVideoXCodec, "cogvideox1.5-5b"): 215_583_907,
        (WanCodec, "wan2.1"): 126_892_531,
    }
    for (cls, variant), count in expected.items():
        with torch.device("meta"):
            codec = cls.real(variant)
        assert sum(p.numel() for p in codec.parameters()) == count, variant
        assert (codec.spatial_factor, codec.latent_channels) == (
            (8, 4) if variant == "sd" else (4, 4) if cls is AutoencoderKLCodec else (8, 16)
        )
    with pytest.raises(ConfigError, match="unknown WanCodec preset 'wan9'"):
        WanCodec.real("wan9")
