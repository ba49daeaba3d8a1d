"""The conditional video denoiser's main transformer F_d (Sec. 3.2, "Conditional Video Denoiser").

A ``CogVideoXTransformer3DModel`` with two extra modules, named as in the authors' release so that
``connectors.pt`` and ``control_patch_embed.pt`` load as they are:

* ``control_patch_embed`` adds tokens of the LQ latent to the regular patch embedding of ``x_t``
  (the release feeds ``cat([x_t, z_LQ])`` and splits it between the two embeddings);
* ``connectors`` (one per block) inject the ControlNet's block states after each main block.

Both end in zero-initialized layers: a freshly built denoiser computes exactly the base model.
The latent-grid helpers every CogVideoX call of SATB-VR needs live here too: the 3D rotary
embeddings of a latent grid (:func:`rotary_embeddings`) and the first-frame padding of
CogVideoX1.5's two-frame temporal patches (:func:`pad_latent_frames`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.models.transformers.cogvideox_transformer_3d import (
    CogVideoXTransformer3DModel,
)

from satb.connector import Connector
from satb.control_embed import ControlPatchEmbed

__all__ = ["LQConditionedTransformer", "pad_latent_frames", "rotary_embeddings", "time_embedding", "unpatchify"]

RotaryEmbeddings = tuple[torch.Tensor, torch.Tensor]


def pad_latent_frames(latents: torch.Tensor, multiple: int | None) -> tuple[torch.Tensor, int]:
    """Prepend copies of the first latent frame of ``[B,F,C,H,W]`` so ``F`` divides by ``multiple``.

    CogVideoX1.5 patches 2 latent frames per token; the release prepends the first latent frame to
    reach an even count. Returns the padded latents and the number of prepended frames.
    """
    if not multiple or latents.shape[1] % multiple == 0:
        return latents, 0
    extra = multiple - latents.shape[1] % multiple
    return torch.cat([latents[:, :1].expand(-1, extra, -1, -1, -1), latents], dim=1), extra


# Copied from diffusers.pipelines.cogvideo.pipeline_cogvideox.get_resize_crop_region_for_grid (names shortened)
def _crop_region(grid: tuple[int, int], base_width: int, base_height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    # CogVideoX 1.0: the token grid is resized into the training grid keeping its aspect ratio, centred.
    h, w = grid
    if h / w > base_height / base_width:
        resize_h, resize_w = base_height, round(base_height / h * w)
    else:
        resize_w, resize_h = base_width, round(base_width / w * h)
    top, left = round((base_height - resize_h) / 2.0), round((base_width - resize_w) / 2.0)
    return (top, left), (top + resize_h, left + resize_w)


def rotary_embeddings(
    config: Any, latent_frames: int, latent_height: int, latent_width: int, device: torch.device
) -> RotaryEmbeddings | None:
    """``(cos, sin)``, each ``[N, head_dim]`` for ``N`` video tokens, or ``None`` without RoPE.

    The rule of diffusers' ``CogVideoXPipeline._prepare_rotary_positional_embeddings``, except that
    a CogVideoX1.5 grid larger than the training grid extends it instead of failing. ``config`` is
    a CogVideoX transformer config; ``latent_frames`` counts latent frames *before* temporal
    patching (must already be a multiple of ``patch_size_t``).
    """
    if not config.use_rotary_positional_embeddings:
        return None
    p, pt = config.patch_size, config.patch_size_t
    grid = (latent_height // p, latent_width // p)
    if pt is None:
        cos, sin = get_3d_rotary_pos_embed(
            embed_dim=config.attention_head_dim,
            crops_coords=_crop_region(grid, config.sample_width // p, config.sample_height // p),
            grid_size=grid,
            temporal_size=latent_frames,
            device=device,
        )
    else:
        # CogVideoX 1.5: positions are the first rows/columns of a maximal grid (sample size // p);
        # a larger frame extends that grid (its first positions are unchanged) instead of failing.
        max_size = (max(config.sample_height // p, grid[0]), max(config.sample_width // p, grid[1]))
        cos, sin = get_3d_rotary_pos_embed(
            embed_dim=config.attention_head_dim,
            crops_coords=None,
            grid_size=grid,
            temporal_size=(latent_frames + pt - 1) // pt,
            grid_type="slice",
            max_size=max_size,
            device=device,
        )
    return cos.to(device), sin.to(device)


# Adapted from diffusers.models.transformers.cogvideox_transformer_3d.CogVideoXTransformer3DModel.forward (step 1)
def time_embedding(model: Any, timestep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """CogVideoX time embedding ``[B, time_embed_dim]`` of integer timesteps ``[B]``."""
    return model.time_embedding(model.time_proj(timestep).to(dtype), None)


# Adapted from diffusers.models.transformers.cogvideox_transformer_3d.CogVideoXTransformer3DModel.forward (step 5)
def unpatchify(model: Any, tokens: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """Output tokens ``[B, N, p_t·p·p·C]`` → latent ``[B, F, C, H, W]`` (CogVideoX 1.0 and 1.5 layouts)."""
    b = tokens.shape[0]
    p, pt = model.config.patch_size, model.config.patch_size_t
    if pt is None:
        out = tokens.reshape(b, frames, height // p, width // p, -1, p, p)
        return out.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
    out = tokens.reshape(b, (frames + pt - 1) // pt, height // p, width // p, -1, pt, p, p)
    return out.permute(0, 1, 5, 4, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(1, 2)


class LQConditionedTransformer(CogVideoXTransformer3DModel):
    """CogVideoX transformer with an LQ patch embedding and ControlNet connectors (v-prediction).

    ``forward(hidden_states [B,F,C,H,W], encoder_hidden_states [B,L,D_text], timestep [B],
    control_latents [B,F,C,H,W] | None, control_hidden_states list of [B,N,width] | None)``
    → v-prediction ``[B,F,C,H,W]`` (``F`` latent frames, a multiple of ``patch_size_t``).

    All base-model arguments are CogVideoX's; the extra ones:

    Args:
        enable_connector: add one :class:`~satb.connector.Connector` per block.
        enable_control_patchemb: add the LQ :class:`~satb.control_embed.ControlPatchEmbed`.
        connector_heads, connector_dim: connector attention heads and MLP width (48, 512 released).
        control_hidden_channels, control_groups: width and GroupNorm groups of the LQ embedding.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules: ClassVar[list[str]] = ["CogVideoXBlock", "CogVideoXPatchEmbed", "Connector"]

    # Copied from diffusers.models.transformers.cogvideox_transformer_3d.CogVideoXTransformer3DModel.__init__
    # (the signature, so register_to_config records every key; SATB-VR's arguments follow patch_bias)
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
        num_layers: int = 30,
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
        enable_connector: bool = False,
        enable_control_patchemb: bool = False,
        connector_heads: int = 48,
        connector_dim: int = 512,
        control_hidden_channels: int = 320,
        control_groups: tuple[int, int] = (16, 32),
    ) -> None:
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            flip_sin_to_cos=flip_sin_to_cos,
            freq_shift=freq_shift,
            time_embed_dim=time_embed_dim,
            ofs_embed_dim=ofs_embed_dim,
            text_embed_dim=text_embed_dim,
            num_layers=num_layers,
            dropout=dropout,
            attention_bias=attention_bias,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            activation_fn=activation_fn,
            timestep_activation_fn=timestep_activation_fn,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_rotary_positional_embeddings=use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
            patch_bias=patch_bias,
        )
        self.make_lq_modules()

    def make_lq_modules(self) -> None:
        """(Re)build ``connectors`` and ``control_patch_embed`` from the config: fresh, zero-initialized outputs.

        Called by ``__init__``; a denoiser built on the meta device around a base model's weights
        calls it again to give only these new modules real memory (:func:`satb.build.build_denoiser`).
        """
        c = self.config
        width = c.num_attention_heads * c.attention_head_dim
        self.connectors = (
            torch.nn.ModuleList(Connector(width, c.connector_heads, c.connector_dim) for _ in range(c.num_layers))
            if c.enable_connector
            else None
        )
        self.control_patch_embed = (
            ControlPatchEmbed(
                c.in_channels,
                width,
                c.text_embed_dim,
                c.time_embed_dim,
                c.patch_size,
                c.patch_size_t,
                c.control_hidden_channels,
                tuple(c.control_groups),
            )
            if c.enable_control_patchemb
            else None
        )

    def _embed(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        control_latents: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb = time_embedding(self, timestep, hidden_states.dtype)
        tokens = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))
        if self.control_patch_embed is not None:
            if control_latents is None:
                raise ValueError("this denoiser is LQ-conditioned: pass control_latents")
            tokens = self.control_patch_embed(control_latents, encoder_hidden_states, tokens, emb)
        text_len = encoder_hidden_states.shape[1]
        return tokens[:, text_len:], tokens[:, :text_len], emb

    def _blocks(
        self,
        hidden: torch.Tensor,
        text: torch.Tensor,
        emb: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None,
        control_hidden_states: Sequence[torch.Tensor] | None,
        attention_kwargs: dict[str, Any] | None,
        stop_after: int | None = None,
        taps: Sequence[int] = (),
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features: list[torch.Tensor] = []
        blocks = self.transformer_blocks
        use_control = bool(control_hidden_states) and self.connectors is not None
        interval = math.ceil(len(blocks) / len(control_hidden_states)) if use_control else 0
        for i, block in enumerate(blocks):
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden, text = self._gradient_checkpointing_func(block, hidden, text, emb, rotary, attention_kwargs)
            else:
                hidden, text = block(
                    hidden_states=hidden,
                    encoder_hidden_states=text,
                    temb=emb,
                    image_rotary_emb=rotary,
                    attention_kwargs=attention_kwargs,
                )
            if use_control:
                # The release maps N control states onto L main blocks in runs of ceil(L / N).
                hidden = self.connectors[i](control_hidden_states[i // interval], hidden)
            if i in taps:
                features.append(hidden)
            if stop_after is not None and i >= stop_after:
                break
        return hidden, features

    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        control_latents: torch.Tensor | None = None,
        control_hidden_states: Sequence[torch.Tensor] | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        feature_blocks: Sequence[int] | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """The v-prediction, or with ``feature_blocks`` the block states ``[B, N, width]`` (Φ of Eq. 6).

        Feature extraction stops after the deepest requested block. It goes through ``forward``
        (not a side method) so FSDP2's hooks gather the sharded weights as for any other call.
        """
        _, frames, _, height, width = hidden_states.shape
        hidden, text, emb = self._embed(hidden_states, encoder_hidden_states, timestep, control_latents)
        if feature_blocks is not None:
            taps = sorted({b % len(self.transformer_blocks) for b in feature_blocks})
            _, features = self._blocks(
                hidden, text, emb, image_rotary_emb, control_hidden_states, attention_kwargs, taps[-1], taps
            )
            return features
        hidden, _ = self._blocks(hidden, text, emb, image_rotary_emb, control_hidden_states, attention_kwargs)
        hidden = self.norm_final(hidden)
        hidden = self.proj_out(self.norm_out(hidden, temb=emb))
        return unpatchify(self, hidden, frames, height, width)

    def block_features(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        blocks: Sequence[int],
        control_latents: torch.Tensor | None = None,
        control_hidden_states: Sequence[torch.Tensor] | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """Video-token states ``[B, N, width]`` after each block in ``blocks`` (through ``forward``)."""
        return self(
            hidden_states,
            encoder_hidden_states,
            timestep,
            control_latents=control_latents,
            control_hidden_states=control_hidden_states,
            image_rotary_emb=image_rotary_emb,
            feature_blocks=blocks,
        )
