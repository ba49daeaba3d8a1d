"""The SD VAE of UltraVSR: LoRA on the encoder, RTS modules before each decoder up block (Sec. 3.1, 3.3).

The VAE is the ``AutoencoderKL`` inside a core :class:`~vsr_core.latent.AutoencoderKLCodec` (``codec.vae``).
Encoding is per frame and goes through the codec (its latent scaling); TAI gives it ``b`` frames per call.
Decoding needs the RTS modules between the decoder's blocks, so the decoder's forward (diffusers'
``Decoder.forward``: ``post_quant_conv``, ``conv_in``, mid block, up blocks, ``conv_norm_out``/``conv_act``/
``conv_out``) is written here as stages for :class:`~vsr_core.nn.BlockwiseRunner`, with the release's
RTS modules (``decoder.video_up_RTS_blocks.<i>``) in front of each up block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ultravsr.rts import RTSModule
from ultravsr.unet import plain_parameter_names
from vsr_core.errors import ConfigError
from vsr_core.latent import AutoencoderKLCodec
from vsr_core.nn import BlockwiseRunner, Stage, frames_to_video, spatial, video_to_frames

__all__ = [
    "VAE_ADAPTER",
    "attach_decoder_rts",
    "decode_latents",
    "decoder_rts_channels",
    "decoder_stages",
    "encode_frames",
    "release_vae_targets",
]

#: The release's VAE adapter name.
VAE_ADAPTER = "default_encoder"


def decoder_rts_channels(vae: nn.Module) -> list[int]:
    """Channels entering each decoder up block (where the release's RTS modules sit)."""
    reversed_out = list(vae.config.block_out_channels)[::-1]
    return [reversed_out[0], *reversed_out[:-1]]


def attach_decoder_rts(vae: nn.Module, factory: Callable[[int], RTSModule]) -> None:
    """Add ``decoder.video_up_RTS_blocks`` (release name) to ``vae``, in place."""
    vae.decoder.video_up_RTS_blocks = nn.ModuleList([factory(c) for c in decoder_rts_channels(vae)])


def release_vae_targets(vae: nn.Module, patterns: Iterable[str]) -> list[str]:
    """The release's VAE LoRA targets: encoder weights whose name contains a pattern, and ``quant_conv``.

    Biases, norms, the decoder, ``post_quant_conv`` and RTS modules are excluded; full module paths, sorted.
    """
    patterns = list(patterns)
    targets = set()
    for name in plain_parameter_names(vae):
        if "bias" in name or "norm" in name or "RTS" in name:
            continue
        in_encoder = name.startswith("encoder.") and any(p in name for p in patterns)
        if in_encoder or (name.startswith("quant_conv.")):
            targets.add(name.removesuffix(".weight"))
    return sorted(targets)


def encode_frames(codec: AutoencoderKLCodec, video: torch.Tensor, frames_per_batch: int | None = None) -> torch.Tensor:
    """``codec.encode`` with at most ``frames_per_batch`` frames per call: ``[B, 3, T, H, W] -> [B, c, T, h, w]``."""
    if frames_per_batch is None or video.shape[0] * video.shape[2] <= frames_per_batch:
        return codec.encode(video)
    t = video.shape[2]

    def encode(frames: torch.Tensor) -> torch.Tensor:  # [n, 3, H, W] as a one-clip video of n frames
        return codec.encode(frames.transpose(0, 1).unsqueeze(0))[0].transpose(0, 1)

    out = BlockwiseRunner([spatial(encode)], frames_per_batch=frames_per_batch).run_frames(video_to_frames(video), t)
    return frames_to_video(out, t)


State = dict[str, Any]


def decoder_stages(vae: nn.Module, in_place_rts: bool = False, frames_per_batch: int | None = None) -> list[Stage]:
    """The decoder's forward as stages on frames of (unscaled) latents ``[N, c, h, w]`` -> pixels ``[N, 3, H, W]``.

    ``in_place_rts=False`` gives each RTS module as its staged form (autograd works); ``True`` makes each ONE
    stage adding its residuals into the feature map in place, its per-frame layers on ``frames_per_batch``
    frames per call (``None``: a clip at a time) -- for inference, where it keeps the decoder's
    full-resolution feature map once, not twice, for the whole clip
    (:meth:`~ultravsr.rts.RTSModule.inplace_stage`; ``h`` is the decoder's own, nothing else refers to it).
    """
    decoder = vae.decoder
    rts = getattr(decoder, "video_up_RTS_blocks", None)
    post_quant = getattr(vae, "post_quant_conv", None)

    def enter(z: torch.Tensor) -> State:
        if post_quant is not None:
            z = post_quant(z)
        h = decoder.conv_in(z)
        return {"h": decoder.mid_block(h, None)}

    stages: list[Stage] = [spatial(enter)]
    for i, block in enumerate(decoder.up_blocks):
        if rts is not None and in_place_rts:
            stages.append(rts[i].inplace_stage("h", frames_per_batch))  # before the up block
        elif rts is not None:
            stages += rts[i].stages("h")

        def up(state: State, block: nn.Module = block) -> State:
            return {**state, "h": block(state["h"], None)}

        stages.append(spatial(up))

    def leave(state: State) -> torch.Tensor:
        return decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(state["h"])))

    stages.append(spatial(leave))
    return stages


def decode_latents(
    codec: AutoencoderKLCodec, latents: torch.Tensor, frames_per_batch: int | None = None
) -> torch.Tensor:
    """Scaled latents ``[B, c, T, h, w]`` -> video ``[B, 3, T, H, W]`` in ``[-1, 1]`` through the RTS decoder.

    Undoes the codec's latent scaling (``z / scaling_factor + shift_factor``) as ``codec.decode`` does. Without
    autograd the RTS modules add into the decoder's features in place (:func:`decoder_stages`).
    """
    if codec.latents_mean is not None:
        raise ConfigError("UltraVSR's decoder expects an SD VAE (a scaling factor, no per-channel latent statistics)")
    t = latents.shape[2]
    z = latents / codec.scaling_factor + codec.shift_factor
    frames = video_to_frames(z).to(codec.vae_dtype)
    stages = decoder_stages(codec.vae, in_place_rts=not torch.is_grad_enabled(), frames_per_batch=frames_per_batch)
    out = BlockwiseRunner(stages, frames_per_batch=frames_per_batch).run_frames(frames, t)
    return frames_to_video(out, t).to(latents.dtype).clamp(-1.0, 1.0)
