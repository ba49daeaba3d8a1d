"""The LQ ControlNet branch of the denoiser (Sec. 3.2; the Vivid-VR-style branch the paper cites).

A trainable copy of the first ``num_layers`` CogVideoX blocks with the base model's patch and time
embeddings plus its own :class:`~satb.control_embed.ControlPatchEmbed` that reads the LQ latent. It
returns the video-token state after each of its blocks; the main transformer's zero-initialized
connectors consume them. Module names and config keys follow the release's ``controlnet/`` folder
(``patch_embed``, ``time_embedding``, ``transformer_blocks``, ``control_patch_embed``), so it loads
with :meth:`from_pretrained` and saves with :meth:`save_pretrained` in that layout.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.embeddings import (
    CogVideoXPatchEmbed,
    TimestepEmbedding,
    Timesteps,
)
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from torch import nn

from satb.control_embed import ControlPatchEmbed
from satb.denoiser import time_embedding

__all__ = ["SHARED_CONFIG_KEYS", "SATBControlNet"]

# Config keys of the base transformer that the ControlNet shares (everything but the output head).
SHARED_CONFIG_KEYS = (
    "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "flip_sin_to_cos", "freq_shift",
    "time_embed_dim", "ofs_embed_dim", "text_embed_dim", "dropout", "attention_bias", "sample_width",
    "sample_height", "sample_frames", "patch_size", "patch_size_t", "temporal_compression_ratio",
    "max_text_seq_length", "activation_fn", "timestep_activation_fn", "norm_elementwise_affine", "norm_eps",
    "spatial_interpolation_scale", "temporal_interpolation_scale", "use_rotary_positional_embeddings",
    "use_learned_positional_embeddings", "patch_bias",
)  # fmt: skip


class SATBControlNet(ModelMixin, ConfigMixin, PeftAdapterMixin):
    """LQ ControlNet: ``(x_t, text, t, z_LQ) → tuple of num_layers states [B, N, width]``.

    ``forward(hidden_states [B,F,C,H,W], encoder_hidden_states [B,L,D_text], timestep [B],
    control_latents [B,F,C,H,W], image_rotary_emb)``; ``N = (F/p_t)(H/p)(W/p)``.
    Arguments are CogVideoX's (see ``CogVideoXTransformer3DModel``) plus the LQ-embedding width
    ``control_hidden_channels`` and its GroupNorm ``control_groups``.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules: ClassVar[list[str]] = ["CogVideoXBlock", "CogVideoXPatchEmbed"]

    # Copied from diffusers.models.transformers.cogvideox_transformer_3d.CogVideoXTransformer3DModel.__init__
    # (the signature, as the release's CogVideoXControlnet; num_layers 6, the LQ-embedding arguments follow)
    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 6,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        control_hidden_channels: int = 320,
        control_groups: tuple[int, int] = (16, 32),
    ) -> None:
        super().__init__()
        width = num_attention_heads * attention_head_dim
        self.patch_embed = CogVideoXPatchEmbed(
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            in_channels=in_channels,
            embed_dim=width,
            text_embed_dim=text_embed_dim,
            bias=patch_bias,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_positional_embeddings=not use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
        )
        self.embedding_dropout = nn.Dropout(dropout)
        self.time_proj = Timesteps(width, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(width, time_embed_dim, timestep_activation_fn)
        self.transformer_blocks = nn.ModuleList(
            CogVideoXBlock(
                dim=width,
                num_attention_heads=num_attention_heads,
                attention_head_dim=attention_head_dim,
                time_embed_dim=time_embed_dim,
                dropout=dropout,
                activation_fn=activation_fn,
                attention_bias=attention_bias,
                norm_elementwise_affine=norm_elementwise_affine,
                norm_eps=norm_eps,
            )
            for _ in range(num_layers)
        )
        self.control_patch_embed = ControlPatchEmbed(
            in_channels,
            width,
            text_embed_dim,
            time_embed_dim,
            patch_size,
            patch_size_t,
            control_hidden_channels,
            tuple(control_groups),
        )
        self.gradient_checkpointing = False

    @classmethod
    def from_transformer(
        cls,
        transformer: Any,
        num_layers: int = 6,
        control_hidden_channels: int = 320,
        control_groups: tuple[int, int] = (16, 32),
    ) -> SATBControlNet:
        """A ControlNet whose embeddings and blocks are fp32 copies of ``transformer``'s first ``num_layers``.

        Built on the meta device and given the copies, so no random weights are drawn for the
        copied parts (at full size 0.8 B parameters); only the LQ patch embedding is initialized.
        A ``transformer`` on the meta device gives a ControlNet on the meta device.
        """
        if num_layers > transformer.config.num_layers:
            raise ValueError(f"a {num_layers}-block ControlNet needs a base with at least as many blocks")
        config = {key: transformer.config[key] for key in SHARED_CONFIG_KEYS}
        arguments = dict(
            **config,
            num_layers=num_layers,
            control_hidden_channels=control_hidden_channels,
            control_groups=tuple(control_groups),
        )
        first = next(transformer.parameters())
        if first.device.type == "meta":
            return cls(**arguments)
        with torch.device("meta"):
            controlnet = cls(**arguments)
        copied = {
            name: tensor.to(dtype=torch.float32, copy=True)
            for name, tensor in transformer.state_dict().items()
            if name.startswith(("patch_embed.", "time_embedding."))
            or (name.startswith("transformer_blocks.") and int(name.split(".")[1]) < num_layers)
        }
        result = controlnet.load_state_dict(copied, strict=False, assign=True)
        if result.unexpected_keys:
            raise ValueError(f"the base's weights do not fit the ControlNet: {result.unexpected_keys[:3]}")
        for name, buffer in transformer.patch_embed.named_buffers():  # non-persistent position tables
            path, _, attr = name.rpartition(".")
            if name not in transformer.patch_embed.state_dict():
                controlnet.patch_embed.get_submodule(path)._buffers[attr] = buffer.to(dtype=torch.float32, copy=True)
        controlnet.control_patch_embed = ControlPatchEmbed(
            config["in_channels"],
            config["num_attention_heads"] * config["attention_head_dim"],
            config["text_embed_dim"],
            config["time_embed_dim"],
            config["patch_size"],
            config["patch_size_t"],
            control_hidden_channels,
            tuple(control_groups),
        ).to(first.device)
        return controlnet

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        control_latents: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        conditioning_scale: float = 1.0,
    ) -> tuple[torch.Tensor, ...]:
        emb = time_embedding(self, timestep, hidden_states.dtype)
        tokens = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))
        tokens = self.control_patch_embed(control_latents, encoder_hidden_states, tokens, emb)
        text_len = encoder_hidden_states.shape[1]
        text, hidden = tokens[:, :text_len], tokens[:, text_len:]
        states = []
        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden, text = self._gradient_checkpointing_func(block, hidden, text, emb, image_rotary_emb, None)
            else:
                hidden, text = block(
                    hidden_states=hidden, encoder_hidden_states=text, temb=emb, image_rotary_emb=image_rotary_emb
                )
            states.append(hidden * conditioning_scale)
        return tuple(states)
