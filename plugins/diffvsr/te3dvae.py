"""TE-3DVAE: the SD x4 upscaler's VAE with a temporal-enhanced decoder (paper v2 Sec. 3.4, Table 5; v1 Sec. 3.3).

A port of the release's ``models/autoencoder_kl_TE_3DVAE.py``, which reuses diffusers' class name
``AutoencoderKLTemporalDecoder`` (Stable Video Diffusion's VAE) for a different decoder; its ``TE-3DVAE.pt`` loads
into :class:`TemporalEnhancedVAE` with the same keys (:func:`diffvsr.weights.load_te3dvae_file`).

* Encoder: the SD 2D encoder (diffusers ``Encoder``) + ``quant_conv``: frames are encoded one by one.
* Decoder (``num_frames`` clip-major frames at once): ``post_quant_conv``, ``conv_in``; a mid block of ResNets and one
  attention; up blocks of ResNets; ``conv_norm_out``, ``conv_out``, then ``time_conv_out``, a 3x3x3 convolution over
  (time, height, width). Every ResNet is a diffusers ``SpatioTemporalResBlock``: the 2D ResNet followed by a *3D
  residual block* (here with 3x3x3 kernels, where SVD's have 3x1x1), blended by a learned factor ("a 3D residual
  block after each 2D one"). The mid attention is spatial self-attention followed by *temporal attention* (a
  single-head transformer over the frames of every position, with a frame-index embedding, blended by a learned
  factor: the release's ``MemoryEfficientVideoBlock``) -- "temporal attention after spatial attention".

Table 5's rows: ``TE-3DVAE`` (this class), ``3DVAE`` (``temporal_attention=False``: the 3D residual blocks only) and
``2DVAE`` (the SD x4 upscaler's ``AutoencoderKL``). :meth:`TemporalEnhancedVAE.from_autoencoder_kl` starts a
TE-3DVAE (or 3DVAE) from a 2D VAE with every temporal part at the identity, so it decodes exactly as the 2D VAE does
until it is trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution, Encoder
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import SpatioTemporalResBlock
from diffusers.models.unets.unet_3d_blocks import UpBlockTemporalDecoder
from torch import nn

from vsr_core.errors import ConfigError
from vsr_core.nn import zero_module

__all__ = ["FrameTransformer", "SpatialAttention", "TemporalEnhancedVAE", "VideoAttentionBlock"]

#: Name parts of the decoder's temporal weights (everything else has a counterpart in the SD 2D VAE).
_TEMPORAL_PARTS = (
    "temporal_res_block",
    "time_mixer",
    "time_mix_block",
    "video_time_embed",
    "mix_factor",
    "time_conv_out",
)


def _use_3d_kernels(block: SpatioTemporalResBlock, kernel: int) -> None:
    """Give the temporal residual block of ``block`` ``kernel^3`` convolutions (the release's; SVD's are 3x1x1)."""
    temporal = block.temporal_res_block
    for name in ("conv1", "conv2"):
        conv = getattr(temporal, name)
        setattr(temporal, name, nn.Conv3d(conv.in_channels, conv.out_channels, kernel, padding=kernel // 2))


def _resblock(in_channels: int, out_channels: int, kernel: int) -> SpatioTemporalResBlock:
    block = SpatioTemporalResBlock(
        in_channels, out_channels, temb_channels=None, eps=1e-6, temporal_eps=1e-5, merge_factor=0.0,
        merge_strategy="learned", switch_spatial_to_temporal_mix=True,
    )  # fmt: skip
    _use_3d_kernels(block, kernel)
    return block


class SpatialAttention(nn.Module):
    """Single-head self-attention over the pixels of each frame (LDM's ``AttnBlock``): ``[N, C, H, W] -> [N, HW, C]``.

    Returns the attention output *before* ``proj_out`` (the caller projects and adds the residual), as the release.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = (conv(h).flatten(2).transpose(1, 2)[:, None] for conv in (self.q, self.k, self.v))
        return F.scaled_dot_product_attention(q, k, v)[:, 0]  # [N, HW, C], scale C^-1/2


class FrameTransformer(nn.Module):
    """A single-head transformer over the frames of every position (SVD's ``VideoTransformerBlock`` with ``ff_in``).

    Tokens ``[B*T, S, C]`` -> same: viewed as ``[B*S, T, C]``, then ``x + FF_in(LN(x))``, ``x + Attn1(LN(x))``,
    ``x + Attn2(LN(x))`` (both self-attention over ``T``), ``x + FF(LN(x))``, with GEGLU feed-forwards of width ``4C``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(channels)
        self.ff_in = FeedForward(channels, dim_out=channels, mult=4, activation_fn="geglu")
        self.attn1 = Attention(query_dim=channels, heads=1, dim_head=channels, bias=False, out_bias=True)
        self.norm1 = nn.LayerNorm(channels)
        self.attn2 = Attention(query_dim=channels, heads=1, dim_head=channels, bias=False, out_bias=True)
        self.norm2 = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, dim_out=channels, mult=4, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(channels)

    def output_layers(self) -> list[nn.Module]:
        """The last layer of each residual branch (zeroed to make the block the identity)."""
        return [self.ff_in.net[2], self.attn1.to_out[0], self.attn2.to_out[0], self.ff.net[2]]

    def forward(self, tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        bt, s, c = tokens.shape
        b = bt // num_frames
        x = tokens.reshape(b, num_frames, s, c).transpose(1, 2).reshape(b * s, num_frames, c)
        x = self.ff_in(self.norm_in(x)) + x
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x)) + x
        x = self.ff(self.norm3(x)) + x
        return x.reshape(b, s, num_frames, c).transpose(1, 2).reshape(bt, s, c)


class VideoAttentionBlock(SpatialAttention):
    """The TE-3DVAE's mid attention (release ``MemoryEfficientVideoBlock``): frames ``[B*T, C, H, W] -> same``.

    ``x + proj_out(h)`` with ``h = a`` (spatial attention output ``a``) when ``temporal`` is off, else
    ``h = s a + (1 - s) FT(a + E(frame index))``, ``s = sigmoid(mix_factor)`` (0.5 at the start), ``FT`` a
    :class:`FrameTransformer` and ``E`` an MLP of the sinusoidal frame-index embedding.
    """

    def __init__(self, channels: int, temporal: bool = True) -> None:
        super().__init__(channels)
        self.temporal = temporal
        if temporal:
            self.time_mix_block = FrameTransformer(channels)
            self.video_time_embed = nn.Sequential(
                nn.Linear(channels, 4 * channels), nn.SiLU(), nn.Linear(4 * channels, channels)
            )
            self.mix_factor = nn.Parameter(torch.tensor([0.5]))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        n, c, height, width = x.shape
        a = self.attend(x)  # [N, HW, C]
        if self.temporal:
            frame = torch.arange(num_frames, device=x.device).repeat(n // num_frames)
            embedding = get_timestep_embedding(frame, c, flip_sin_to_cos=True, downscale_freq_shift=0).to(a.dtype)
            mixed = self.time_mix_block(a + self.video_time_embed(embedding)[:, None, :], num_frames)
            share = torch.sigmoid(self.mix_factor).to(a.dtype)
            a = share * a + (1.0 - share) * mixed
        return x + self.proj_out(a.transpose(1, 2).reshape(n, c, height, width))


class _MidBlock(nn.Module):
    """ResNet, then (attention, ResNet) pairs: ``layers`` ResNets and one :class:`VideoAttentionBlock`."""

    def __init__(self, channels: int, layers: int, kernel: int, temporal_attention: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(_resblock(channels, channels, kernel) for _ in range(layers))
        self.attentions = nn.ModuleList([VideoAttentionBlock(channels, temporal_attention)])

    def forward(self, x: torch.Tensor, indicator: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, image_only_indicator=indicator)
        for attention, resnet in zip(self.attentions, self.resnets[1:]):
            x = resnet(attention(x, indicator.shape[-1]), image_only_indicator=indicator)
        return x


class _TemporalEnhancedDecoder(nn.Module):
    """Latents ``[B*T, c, h, w]`` (clip-major) -> frames ``[B*T, 3, h*f, w*f]`` (module docstring)."""

    def __init__(
        self, latent_channels: int, out_channels: int, block_out_channels: list[int], layers_per_block: int,
        time_kernel: int, temporal_attention: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        top = block_out_channels[-1]
        self.conv_in = nn.Conv2d(latent_channels, top, 3, padding=1)
        self.mid_block = _MidBlock(top, layers_per_block, time_kernel, temporal_attention)
        self.up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(block_out_channels))
        previous = reversed_channels[0]
        for i, channels in enumerate(reversed_channels):
            block = UpBlockTemporalDecoder(
                previous, channels, num_layers=layers_per_block + 1, add_upsample=i < len(block_out_channels) - 1
            )
            for resnet in block.resnets:
                _use_3d_kernels(resnet, time_kernel)
            self.up_blocks.append(block)
            previous = channels
        self.conv_norm_out = nn.GroupNorm(32, block_out_channels[0], eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1)
        self.time_conv_out = nn.Conv3d(out_channels, out_channels, time_kernel, padding=time_kernel // 2)

    def forward(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        indicator = torch.zeros(z.shape[0] // num_frames, num_frames, dtype=z.dtype, device=z.device)
        x = self.mid_block(self.conv_in(z), indicator)
        for block in self.up_blocks:
            x = block(x, image_only_indicator=indicator)
        x = self.conv_out(self.conv_act(self.conv_norm_out(x)))
        n, c, h, w = x.shape
        video = x.reshape(n // num_frames, num_frames, c, h, w).transpose(1, 2)
        return self.time_conv_out(video).transpose(1, 2).reshape(n, c, h, w)


class TemporalEnhancedVAE(ModelMixin, ConfigMixin):
    """The TE-3DVAE (module docstring): ``encode`` per frame, ``decode(z, num_frames)`` across each clip.

    ``encode(x [N, 3, H, W])`` -> ``AutoencoderKLOutput(latent_dist)`` with ``[N, c, H/f, W/f]``; ``decode(z [B*T, c,
    h, w], num_frames=T)`` -> ``DecoderOutput(sample [B*T, 3, h*f, w*f])``, ``f = 2^(len(block_out_channels) - 1)``.
    The interface :class:`vsr_core.latent.TemporalDecoderCodec` expects of a ``vae_class``. The config arguments are
    the release's ``vae_config.json`` keys plus ``temporal_attention`` (False: Table 5's 3DVAE) and ``time_kernel``.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 3,
        block_out_channels: tuple[int, ...] = (128, 256, 512),
        layers_per_block: int = 2,
        latent_channels: int = 4,
        sample_size: int = 320,
        scaling_factor: float = 0.08333,
        force_upcast: bool = True,
        temporal_attention: bool = True,
        time_kernel: int = 3,
    ) -> None:
        super().__init__()
        if len(down_block_types) != len(block_out_channels):
            raise ConfigError("TE-3DVAE needs one down block type per entry of block_out_channels")
        self.encoder = Encoder(
            in_channels=in_channels, out_channels=latent_channels, down_block_types=tuple(down_block_types),
            block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block, double_z=True,
        )  # fmt: skip
        self.decoder = _TemporalEnhancedDecoder(
            latent_channels, out_channels, list(block_out_channels), layers_per_block, time_kernel, temporal_attention
        )
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        posterior = DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, num_frames: int, return_dict: bool = True) -> DecoderOutput | tuple:
        if z.shape[0] % num_frames:
            raise ValueError(f"{z.shape[0]} latent frames do not split into clips of num_frames={num_frames}")
        decoded = self.decoder(self.post_quant_conv(z), num_frames)
        return DecoderOutput(sample=decoded) if return_dict else (decoded,)

    def forward(self, sample: torch.Tensor, num_frames: int = 1, sample_posterior: bool = False) -> DecoderOutput:
        posterior = self.encode(sample).latent_dist
        z = posterior.sample() if sample_posterior else posterior.mode()
        return self.decode(z, num_frames)

    # ------------------------------------------------------------------ starting from the 2D VAE
    def temporal_output_layers(self) -> list[nn.Module]:
        """The last layer of every temporal branch (zero them, ``time_conv_out`` the identity: a 2D decoder)."""
        layers: list[nn.Module] = []
        for module in self.decoder.modules():
            if isinstance(module, SpatioTemporalResBlock):
                layers.append(module.temporal_res_block.conv2)
            if isinstance(module, VideoAttentionBlock) and module.temporal:
                layers += [*module.time_mix_block.output_layers(), module.video_time_embed[2]]
        return layers

    @classmethod
    def from_autoencoder_kl(cls, vae: AutoencoderKL, **overrides) -> TemporalEnhancedVAE:
        """A TE-3DVAE holding ``vae``'s encoder and 2D decoder weights, its temporal parts at the identity.

        Its decoder then reproduces ``vae``'s on every frame (``time_conv_out`` passes each pixel through, every
        temporal residual branch and the frame transformer output zero). ``overrides``: e.g. ``temporal_attention``.
        """
        cfg = vae.config
        if cfg.layers_per_block != 2:
            raise ConfigError(
                "a TE-3DVAE starts from a 2D VAE with layers_per_block=2 (its mid block has two ResNets)"
            )
        model = cls(
            in_channels=cfg.in_channels, out_channels=cfg.out_channels, down_block_types=tuple(cfg.down_block_types),
            block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
            latent_channels=cfg.latent_channels, sample_size=cfg.sample_size, scaling_factor=cfg.scaling_factor,
            **overrides,
        )  # fmt: skip
        source = vae.state_dict()
        state = {k: v for k, v in source.items() if k.startswith(("encoder.", "quant_conv.", "post_quant_conv."))}
        for key in ("conv_in", "conv_norm_out", "conv_out"):
            for p in ("weight", "bias"):
                state[f"decoder.{key}.{p}"] = source[f"decoder.{key}.{p}"]
        for j in range(2):
            for key, value in source.items():
                prefix = f"decoder.mid_block.resnets.{j}."
                if key.startswith(prefix):
                    state[f"{prefix}spatial_res_block.{key[len(prefix) :]}"] = value
        attn = "decoder.mid_block.attentions.0."
        # diffusers' Attention (linear q/k/v) -> LDM's AttnBlock (1x1 convolutions), the release's layout.
        for ours, theirs in (
            ("norm", "group_norm"),
            ("q", "to_q"),
            ("k", "to_k"),
            ("v", "to_v"),
            ("proj_out", "to_out.0"),
        ):
            weight = source[f"{attn}{theirs}.weight"]
            state[f"{attn}{ours}.weight"] = weight if ours == "norm" else weight[:, :, None, None]
            state[f"{attn}{ours}.bias"] = source[f"{attn}{theirs}.bias"]
        for key, value in source.items():
            if key.startswith("decoder.up_blocks."):
                parts = key.split(".")
                if parts[3] == "resnets":
                    parts.insert(5, "spatial_res_block")
                state[".".join(parts)] = value
        missing, unexpected = model.load_state_dict(state, strict=False)
        untouched = [k for k in missing if not any(part in k for part in _TEMPORAL_PARTS)]
        if unexpected or untouched:
            raise ConfigError(f"the 2D VAE does not map onto a TE-3DVAE (e.g. {(unexpected or untouched)[0]})")
        with torch.no_grad():
            for layer in model.temporal_output_layers():
                zero_module(layer)
            conv = model.decoder.time_conv_out
            conv.weight.zero_()
            conv.bias.zero_()
            centre = conv.kernel_size[0] // 2
            for c in range(conv.out_channels):
                conv.weight[c, c, centre, centre, centre] = 1.0
        return model
