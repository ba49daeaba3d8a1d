"""Causal 3D codec over diffusers' ``AutoencoderKLCogVideoX`` (CogVideoX / CogVideoX1.5, 4x8x8)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers import AutoencoderKLCogVideoX

from vsr_core.latent.diffusers_vae import DiffusersVAECodec

__all__ = ["CogVideoXCodec"]

_COGVIDEOX = {
    "block_out_channels": [128, 256, 256, 512],
    "latent_channels": 16,
    "layers_per_block": 3,
    "norm_num_groups": 32,
    "temporal_compression_ratio": 4,
}


class CogVideoXCodec(DiffusersVAECodec):
    """CogVideoX's causal 3D VAE: ``[B,3,4k+1,H,W]`` -> ``[B,16,k+1,H/8,W/8]`` latents times ``scaling_factor``.

    Factors come from the config: spatial ``2 ** (len(block_out_channels) - 1)``, temporal
    ``temporal_compression_ratio``. Latents are ``(z - shift_factor) * scaling_factor`` exactly as
    the CogVideoX pipelines scale them (``scaling_factor`` 1.15258426 for CogVideoX-2b, 0.7 for
    CogVideoX-5b and 1.5; ``invert_scale_latents`` only concerns the image latents of the 1.5
    image-to-video pipeline and is not applied here). Frames are batched inside diffusers
    (``num_sample_frames_batch_size`` with a causal conv cache), so memory does not grow with the
    clip length. Spatial tiling uses the generic blended tiles (``tile_size`` / ``tile_overlap``)
    unless ``diffusers_tiling=True`` hands them to the VAE's own ``enable_tiling``; ``slicing=True``
    encodes / decodes batch elements one at a time (``enable_slicing``).

    Presets: ``tiny``, ``cogvideox-2b``, ``cogvideox-5b``, ``cogvideox1.5-5b``.
    """

    vae_class: ClassVar[type] = AutoencoderKLCogVideoX
    causal = True
    default_real: ClassVar[str] = "cogvideox1.5-5b"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "block_out_channels": [8, 8, 8, 8],
            "latent_channels": 4,
            "layers_per_block": 1,
            "norm_num_groups": 2,
            "temporal_compression_ratio": 4,
            "sample_height": 64,
            "sample_width": 64,
            "scaling_factor": 0.7,
        },
        "cogvideox-2b": {**_COGVIDEOX, "sample_height": 480, "sample_width": 720, "scaling_factor": 1.15258426},
        "cogvideox-5b": {**_COGVIDEOX, "sample_height": 480, "sample_width": 720, "scaling_factor": 0.7},
        "cogvideox1.5-5b": {
            **_COGVIDEOX,
            "sample_height": 768,
            "sample_width": 1360,
            "scaling_factor": 0.7,
            "invert_scale_latents": True,
        },
    }

    def __init__(
        self,
        pretrained: str | None = None,
        preset: str = "tiny",
        config: dict[str, Any] | None = None,
        subfolder: str = "vae",
        torch_dtype: str | None = None,
        seed: int | None = 0,
        vae: AutoencoderKLCogVideoX | None = None,
        *,
        tile_size: int | None = None,
        tile_overlap: int = 0,
        diffusers_tiling: bool = False,
        slicing: bool = False,
        trainable: bool = False,
        encoder_trainable: bool = False,
    ) -> None:
        self.diffusers_tiling = diffusers_tiling
        super().__init__(
            pretrained, preset, config, subfolder, torch_dtype, seed, vae,
            tile_size=tile_size, tile_overlap=tile_overlap, trainable=trainable, encoder_trainable=encoder_trainable,
        )  # fmt: skip
        if slicing:
            self.vae.enable_slicing()

    def _configure(self) -> None:
        cfg = self.vae.config
        self.spatial_factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.temporal_factor = int(cfg.temporal_compression_ratio)
        self.latent_channels = cfg.latent_channels
        self.scaling_factor = float(cfg.scaling_factor)
        self.shift_factor = float(cfg.shift_factor or 0.0)

    def _finish_init(self) -> None:
        if self.diffusers_tiling and self.tile_size is not None:
            # diffusers tiles with its own blending; the generic tiles are then switched off.
            tile, overlap = self.tile_size, self.tile_overlap
            super()._finish_init()
            self.vae.enable_tiling(
                tile_sample_min_height=tile,
                tile_sample_min_width=tile,
                tile_overlap_factor_height=overlap / tile,
                tile_overlap_factor_width=overlap / tile,
            )
            self.tile_size = None
            return
        super()._finish_init()
        if self.diffusers_tiling:
            self.vae.enable_tiling()

    def _encode(self, video: torch.Tensor, sample_posterior: bool, generator: torch.Generator | None) -> torch.Tensor:
        dist = self.vae.encode(video.to(self.vae_dtype)).latent_dist
        z = self._posterior_latents(dist, sample_posterior, generator).to(video.dtype)
        return (z - self.shift_factor) * self.scaling_factor

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents / self.scaling_factor + self.shift_factor
        return self.vae.decode(z.to(self.vae_dtype)).sample.to(latents.dtype)
