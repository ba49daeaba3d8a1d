"""The VAE with decoder RTS: diffusers' decode at zero init, the release's sites and LoRA rule, TAI."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL

from ultravsr.options import RELEASE_VAE_PATTERNS, RTSOptions
from ultravsr.presets import get_preset
from ultravsr.rts import RTSModule, rts_factory
from ultravsr.vae import attach_decoder_rts, decode_latents, decoder_rts_channels, encode_frames, release_vae_targets
from vsr_core.latent import AutoencoderKLCodec

TINY = get_preset("tiny")


def _codec() -> AutoencoderKLCodec:
    return AutoencoderKLCodec(preset=TINY.vae_preset, config=TINY.vae_config, seed=3)


def _perturb_rts(module, scale=0.2):
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "RTS" in name:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def test_zero_initialised_decoder_rts_reproduces_codec_decode():
    codec = _codec()
    latents = torch.randn(2, codec.latent_channels, 3, 6, 5)
    with torch.no_grad():
        reference = codec.decode(latents)  # diffusers' AutoencoderKL.decode through the core codec
        attach_decoder_rts(codec.vae, rts_factory(RTSOptions(), TINY.rts))
        torch.testing.assert_close(decode_latents(codec, latents), reference, atol=1e-5, rtol=1e-5)
        _perturb_rts(codec.vae)
        assert (decode_latents(codec, latents) - reference).abs().max() > 1e-3


def test_decoder_tai_equals_whole_clip_with_b_frames_per_spatial_call():
    codec = _codec()
    attach_decoder_rts(codec.vae, rts_factory(RTSOptions(), TINY.rts))
    _perturb_rts(codec.vae)
    latents = torch.randn(1, codec.latent_channels, 5, 4, 4)
    seen: list[int] = []
    decoder = codec.vae.decoder
    for module in (decoder.conv_in, *decoder.up_blocks, decoder.conv_out):
        module.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    with torch.no_grad():
        whole = decode_latents(codec, latents)
        seen.clear()
        torch.testing.assert_close(decode_latents(codec, latents, frames_per_batch=2), whole, atol=2e-5, rtol=1e-5)
    assert max(seen) <= 2


def test_decoder_with_autograd_equals_the_inference_decoder():
    codec = _codec()
    attach_decoder_rts(codec.vae, rts_factory(RTSOptions(), TINY.rts))
    _perturb_rts(codec.vae)
    latents = torch.randn(2, codec.latent_channels, 4, 4, 4)
    with torch.no_grad():  # RTS in place
        inference = decode_latents(codec, latents, frames_per_batch=1)
    staged = decode_latents(codec, latents)  # autograd: the staged RTS modules
    assert staged.requires_grad
    torch.testing.assert_close(staged.detach(), inference, atol=2e-5, rtol=1e-5)


def test_encoder_tai_equals_codec_encode():
    codec = _codec()
    video = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    seen: list[int] = []
    codec.vae.encoder.conv_in.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    with torch.no_grad():
        whole = codec.encode(video)
        seen.clear()
        torch.testing.assert_close(encode_frames(codec, video, frames_per_batch=1), whole, atol=1e-5, rtol=1e-5)
    assert seen == [1] * 6


def test_release_sites_and_lora_rule_on_the_sd_vae():
    with torch.device("meta"):
        vae = AutoencoderKL(**AutoencoderKLCodec.preset_config("sd"))
    assert decoder_rts_channels(vae) == [512, 512, 512, 256]  # the input of each decoder up block
    targets = release_vae_targets(vae, RELEASE_VAE_PATTERNS)
    assert len(targets) == 32
    assert (
        "encoder.conv_in" in targets and "quant_conv" in targets and "encoder.mid_block.attentions.0.to_q" in targets
    )
    assert not [t for t in targets if t.startswith(("decoder.", "post_quant_conv")) or "norm" in t]
    attach_decoder_rts(vae, rts_factory(RTSOptions(), get_preset("real").rts))
    assert (
        isinstance(vae.decoder.video_up_RTS_blocks[3], RTSModule)
        and vae.decoder.video_up_RTS_blocks[3].channels == 256
    )
    assert release_vae_targets(vae, RELEASE_VAE_PATTERNS) == targets  # RTS modules never get LoRA
