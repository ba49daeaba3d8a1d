"""DiffVSR's latent codecs: TE-3DVAE (default), 3DVAE, the SD x4 upscaler's 2D VAE, or a weight-free codec.

The SD x4 upscaler's latents have the LR frame's size (VAE factor 4 = upscaling factor 4), so the noised LR video is
concatenated to them as it is. Kinds (Table 5, v2; :mod:`diffvsr.te3dvae`):

* ``te-3dvae`` / ``3dvae``: :class:`~vsr_core.latent.TemporalDecoderCodec` over
  :class:`~diffvsr.te3dvae.TemporalEnhancedVAE` (3DVAE: ``temporal_attention=False``), decoding chunks of
  ``decode_chunk`` frames as the release does (4); weights from ``vae_weights`` (the release's ``TE-3DVAE.pt``, or a
  folder with ``vae/``, e.g. a ``diffvsr.TE3DVAE`` export), else random at the preset's size;
* ``2dvae``: :class:`~vsr_core.latent.AutoencoderKLCodec` on ``pretrained/vae`` (or ``vae_weights``), else random;
* ``pixel-unshuffle``: :class:`~vsr_core.latent.PixelUnshuffleCodec` (``factor = scale``; 48 latent channels at x4),
  exact and weight-free;
* ``half-unshuffle``: :class:`~diffvsr.half_unshuffle.HalfResolutionUnshuffleCodec` (12 latent channels at the LR
  size, lossy above half the HR band, weight-free; x4 only): the tiny CPU configuration's, where a random VAE could
  not reconstruct anything and 48 channels are wider than the tiny UNet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from diffusers import AutoencoderKL

from diffvsr.half_unshuffle import HalfResolutionUnshuffleCodec
from diffvsr.presets import te3dvae_config, vae_2d_config
from diffvsr.te3dvae import TemporalEnhancedVAE
from vsr_core.errors import ConfigError
from vsr_core.latent import AutoencoderKLCodec, LatentCodec, PixelUnshuffleCodec, TemporalDecoderCodec

__all__ = ["VAE_KINDS", "VAEKind", "build_codec"]

VAE_KINDS = ("te-3dvae", "3dvae", "2dvae", "pixel-unshuffle", "half-unshuffle")
VAEKind = Literal["te-3dvae", "3dvae", "2dvae", "pixel-unshuffle", "half-unshuffle"]


def _seeded(build, seed: int = 0):
    # The same random weights on every rank / run, without moving the global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_codec(
    kind: str,
    preset: str,
    scale: int,
    *,
    pretrained: str | None = None,
    vae_weights: str | None = None,
    decode_chunk: int | None = 4,
    trainable: bool = False,
) -> LatentCodec:
    """The codec of ``kind`` (module docstring); frozen unless ``trainable``."""
    if kind not in VAE_KINDS:
        raise ConfigError(f"vae must be one of {', '.join(VAE_KINDS)}, got {kind!r}")
    if kind == "pixel-unshuffle":
        if vae_weights:
            raise ConfigError("vae=pixel-unshuffle has no weights; drop vae_weights")
        return PixelUnshuffleCodec(factor=scale)
    if kind == "half-unshuffle":
        if vae_weights:
            raise ConfigError("vae=half-unshuffle has no weights; drop vae_weights")
        if scale != 4:
            raise ConfigError(f"vae=half-unshuffle keeps latents at the LR size of a x4 model; scale is {scale}")
        return HalfResolutionUnshuffleCodec()
    if kind == "2dvae":
        source = vae_weights or pretrained
        if source:
            return AutoencoderKLCodec(pretrained=source, trainable=trainable)
        return AutoencoderKLCodec(vae=_seeded(lambda: AutoencoderKL(**vae_2d_config(preset))), trainable=trainable)
    temporal_attention = kind == "te-3dvae"
    options = {"decode_chunk_size": decode_chunk, "trainable": trainable}
    if vae_weights and Path(vae_weights).is_dir():
        codec = TemporalDecoderCodec(pretrained=vae_weights, vae_class=TemporalEnhancedVAE, **options)
        if codec.vae.config.temporal_attention != temporal_attention:
            raise ConfigError(
                f"{vae_weights}/vae is not a {kind} (its temporal_attention is {codec.vae.config.temporal_attention})"
            )
        return codec
    config = {**te3dvae_config(preset), "temporal_attention": temporal_attention}
    vae = _seeded(lambda: TemporalEnhancedVAE(**config))
    if vae_weights:
        from diffvsr.weights import load_te3dvae_file

        load_te3dvae_file(vae, vae_weights)
    return TemporalDecoderCodec(vae=vae, **options)
