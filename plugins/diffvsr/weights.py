"""The authors' released weights: the UNet3D checkpoint (``DiffVSR_UNet.pt``) and ``TE-3DVAE.pt``.

``DiffVSR_UNet.pt`` is ``torch.save({"ema": unet.state_dict(), ...})`` of the release's ``UNet3DVSRModel``;
``TE-3DVAE.pt`` is a plain state dict of its ``AutoencoderKLTemporalDecoder`` (:mod:`diffvsr.te3dvae`). Both are read
with ``weights_only=True`` and must fit exactly: a missing, unexpected or differently shaped tensor fails with one line
naming the first keys.

The UNet's spatial weights have diffusers' ``UNet2DConditionModel`` names in both layouts. Its temporal layers are
named after the release's modules; :func:`release_to_ours` relocates them into the inflated UNet (:mod:`diffvsr.unet`):

* ``<block>.attentions.<j>.resblock_temporal.*`` -> ``<block>.resnets.<j>.temporal.*`` (the ResNet before it);
* ``<...>.transformer_blocks.<k>.attn_temporal.*`` / ``attn_temporal_small.*`` -> ``<...>.msta.attention.*`` /
  ``msta.attention_small.*``; ``norm_temporal`` / ``norm_temporal_small`` -> ``msta.norm`` / ``msta.norm_small``;
  ``temporal_down_conv`` / ``temporal_up_conv`` -> ``msta.down_conv`` / ``msta.up_conv``;
* inside those attentions ``to_out.0.*`` -> ``to_out.*`` and ``time_rel_pos_bias.*`` -> ``position_bias.*``;
* ``down_temporal_blocks.<i>.*`` / ``mid_temporal_block.*`` / ``up_temporal_blocks.<i>.*`` ->
  ``down_blocks.<i>.temporal.*`` / ``mid_block.temporal.*`` / ``up_blocks.<i>.temporal.*``, inside them
  ``resblocks_3d_t`` -> ``temporal_resnet`` and ``resblocks_3d_s`` -> ``spatial_resnet``;
* ``temporal_rotary_emb.freqs`` and every ``rotary_emb.freqs``: constants, checked against the rotary frequencies and
  dropped.

Run the released UNet with ``temporal_layers.group_norm: clip`` (its ResNets normalise over the clip) and the
release's sampling settings (``configs/release.yaml``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from diffvsr.temporal_attention import MAX_ROTARY_DIM, rotary_frequencies
from vsr_core.errors import PretrainedError
from vsr_core.torch_files import read_torch_file

__all__ = ["load_release_unet", "load_te3dvae_file", "read_state_dict", "release_to_ours", "release_unet_state"]

_RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.attentions\.(\d+)\.resblock_temporal\."),
        r"\1.resnets.\2.temporal.",
    ),
    (re.compile(r"^down_temporal_blocks\.(\d+)\."), r"down_blocks.\1.temporal."),
    (re.compile(r"^mid_temporal_block\."), "mid_block.temporal."),
    (re.compile(r"^up_temporal_blocks\.(\d+)\."), r"up_blocks.\1.temporal."),
    (re.compile(r"\.temporal\.resblocks_3d_t\."), ".temporal.temporal_resnet."),
    (re.compile(r"\.temporal\.resblocks_3d_s\."), ".temporal.spatial_resnet."),
    (re.compile(r"(\.transformer_blocks\.\d+\.)attn_temporal_small\."), r"\1msta.attention_small."),
    (re.compile(r"(\.transformer_blocks\.\d+\.)attn_temporal\."), r"\1msta.attention."),
    (re.compile(r"(\.transformer_blocks\.\d+\.)norm_temporal_small\."), r"\1msta.norm_small."),
    (re.compile(r"(\.transformer_blocks\.\d+\.)norm_temporal\."), r"\1msta.norm."),
    (re.compile(r"(\.transformer_blocks\.\d+\.)temporal_down_conv\."), r"\1msta.down_conv."),
    (re.compile(r"(\.transformer_blocks\.\d+\.)temporal_up_conv\."), r"\1msta.up_conv."),
    (re.compile(r"(\.msta\.attention(?:_small)?\.)to_out\.0\."), r"\1to_out."),
    (re.compile(r"(\.msta\.attention(?:_small)?\.)time_rel_pos_bias\."), r"\1position_bias."),
]
_ROTARY = re.compile(r"(^|\.)rotary_emb\.freqs$|^temporal_rotary_emb\.freqs$")


def release_to_ours(key: str) -> str | None:
    """Our name of a release UNet key; ``None`` for the rotary-frequency constants (checked, then dropped)."""
    if _ROTARY.search(key):
        return None
    for pattern, replacement in _RULES:
        key = pattern.sub(replacement, key)
    return key


def read_state_dict(path: str | Path, what: str, nested: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.save`` file (``weights_only``): a state dict, or one under a key of ``nested``."""
    content = read_torch_file(path, what=what)
    if isinstance(content, Mapping):
        for key in nested:
            if isinstance(content.get(key), Mapping):
                content = content[key]
                break
    if (
        not isinstance(content, Mapping)
        or not content
        or not all(isinstance(v, torch.Tensor) for v in content.values())
    ):
        hint = f" (or one under {', '.join(repr(k) for k in nested)})" if nested else ""
        raise PretrainedError(f"{what} '{path}' holds no state dict of tensors{hint}")
    return {str(k): v for k, v in content.items()}


def _check_fit(own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], what: str, hint: str) -> None:
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:2])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:2])})")
        raise PretrainedError(f"{what} does not fit: {'; '.join(parts)}; {hint}")
    for key, tensor in given.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise PretrainedError(
                f"{what} does not fit: {key} is {tuple(tensor.shape)} in the file, "
                f"{tuple(own[key].shape)} here; {hint}"
            )


def release_unet_state(
    release: Mapping[str, torch.Tensor], what: str = "the UNet checkpoint"
) -> dict[str, torch.Tensor]:
    """The release's UNet state dict under our names (:func:`release_to_ours`), rotary constants checked."""
    expected = rotary_frequencies(MAX_ROTARY_DIM)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in release.items():
        ours = release_to_ours(key)
        if ours is None:
            if tensor.shape != expected.shape or not torch.allclose(
                tensor.float().cpu(), expected, rtol=1e-3, atol=1e-6
            ):
                raise PretrainedError(
                    f"{what}: {key} holds other rotary frequencies than the release's RotaryEmbedding(32)"
                )
            continue
        state[ours] = tensor
    return state


def load_release_unet(unet: nn.Module, path: str | Path) -> None:
    """Load the release's UNet3D checkpoint (``{"ema": state_dict}`` or a plain state dict) into an inflated UNet."""
    what = f"UNet checkpoint '{path}'"
    state = release_unet_state(read_state_dict(path, "UNet checkpoint", nested=("ema", "state_dict")), what)
    hint = "is it the release's DiffVSR_UNet.pt, for preset real with every temporal layer (the release layout)?"
    _check_fit(unet.state_dict(), state, what, hint)
    unet.load_state_dict(state, strict=True)


def load_te3dvae_file(vae: nn.Module, path: str | Path) -> None:
    """Load the release's ``TE-3DVAE.pt`` (a plain state dict, the same keys as :class:`TemporalEnhancedVAE`)."""
    what = f"TE-3DVAE file '{path}'"
    state = read_state_dict(path, "TE-3DVAE file", nested=("state_dict",))
    _check_fit(vae.state_dict(), state, what, "is it the release's TE-3DVAE.pt for this preset and vae kind?")
    vae.load_state_dict(state, strict=True)
