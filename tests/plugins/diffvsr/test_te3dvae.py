"""The TE-3DVAE port: it starts from the SD x4 VAE exactly, its temporal parts mix frames within a clip only, and it
plugs into the core's TemporalDecoderCodec (chunked decoding as the release's, saved and loaded as a diffusers
folder)."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL

from diffvsr.presets import te3dvae_config, vae_2d_config
from diffvsr.te3dvae import TemporalEnhancedVAE
from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.latent import TemporalDecoderCodec


def _vae_2d() -> AutoencoderKL:
    torch.manual_seed(0)
    config = {**vae_2d_config("tiny"), "layers_per_block": 2}
    return AutoencoderKL(**config).eval()


def _latents(frames: int, batch: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch * frames, 4, 4, 4, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("temporal_attention", [True, False], ids=["te-3dvae", "3dvae"])
def test_from_the_2d_vae_it_decodes_as_the_2d_vae(temporal_attention):
    vae = _vae_2d()
    te = TemporalEnhancedVAE.from_autoencoder_kl(vae, temporal_attention=temporal_attention).eval()
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    z = _latents(6)
    with torch.no_grad():
        torch.testing.assert_close(te.encode(x).latent_dist.mode(), vae.encode(x).latent_dist.mode())
        torch.testing.assert_close(te.decode(z, num_frames=3).sample, vae.decode(z).sample, rtol=1e-5, atol=1e-5)
        # Once a temporal branch moves, frames depend on their neighbours.
        te.decoder.time_conv_out.weight.add_(0.1)
        assert (te.decode(z, num_frames=3).sample - vae.decode(z).sample).abs().max() > 1e-3


def test_3dvae_has_no_temporal_attention_and_te3dvae_has():
    te = TemporalEnhancedVAE(**te3dvae_config("tiny"))
    plain = TemporalEnhancedVAE(**te3dvae_config("tiny"), temporal_attention=False)
    extra = set(te.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("decoder.mid_block.attentions.0.") for k in extra)
    assert not set(plain.state_dict()) - set(te.state_dict())
    kernels = {m.kernel_size for n, m in te.named_modules() if n.endswith("temporal_res_block.conv1")}
    assert kernels == {(3, 3, 3)}  # the release's 3x3x3 (SVD's are 3x1x1)


def test_decoder_mixes_frames_of_a_clip_and_never_across_clips():
    torch.manual_seed(0)
    te = TemporalEnhancedVAE(**te3dvae_config("tiny")).eval()
    z = _latents(4, batch=2)
    with torch.no_grad():
        out = te.decode(z, num_frames=4).sample
        moved = z.clone()
        moved[0] += 1.0  # frame 0 of clip 0
        diff = (te.decode(moved, num_frames=4).sample - out).abs().amax(dim=(1, 2, 3))
    assert diff[:4].min() > 0 and diff[4:].max() == 0  # all of clip 0 changes, nothing of clip 1
    with pytest.raises(ValueError, match="do not split into clips"):
        te.decode(z[:7], num_frames=4)


def test_codec_decodes_in_chunks_of_four_frames_as_the_release(tmp_path):
    torch.manual_seed(0)
    vae = TemporalEnhancedVAE(**te3dvae_config("tiny")).eval()
    codec = TemporalDecoderCodec(vae=vae, decode_chunk_size=4)
    latents = torch.randn(1, 4, 8, 4, 4)
    with torch.no_grad():
        video = codec.decode(latents)
        for start in (0, 4):
            chunk = latents[:, :, start : start + 4].transpose(1, 2).reshape(4, 4, 4, 4) / 0.08333
            expected = vae.decode(chunk, num_frames=4).sample.clamp(-1, 1)
            torch.testing.assert_close(video[0, :, start : start + 4].transpose(0, 1), expected, rtol=1e-5, atol=1e-5)
    # Saved as a diffusers folder (config.json carries the release's class name too) and read back strictly.
    vae.save_pretrained(tmp_path / "vae")
    loaded = TemporalDecoderCodec(pretrained=str(tmp_path), vae_class=TemporalEnhancedVAE, decode_chunk_size=4)
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(latents), video)
    with pytest.raises(PretrainedError):
        TemporalDecoderCodec(pretrained=str(tmp_path))  # SVD's architecture does not fit these weights


def test_starting_from_a_2d_vae_needs_two_mid_resnets():
    with pytest.raises(ConfigError, match="layers_per_block=2"):
        TemporalEnhancedVAE.from_autoencoder_kl(AutoencoderKL(**vae_2d_config("tiny")))
