"""The SD 2.x ``UNet2DConditionModel`` with RTS modules, run as block-wise stages (Sec. 3.3, 3.5).

RTS modules sit where the release puts them (``UNet2DConditionVideoModel``): one after each down block
(on the block's output; the skip connections keep the block's own outputs) and one before each up block;
none at the mid block. They are children of the diffusers model named as in the release
(``video_down_RTS_blocks.<i>`` / ``video_up_RTS_blocks.<i>``), so the image weights, peft LoRA names and
the release's ``state_dict_unet`` keys all stay as they are.

:func:`unet_stages` writes the UNet's forward (diffusers' ``UNet2DConditionModel.forward`` for the SD
layout: time embedding, ``conv_in``, down blocks, mid block, up blocks, ``conv_norm_out``/``conv_act``/
``conv_out``) as spatial stages around the RTS modules' temporal stages. :func:`run_unet` runs them with
:class:`~vsr_core.nn.BlockwiseRunner`: the whole clip at once in training, ``b`` frames per spatial call
under temporally asynchronous inference; the result is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from ultravsr.rts import RTSModule
from vsr_core.errors import PretrainedError
from vsr_core.nn import BlockwiseRunner, Stage, frames_to_video, repeat_per_frame, spatial, video_to_frames

__all__ = [
    "UNET_ADAPTERS",
    "attach_unet_rts",
    "check_sd_unet",
    "release_unet_targets",
    "plain_parameter_names",
    "run_unet",
    "unet_rts_channels",
    "unet_rts_modules",
    "unet_stages",
]

#: The release's three UNet adapters: down blocks + conv_in, up blocks + conv_out, the rest (mid block).
UNET_ADAPTERS = ("default_encoder", "default_decoder", "default_others")


def check_sd_unet(unet: UNet2DConditionModel, source: str = "the UNet") -> None:
    """Raise :class:`PretrainedError` (one line) unless ``unet`` has the plain SD layout the stages implement."""
    cfg = unet.config
    unsupported = {
        "class_embed_type": cfg.class_embed_type,
        "addition_embed_type": cfg.addition_embed_type,
        "encoder_hid_dim_type": cfg.encoder_hid_dim_type,
        "num_class_embeds": cfg.num_class_embeds,
        "time_embedding_act_fn": cfg.time_embedding_act_fn,
    }
    found = {k: v for k, v in unsupported.items() if v is not None}
    if found or cfg.center_input_sample or cfg.mid_block_type != "UNetMidBlock2DCrossAttn":
        name, value = next(iter(found.items())) if found else ("mid_block_type", cfg.mid_block_type)
        raise PretrainedError(
            f"{source} is not a Stable Diffusion 1.x/2.x UNet ({name}={value!r}); UltraVSR needs SD 2.1-base"
        )
    if cfg.in_channels != cfg.out_channels:
        raise PretrainedError(
            f"{source} maps {cfg.in_channels} to {cfg.out_channels} channels; UltraVSR needs an SD UNet"
        )


def unet_rts_channels(unet: UNet2DConditionModel) -> tuple[list[int], list[int]]:
    """Channels of the RTS modules: after each down block, and before each up block (the block's input)."""
    out = list(unet.config.block_out_channels)
    reversed_out = out[::-1]
    return out, [reversed_out[0], *reversed_out[:-1]]


def attach_unet_rts(unet: UNet2DConditionModel, factory: Callable[[int], RTSModule]) -> None:
    """Add ``video_down_RTS_blocks`` / ``video_up_RTS_blocks`` (release names) to ``unet``, in place."""
    down, up = unet_rts_channels(unet)
    unet.video_down_RTS_blocks = nn.ModuleList([factory(c) for c in down])
    unet.video_up_RTS_blocks = nn.ModuleList([factory(c) for c in up])


def unet_rts_modules(unet: nn.Module) -> list[nn.Module]:
    """The RTS ModuleLists attached to ``unet`` (empty without RTS)."""
    return [m for m in (getattr(unet, "video_down_RTS_blocks", None), getattr(unet, "video_up_RTS_blocks", None)) if m]


def release_unet_targets(unet: nn.Module, patterns: Iterable[str]) -> dict[str, list[str]]:
    """The release's LoRA targets: ``{adapter: [module names]}`` for :data:`UNET_ADAPTERS`.

    Every weight whose name contains a pattern (biases, norms and RTS modules excluded) goes to the
    first matching group: ``down_blocks``/``conv_in`` (encoder), ``up_blocks``/``conv_out`` (decoder),
    anything else (others: the mid block). Names are full module paths, as the release passes them to peft.
    """
    groups: dict[str, list[str]] = {name: [] for name in UNET_ADAPTERS}
    patterns = list(patterns)
    for name in plain_parameter_names(unet):
        if "bias" in name or "norm" in name or "RTS" in name or not any(p in name for p in patterns):
            continue
        module = name.removesuffix(".weight")
        if "down_blocks" in name or "conv_in" in name:
            groups["default_encoder"].append(module)
        elif "up_blocks" in name or "conv_out" in name:
            groups["default_decoder"].append(module)
        else:
            groups["default_others"].append(module)
    return groups


def plain_parameter_names(module: nn.Module) -> list[str]:
    """Parameter names as the module has them without LoRA (peft's ``.base_layer`` dropped, adapters skipped)."""
    return [n.replace(".base_layer.", ".") for n, _ in module.named_parameters() if "lora_" not in n]


State = dict[str, Any]


def unet_stages(unet: UNet2DConditionModel) -> list[Stage]:
    """The UNet's forward as stages over a dict state of frames tensors (``x``, ``t``, ``ctx``; see :func:`run_unet`).

    The last stage returns the output frames ``[B*T, c, h, w]``.
    """
    down_rts = getattr(unet, "video_down_RTS_blocks", None)
    up_rts = getattr(unet, "video_up_RTS_blocks", None)
    stages: list[Stage] = []

    def embed(state: State) -> State:
        x = state["x"]
        emb = unet.time_embedding(unet.time_proj(state["t"]).to(dtype=x.dtype))
        h = unet.conv_in(x)
        # x_size (ints, not sliced by the runner) tells the up blocks whether to forward upsample sizes.
        return {"h": h, "emb": emb, "ctx": state["ctx"], "skips": (h,), "x_size": state["x_size"]}

    stages.append(spatial(embed))
    for i, block in enumerate(unet.down_blocks):

        def down(state: State, block: nn.Module = block) -> State:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=state["h"], temb=state["emb"], encoder_hidden_states=state["ctx"])
            else:
                h, res = block(hidden_states=state["h"], temb=state["emb"])
            return {**state, "h": h, "skips": state["skips"] + tuple(res)}

        stages.append(spatial(down))
        if down_rts is not None:
            stages += down_rts[i].stages("h")  # after the down block: RTS on its output, not on the skips

    def mid(state: State) -> State:
        h = unet.mid_block(state["h"], state["emb"], encoder_hidden_states=state["ctx"])
        return {**state, "h": h}

    stages.append(spatial(mid))
    factor = 2**unet.num_upsamplers
    for i, block in enumerate(unet.up_blocks):
        if up_rts is not None:
            stages += up_rts[i].stages("h")  # before the up block
        final = i == len(unet.up_blocks) - 1

        def up(state: State, block: nn.Module = block, final: bool = final) -> State:
            skips = state["skips"]
            count = len(block.resnets)
            res, rest = skips[-count:], skips[:-count]
            h = state["h"]
            size = None
            if not final and any(s % factor for s in state["x_size"]):
                size = rest[-1].shape[2:]  # diffusers' upsample_size for sizes that are not multiples
            if getattr(block, "has_cross_attention", False):
                h = block(
                    hidden_states=h,
                    temb=state["emb"],
                    res_hidden_states_tuple=res,
                    encoder_hidden_states=state["ctx"],
                    upsample_size=size,
                )
            else:
                h = block(hidden_states=h, temb=state["emb"], res_hidden_states_tuple=res, upsample_size=size)
            return {**state, "h": h, "skips": rest}

        stages.append(spatial(up))

    def out(state: State) -> torch.Tensor:
        h = state["h"]
        if unet.conv_norm_out is not None:
            h = unet.conv_act(unet.conv_norm_out(h))
        return unet.conv_out(h)

    stages.append(spatial(out))
    return stages


def run_unet(
    unet: UNet2DConditionModel,
    x: torch.Tensor,
    timestep: torch.Tensor,
    context: torch.Tensor,
    frames_per_batch: int | None = None,
) -> torch.Tensor:
    """The UNet with its RTS modules on a clip: ``x [B, c, T, h, w]``, ``timestep [B]``, ``context [B, L, D]``
    -> epsilon ``[B, c, T, h, w]``.

    ``frames_per_batch``: at most this many frames per spatial call (TAI); ``None`` runs all frames at once.
    """
    b, _, t, h, w = x.shape
    frames = video_to_frames(x)
    timesteps = repeat_per_frame(timestep.reshape(b).to(x.device), t)
    state = {"x": frames, "t": timesteps, "ctx": repeat_per_frame(context, t), "x_size": (h, w)}
    out = BlockwiseRunner(unet_stages(unet), frames_per_batch=frames_per_batch).run_frames(state, t)
    return frames_to_video(out, t)
