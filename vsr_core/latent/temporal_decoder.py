"""Per-frame encoder + temporal decoder codec on diffusers' ``AutoencoderKLTemporalDecoder`` (Stable Video Diffusion).

The encoder is a 2D image encoder applied to every frame; the decoder has temporal layers (3D
convolutions over time, learned spatial/temporal mixing) that see all ``num_frames`` frames of the
chunk they decode. Latents keep one latent frame per pixel frame (temporal factor 1).

Any VAE module with the same interface can be plugged in with ``vae_class=`` (or ``vae=``, an
already built module), e.g. DiffVSR's TE-3DVAE, which reuses the name ``AutoencoderKLTemporalDecoder``
for a different decoder. The interface (checked where it can be, documented in
docs/latent-and-diffusion.md):

* ``encode(x [N, 3, H, W])`` -> an output whose ``.latent_dist`` has ``.mode()`` and
  ``.sample(generator=...)``, both ``[N, c, H/f, W/f]``; images are encoded independently;
* ``decode(z [B*F, c, h, w], num_frames=F)`` -> an output whose ``.sample`` is ``[B*F, 3, h*f, w*f]``;
  row ``b*F + i`` is frame ``i`` of clip ``b`` (clip-major, as diffusers orders them) and temporal
  layers mix frames only within a clip;
* ``config`` with ``block_out_channels`` (``f = 2 ** (len - 1)``), ``latent_channels``,
  ``scaling_factor`` and optionally ``shift_factor``;
* for ``pretrained=``: diffusers' ``from_pretrained(folder, torch_dtype=..., output_loading_info=True)``
  (any ``ModelMixin`` + ``ConfigMixin``); for ``encoder_trainable``: ``encoder`` / ``quant_conv`` modules.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any, ClassVar

import torch
from diffusers import AutoencoderKLTemporalDecoder
from torch import nn

from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.latent.diffusers_vae import DiffusersVAECodec
from vsr_core.pretrained import resolve_pretrained

__all__ = ["TemporalDecoderCodec"]

_CONFIG_KEYS = ("block_out_channels", "latent_channels", "scaling_factor")


def _check_interface(vae_class: type) -> None:
    """Refuse a VAE class that cannot work as a per-frame encoder + temporal decoder (one-line ``ConfigError``)."""
    name = getattr(vae_class, "__name__", repr(vae_class))
    if not (isinstance(vae_class, type) and issubclass(vae_class, nn.Module)):
        raise ConfigError(
            f"vae_class must be a torch.nn.Module class with encode(x) and decode(z, num_frames), got {name}"
        )
    if not callable(getattr(vae_class, "encode", None)) or not callable(getattr(vae_class, "decode", None)):
        raise ConfigError(
            f"{name} needs encode(x) and decode(z, num_frames) methods to be used as a temporal-decoder VAE"
        )
    if "num_frames" not in inspect.signature(vae_class.decode).parameters:
        raise ConfigError(
            f"{name}.decode takes no num_frames: it is a per-frame VAE, use AutoencoderKLCodec for it "
            "(TemporalDecoderCodec needs decode(z, num_frames))"
        )


def _check_chunk(name: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigError(f"{name}={value!r} must be a positive number of frames (or None for the whole clip)")
    return value


class TemporalDecoderCodec(DiffusersVAECodec):
    """SVD-style VAE: frames encoded one by one, decoded with temporal layers across each chunk of frames.

    ``encode``: ``[B,3,T,H,W]`` in ``[-1,1]`` -> ``[B,c,T,H/f,W/f]`` with latents
    ``(z - shift_factor) * scaling_factor`` (``z`` the posterior mode, or a sample with
    ``sample_posterior``; ``scaling_factor`` from the VAE config, 0.18215 for SVD; ``shift_factor``
    0 unless the config has one), exactly what diffusers' SVD pipeline does
    (``vae.encode(image).latent_dist.mode()``). ``decode``: ``[B,c,T,h,w]`` -> ``[B,3,T,h*f,w*f]``
    through ``vae.decode(z / scaling_factor + shift_factor, num_frames=n)`` on chunks of
    ``n = decode_chunk_size`` frames, as the SVD pipeline's ``decode_latents(latents, num_frames,
    decode_chunk_size)`` does; ``f = 2 ** (len(block_out_channels) - 1)`` (8 for SVD).

    ``decode_chunk_size=None`` (default) decodes the whole clip in one call, so the temporal layers
    see every frame. A smaller chunk bounds decoder memory but is **not** exact: the temporal
    convolutions see zero padding at every chunk boundary and the temporal normalizations use the
    chunk's frames, so chunks can differ (and flicker) where they meet; the SVD pipeline uses 14.
    ``encode_chunk_size`` bounds how many frames go through the (per-frame) encoder at once and is
    exact. Spatial tiling (``tile_size`` / ``tile_overlap``, opt-in) uses the generic blended tiles;
    the temporal layers act along time only (``3x1x1`` kernels in SVD), so tiles are as exact as for
    a per-frame VAE: GroupNorm statistics and the mid-block attention see one tile, not the frame.

    ``vae_class`` (or a class attribute of a subclass) swaps in another VAE with the same interface
    (module docstring); a loaded folder whose weights do not fit the class exactly (missing,
    unexpected or differently shaped tensors) is refused instead of silently half-initialized.

    Presets: ``tiny`` (2 blocks of 32 channels, f = 2; the decoder's GroupNorms have 32 groups, so
    channels must be multiples of 32), ``svd`` (Stable Video Diffusion's VAE: the SD f8 autoencoder
    with a temporal decoder).
    """

    vae_class: ClassVar[type[nn.Module]] = AutoencoderKLTemporalDecoder
    #: ``_class_name`` values of ``config.json`` this codec loads besides ``vae_class.__name__``: SVD's
    #: name, which DiffVSR's TE-3DVAE release also carries (the weight check tells them apart).
    config_class_names: ClassVar[tuple[str, ...]] = ("AutoencoderKLTemporalDecoder",)
    default_real: ClassVar[str] = "svd"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "block_out_channels": [32, 32],
            "down_block_types": ["DownEncoderBlock2D"] * 2,
            "layers_per_block": 1,
            "latent_channels": 4,
            "sample_size": 32,
            "scaling_factor": 0.18215,
        },
        "svd": {
            "block_out_channels": [128, 256, 512, 512],
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "layers_per_block": 2,
            "latent_channels": 4,
            "sample_size": 768,
            "scaling_factor": 0.18215,
            "force_upcast": True,
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
        vae: nn.Module | None = None,
        *,
        vae_class: type[nn.Module] | None = None,
        decode_chunk_size: int | None = None,
        encode_chunk_size: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int = 0,
        trainable: bool = False,
        encoder_trainable: bool = False,
    ) -> None:
        if vae_class is None and vae is not None:
            vae_class = type(vae)
        if vae_class is not None:
            # An instance attribute: DiffusersVAECodec builds, loads and type-checks with self.vae_class.
            self.vae_class = vae_class
        _check_interface(self.vae_class)
        self.decode_chunk_size = _check_chunk("decode_chunk_size", decode_chunk_size)
        self.encode_chunk_size = _check_chunk("encode_chunk_size", encode_chunk_size)
        super().__init__(
            pretrained, preset, config, subfolder, torch_dtype, seed, vae,
            tile_size=tile_size, tile_overlap=tile_overlap, trainable=trainable, encoder_trainable=encoder_trainable,
        )  # fmt: skip

    # ----------------------------------------------------------------- construction
    def _configure(self) -> None:
        cfg = self.vae.config
        missing = [key for key in _CONFIG_KEYS if key not in cfg]
        if missing:
            raise ConfigError(
                f"{type(self.vae).__name__}'s config has no {', '.join(missing)}; "
                f"a temporal-decoder VAE's config needs {', '.join(_CONFIG_KEYS)}"
            )
        self.spatial_factor = 2 ** (len(cfg["block_out_channels"]) - 1)
        self.temporal_factor = 1
        self.latent_channels = int(cfg["latent_channels"])
        self.scaling_factor = float(cfg["scaling_factor"])
        self.shift_factor = float(cfg.get("shift_factor") or 0.0)

    def _load(self, pretrained: str, subfolder: str, dtype: torch.dtype | None) -> nn.Module:
        folder = resolve_pretrained(pretrained, subfolder)
        name = self.vae_class.__name__
        config_file = folder / "config.json"
        found = json.loads(config_file.read_text()).get("_class_name") if config_file.is_file() else None
        if found and found not in {name, *self.config_class_names}:
            raise PretrainedError(f"{folder} holds an {found}, not an {name}; use the codec made for {found}")
        hint = (
            f"it is another architecture than {name} (DiffVSR's TE-3DVAE reuses SVD's class name): pass its vae_class"
        )
        try:
            vae, info = self.vae_class.from_pretrained(folder, torch_dtype=dtype, output_loading_info=True)
        except ValueError as error:
            # diffusers refuses a tensor whose shape differs from the architecture built from config.json.
            size = r"(?:torch\.Size\()?(\[[^\]]*\])\)?"
            shape = re.search(rf"because (\S+) expected shape {size}, but got {size}", str(error))
            detail = (
                f"{shape[1]} is {shape[3]} in the folder, {shape[2]} in {name}" if shape else str(error).split(". ")[0]
            )
            raise PretrainedError(f"{folder} does not fit {name} ({detail}); {hint}") from None
        # diffusers only warns about these: unexpected tensors are dropped, missing ones stay uninitialized (meta).
        missing, unexpected = sorted(info.get("missing_keys") or []), sorted(info.get("unexpected_keys") or [])
        if unexpected:
            raise PretrainedError(
                f"{folder} has {len(unexpected)} tensor(s) {name} lacks (e.g. {unexpected[0]}); {hint}"
            )
        if missing:
            raise PretrainedError(f"{folder} lacks {len(missing)} tensor(s) {name} has (e.g. {missing[0]}); {hint}")
        return vae

    # ----------------------------------------------------------------- codec hooks
    def _encode(self, video: torch.Tensor, sample_posterior: bool, generator: torch.Generator | None) -> torch.Tensor:
        b, c, t, h, w = video.shape
        step = self.encode_chunk_size or t
        pieces = []
        for start in range(0, t, step):
            clip = video[:, :, start : start + step]
            n = clip.shape[2]
            frames = clip.transpose(1, 2).reshape(b * n, c, h, w).to(self.vae_dtype)
            z = self._posterior_latents(self.vae.encode(frames).latent_dist, sample_posterior, generator)
            pieces.append(z.reshape(b, n, *z.shape[1:]).transpose(1, 2))
        z = torch.cat(pieces, dim=2).to(video.dtype)
        return (z - self.shift_factor) * self.scaling_factor

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = latents.shape
        z = latents / self.scaling_factor + self.shift_factor
        step = self.decode_chunk_size or t
        pieces = []
        for start in range(0, t, step):
            chunk = z[:, :, start : start + step]
            n = chunk.shape[2]
            # Clip-major rows (clip b, frame i at b*n + i): the temporal layers mix the n frames of each clip.
            frames = chunk.transpose(1, 2).reshape(b * n, c, h, w).to(self.vae_dtype)
            x = self.vae.decode(frames, num_frames=n).sample
            pieces.append(x.reshape(b, n, *x.shape[1:]).transpose(1, 2))
        return torch.cat(pieces, dim=2).to(latents.dtype)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, vae_class={self.vae_class.__name__}, "
            f"decode_chunk_size={self.decode_chunk_size}, encode_chunk_size={self.encode_chunk_size}"
        )
