"""The authors' released weights load with no missing or unexpected keys: tiny files written in exactly their layout.

The key lists are built here from the release's code (``models/unet.py``, ``unet_blocks.py``, ``attention.py``,
``temporal_module.py``, ``resnet.py``; ``autoencoder_kl_TE_3DVAE.py``, ``unet_3d_blocks_forvae.py``) with the module
names and tensor shapes its classes create, not from this plugin's code.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.autoencoders.vae import Encoder

from diffvsr import DiffVSR
from diffvsr.presets import te3dvae_config, unet_config
from diffvsr.te3dvae import TemporalEnhancedVAE
from diffvsr.unet import inflate_unet
from diffvsr.weights import load_release_unet, load_te3dvae_file
from vsr_core.errors import PretrainedError

Shapes = dict[str, tuple[int, ...]]


def _resnet3dcnn(prefix: str, c: int, kernel: tuple[int, int, int], temb: int | None) -> Shapes:
    # ResnetBlock3DCNN: norm1, conv1 (kernel), [time_emb_proj], norm2, conv2 (3, 1, 1)
    shapes = {
        f"{prefix}norm1.weight": (c,),
        f"{prefix}norm1.bias": (c,),
        f"{prefix}conv1.weight": (c, c, *kernel),
        f"{prefix}conv1.bias": (c,),
        f"{prefix}norm2.weight": (c,),
        f"{prefix}norm2.bias": (c,),
        f"{prefix}conv2.weight": (c, c, 3, 1, 1),
        f"{prefix}conv2.bias": (c,),
    }
    if temb is not None:
        shapes.update({f"{prefix}time_emb_proj.weight": (c, temb), f"{prefix}time_emb_proj.bias": (c,)})
    return shapes


def _temporal_attention(prefix: str, c: int, heads: int) -> Shapes:
    # TemporalAttention(CrossAttention, bias=False): to_q/k/v, to_out.0 (+bias), time_rel_pos_bias, shared rotary_emb
    shapes = {f"{prefix}to_{n}.weight": (c, c) for n in "qkv"}
    shapes.update(
        {
            f"{prefix}to_out.0.weight": (c, c),
            f"{prefix}to_out.0.bias": (c,),
            f"{prefix}time_rel_pos_bias.relative_attention_bias.weight": (32, heads),
            f"{prefix}rotary_emb.freqs": (16,),
        }
    )
    return shapes


def _resnet3d(prefix: str, c: int, temb: int) -> Shapes:
    # ResnetBlock3D (InflatedConv3d = Conv2d): norm1, conv1 3x3, time_emb_proj, norm2, conv2 3x3
    return {
        f"{prefix}norm1.weight": (c,),
        f"{prefix}norm1.bias": (c,),
        f"{prefix}conv1.weight": (c, c, 3, 3),
        f"{prefix}conv1.bias": (c,),
        f"{prefix}time_emb_proj.weight": (c, temb),
        f"{prefix}time_emb_proj.bias": (c,),
        f"{prefix}norm2.weight": (c,),
        f"{prefix}norm2.bias": (c,),
        f"{prefix}conv2.weight": (c, c, 3, 3),
        f"{prefix}conv2.bias": (c,),
    }


def release_unet_shapes(config: dict) -> Shapes:
    """Every tensor of the release's UNet3DVSRModel for ``config`` (msatten, no video_condition, all temporal idx)."""
    spatial = UNet2DConditionModel(**config)  # the release's spatial modules carry diffusers' names
    shapes: Shapes = {k: tuple(v.shape) for k, v in spatial.state_dict().items()}
    channels = list(config["block_out_channels"])
    temb = channels[0] * 4
    heads = config["attention_head_dim"]
    heads = heads if isinstance(heads, list) else [heads] * len(channels)
    layers = config["layers_per_block"]
    shapes["temporal_rotary_emb.freqs"] = (16,)
    attention_blocks = []
    for i, kind in enumerate(config["down_block_types"]):
        if kind.startswith("CrossAttn"):
            attention_blocks += [(f"down_blocks.{i}.attentions.{j}", channels[i], heads[i]) for j in range(layers)]
    attention_blocks.append(("mid_block.attentions.0", channels[-1], heads[-1]))
    for i, kind in enumerate(config["up_block_types"]):
        c, h = list(reversed(channels))[i], list(reversed(heads))[i]
        if kind.startswith("CrossAttn"):
            attention_blocks += [(f"up_blocks.{i}.attentions.{j}", c, h) for j in range(layers + 1)]
    for prefix, c, h in attention_blocks:
        shapes.update(_resnet3dcnn(f"{prefix}.resblock_temporal.", c, (3, 1, 1), None))
        block = f"{prefix}.transformer_blocks.0."
        shapes.update(_temporal_attention(f"{block}attn_temporal.", c, h))
        shapes.update(_temporal_attention(f"{block}attn_temporal_small.", c, h))
        for norm in ("norm_temporal", "norm_temporal_small"):
            shapes.update({f"{block}{norm}.weight": (c,), f"{block}{norm}.bias": (c,)})
        shapes.update(
            {
                f"{block}temporal_down_conv.weight": (c, c, 3, 3),
                f"{block}temporal_down_conv.bias": (c,),
                f"{block}temporal_up_conv.weight": (c, c, 4, 4),
                f"{block}temporal_up_conv.bias": (c,),
            }
        )
    modules = [(f"down_temporal_blocks.{i}.", c) for i, c in enumerate(channels)] + [
        ("mid_temporal_block.", channels[-1])
    ]
    modules += [(f"up_temporal_blocks.{i}.", c) for i, c in enumerate(reversed(channels))]
    for prefix, c in modules:
        shapes.update(_resnet3dcnn(f"{prefix}resblocks_3d_t.", c, (5, 1, 1), temb))
        shapes.update(_resnet3d(f"{prefix}resblocks_3d_s.", c, temb))
        shapes.update({f"{prefix}shift_conv.weight": (c, c, 1, 1), f"{prefix}shift_conv.bias": (c,)})
    return shapes


def _random_state(shapes: Shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    from diffvsr.temporal_attention import rotary_frequencies

    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}
    for k in state:
        if k.endswith("rotary_emb.freqs"):
            state[k] = rotary_frequencies(32)  # RotaryEmbedding(32)'s frozen parameter
    return state


@pytest.fixture(scope="module")
def release_unet_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    state = _random_state(release_unet_shapes(unet_config("tiny")))
    path = tmp_path_factory.mktemp("release") / "DiffVSR_UNet.pt"
    torch.save({"ema": state, "step": 100}, path)
    return path, state


def _tiny_inflated() -> UNet2DConditionModel:
    torch.manual_seed(1)
    return inflate_unet(UNet2DConditionModel(**unet_config("tiny")))


def test_release_unet_checkpoint_loads_with_no_missing_or_unexpected_keys(release_unet_file):
    path, release = release_unet_file
    unet = _tiny_inflated()
    load_release_unet(unet, path)  # strict: raises on any missing / unexpected key
    own = unet.state_dict()
    block = "attentions.0.transformer_blocks.0"
    pairs = {
        "down_temporal_blocks.1.shift_conv.weight": "down_blocks.1.temporal.shift_conv.weight",
        "mid_temporal_block.resblocks_3d_t.conv1.weight": "mid_block.temporal.temporal_resnet.conv1.weight",
        "up_temporal_blocks.2.resblocks_3d_s.time_emb_proj.weight": (
            "up_blocks.2.temporal.spatial_resnet.time_emb_proj.weight"
        ),
        "up_blocks.0.attentions.1.resblock_temporal.conv2.weight": "up_blocks.0.resnets.1.temporal.conv2.weight",
        f"down_blocks.1.{block}.attn_temporal.to_out.0.weight": f"down_blocks.1.{block}.msta.attention.to_out.weight",
        f"mid_block.{block}.attn_temporal_small.time_rel_pos_bias.relative_attention_bias.weight": (
            f"mid_block.{block}.msta.attention_small.position_bias.relative_attention_bias.weight"
        ),
        f"up_blocks.1.{block}.temporal_up_conv.weight": f"up_blocks.1.{block}.msta.up_conv.weight",
        f"down_blocks.2.{block}.attn1.to_q.weight": f"down_blocks.2.{block}.attn1.to_q.weight",
        "conv_in.weight": "conv_in.weight",
    }
    for theirs, ours in pairs.items():
        assert torch.equal(own[ours], release[theirs]), theirs
    non_constant = [k for k in release if not k.endswith("rotary_emb.freqs")]
    assert len(own) == len(non_constant)


def test_release_unet_through_the_method(release_unet_file):
    path, release = release_unet_file
    method = DiffVSR(preset="tiny", release_unet=str(path), temporal_layers={"group_norm": "clip"})
    assert torch.equal(
        method.unet.state_dict()["mid_block.temporal.shift_conv.bias"], release["mid_temporal_block.shift_conv.bias"]
    )
    lq = torch.rand(1, 3, 4, 8, 8) * 2 - 1
    assert method.restore(lq, num_inference_steps=2).shape == (1, 3, 4, 32, 32)


def test_release_unet_mismatches_name_the_first_keys(release_unet_file, tmp_path):
    _, release = release_unet_file
    broken = dict(release)
    broken.pop("down_temporal_blocks.0.shift_conv.bias")
    broken["up_temporal_blocks.0.extra.weight"] = torch.zeros(1)
    torch.save({"ema": broken}, tmp_path / "broken.pt")
    with pytest.raises(
        PretrainedError,
        match=r"1 missing \(first: down_blocks\.0\.temporal\.shift_conv\.bias\); "
        r"1 unexpected \(first: up_blocks\.0\.temporal\.extra\.weight\)",
    ):
        load_release_unet(_tiny_inflated(), tmp_path / "broken.pt")
    wrong = dict(release)
    wrong["temporal_rotary_emb.freqs"] = torch.ones(16)
    torch.save(wrong, tmp_path / "rotary.pt")  # a plain state dict is read as well
    with pytest.raises(PretrainedError, match="rotary frequencies"):
        load_release_unet(_tiny_inflated(), tmp_path / "rotary.pt")
    no_msta = inflate_unet(UNet2DConditionModel(**unet_config("tiny")), {"msta": False})
    with pytest.raises(PretrainedError, match="unexpected"):
        load_release_unet(no_msta, release_unet_file[0])


def release_te3dvae_shapes(config: dict) -> Shapes:
    """Every tensor of the release's TE-3DVAE (AutoencoderKLTemporalDecoder of autoencoder_kl_TE_3DVAE.py)."""
    encoder = Encoder(
        out_channels=config["latent_channels"],
        down_block_types=tuple(config["down_block_types"]),
        block_out_channels=tuple(config["block_out_channels"]),
        layers_per_block=config["layers_per_block"],
        double_z=True,
    )
    shapes: Shapes = {f"encoder.{k}": tuple(v.shape) for k, v in encoder.state_dict().items()}
    z, channels, layers = config["latent_channels"], list(config["block_out_channels"]), config["layers_per_block"]
    shapes.update(
        {
            "quant_conv.weight": (2 * z, 2 * z, 1, 1),
            "quant_conv.bias": (2 * z,),
            "post_quant_conv.weight": (z, z, 1, 1),
            "post_quant_conv.bias": (z,),
        }
    )

    def conv(prefix: str, c_out: int, c_in: int, *kernel: int) -> None:
        shapes[f"{prefix}.weight"], shapes[f"{prefix}.bias"] = (c_out, c_in, *kernel), (c_out,)

    def norm(prefix: str, c: int) -> None:
        shapes[f"{prefix}.weight"], shapes[f"{prefix}.bias"] = (c,), (c,)

    def spatio_temporal(prefix: str, c_in: int, c_out: int) -> None:
        s = f"{prefix}.spatial_res_block"
        (
            norm(f"{s}.norm1", c_in),
            conv(f"{s}.conv1", c_out, c_in, 3, 3),
            norm(f"{s}.norm2", c_out),
            conv(f"{s}.conv2", c_out, c_out, 3, 3),
        )
        if c_in != c_out:
            conv(f"{s}.conv_shortcut", c_out, c_in, 1, 1)
        t = f"{prefix}.temporal_res_block"
        (
            norm(f"{t}.norm1", c_out),
            conv(f"{t}.conv1", c_out, c_out, 3, 3, 3),
            norm(f"{t}.norm2", c_out),
            conv(f"{t}.conv2", c_out, c_out, 3, 3, 3),
        )
        shapes[f"{prefix}.time_mixer.mix_factor"] = (1,)

    top = channels[-1]
    conv("decoder.conv_in", top, z, 3, 3)
    for j in range(layers):
        spatio_temporal(f"decoder.mid_block.resnets.{j}", top, top)
    a = "decoder.mid_block.attentions.0"
    norm(f"{a}.norm", top)
    for name in ("q", "k", "v", "proj_out"):
        conv(f"{a}.{name}", top, top, 1, 1)
    m = f"{a}.time_mix_block"
    for name in ("norm_in", "norm1", "norm2", "norm3"):
        norm(f"{m}.{name}", top)
    for ff in ("ff_in", "ff"):
        conv(f"{m}.{ff}.net.0.proj", 8 * top, top)  # GEGLU(dim, 4 dim): Linear(dim, 8 dim)
        conv(f"{m}.{ff}.net.2", top, 4 * top)
    for attn in ("attn1", "attn2"):
        for name in ("to_q", "to_k", "to_v"):
            shapes[f"{m}.{attn}.{name}.weight"] = (top, top)
        conv(f"{m}.{attn}.to_out.0", top, top)
    conv(f"{a}.video_time_embed.0", 4 * top, top), conv(f"{a}.video_time_embed.2", top, 4 * top)
    shapes[f"{a}.mix_factor"] = (1,)
    previous = top
    for i, c in enumerate(reversed(channels)):
        for j in range(layers + 1):
            spatio_temporal(f"decoder.up_blocks.{i}.resnets.{j}", previous if j == 0 else c, c)
        if i < len(channels) - 1:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", c, c, 3, 3)
        previous = c
    norm("decoder.conv_norm_out", channels[0])
    conv("decoder.conv_out", 3, channels[0], 3, 3)
    conv("decoder.time_conv_out", 3, 3, 3, 3, 3)
    return shapes


def test_te3dvae_file_loads_strictly_and_feeds_diffvsr(tmp_path):
    config = te3dvae_config("tiny")
    state = _random_state(release_te3dvae_shapes(config), seed=3)
    path = tmp_path / "TE-3DVAE.pt"
    torch.save(state, path)
    vae = TemporalEnhancedVAE(**config)
    load_te3dvae_file(vae, path)
    assert set(vae.state_dict()) == set(state)
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in state.items())
    method = DiffVSR(preset="tiny", vae="te-3dvae", vae_weights=str(path))
    assert torch.equal(method.codec.vae.decoder.time_conv_out.weight, state["decoder.time_conv_out.weight"])
    # A 3DVAE (no temporal attention) does not take a TE-3DVAE file: the first extra keys are named.
    with pytest.raises(
        PretrainedError, match=r"unexpected \(first: decoder\.mid_block\.attentions\.0\.time_mix_block"
    ):
        DiffVSR(preset="tiny", vae="3dvae", vae_weights=str(path))


def test_te3dvae_file_with_other_keys_names_them(tmp_path):
    state = _random_state(release_te3dvae_shapes(te3dvae_config("tiny")))
    renamed = {k.replace("decoder.time_conv_out", "decoder.conv_time_out"): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "bad.pt")
    with pytest.raises(
        PretrainedError,
        match=r"2 missing \(first: decoder\.time_conv_out\.weight, decoder\.time_conv_out\.bias\); "
        r"2 unexpected \(first: decoder\.conv_time_out",
    ):
        load_te3dvae_file(TemporalEnhancedVAE(**te3dvae_config("tiny")), tmp_path / "bad.pt")
    torch.save({"weights": [1, 2]}, tmp_path / "nothing.pt")
    with pytest.raises(PretrainedError, match="holds no state dict"):
        load_te3dvae_file(TemporalEnhancedVAE(**te3dvae_config("tiny")), tmp_path / "nothing.pt")
    wrong = copy.copy(state)
    wrong["decoder.conv_out.weight"] = torch.zeros(3, 32, 1, 1)
    torch.save(wrong, tmp_path / "shape.pt")
    with pytest.raises(PretrainedError, match=r"decoder\.conv_out\.weight is \(3, 32, 1, 1\) in the file"):
        load_te3dvae_file(TemporalEnhancedVAE(**te3dvae_config("tiny")), tmp_path / "shape.pt")
