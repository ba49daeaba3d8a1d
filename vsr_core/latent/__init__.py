"""Video latent codecs: the :class:`LatentCodec` contract, diffusers VAEs (2D, 3D, temporal decoder), a weight-free codec."""

from vsr_core.latent.autoencoder_kl import AutoencoderKLCodec
from vsr_core.latent.base import LatentCodec
from vsr_core.latent.cogvideox import CogVideoXCodec
from vsr_core.latent.diffusers_vae import DiffusersVAECodec
from vsr_core.latent.pixel_unshuffle import PixelUnshuffleCodec
from vsr_core.latent.temporal_decoder import TemporalDecoderCodec
from vsr_core.latent.wan import WanCodec

__all__ = [
    "AutoencoderKLCodec",
    "CogVideoXCodec",
    "DiffusersVAECodec",
    "LatentCodec",
    "PixelUnshuffleCodec",
    "TemporalDecoderCodec",
    "WanCodec",
]
