"""The draft model phi_draft (PS-SR Sec. 3.4): the fine-tuned base, pruned, reading the base's features.

* **Pruning.** Of the base's ``L`` blocks the draft keeps ``n = L - L * pruned / out_of``, spread
  uniformly: block ``floor((j + 1) L / n) - 1`` for ``j = 0 .. n - 1`` (always the last one). For
  Wan2.1-1.3B with 20 of 30 pruned (the paper's default, Table 6) these are blocks 2, 5, 8, ..., 29,
  the release's ``k_select = 3`` (``shave_dit_draft``).
* **Initialisation** from the fine-tuned base with its LoRA merged: patch embedding (the widened,
  32-channel one), time/text embedders, the kept blocks, the head.
* **Feature fusion.** Before draft block ``j`` the hidden state that entered base block ``kept[j]``
  during the base step (detached) is concatenated on the channel axis *in front of* the draft's own
  hidden state and projected back by ``Linear(2 D -> D)`` initialised as ``[I | 0]`` (identity on
  the base half, as the release's ``fc_layers``): at initialisation each draft block sees exactly the
  base's input to that block.

Shapes: latents ``[B, 2c, t, h, w]`` (``cat([z_t, z_L])``), base features ``n x [B, N, D]``,
output velocity ``[B, c, t, h, w]``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from diffusers import WanTransformer3DModel
from torch import nn

from pssr.dit import embed, run_blocks, unembed
from vsr_core.errors import ConfigError
from vsr_core.lora import merge_lora

__all__ = ["PSSRDraft", "kept_blocks"]


def kept_blocks(num_layers: int, pruned: int, out_of: int) -> list[int]:
    """Indices of the base blocks the draft keeps when ``pruned`` of every ``out_of`` are removed (uniformly)."""
    if not 0 <= pruned < out_of:
        raise ConfigError(f"the draft prunes {pruned} of every {out_of} blocks; need 0 <= pruned < out_of")
    removed = num_layers * pruned
    if removed % out_of:
        raise ConfigError(
            f"pruning {pruned} of every {out_of} blocks of a {num_layers}-block base is not a whole number of blocks; "
            f"choose draft.pruned / draft.out_of so that {num_layers} * pruned / out_of is an integer"
        )
    keep = num_layers - removed // out_of
    return [(j + 1) * num_layers // keep - 1 for j in range(keep)]


def _identity_on_base_half(fusion: nn.Linear) -> None:
    dim = fusion.out_features
    with torch.no_grad():
        fusion.weight.zero_()
        fusion.weight[:, :dim].copy_(torch.eye(dim, device=fusion.weight.device, dtype=fusion.weight.dtype))
        fusion.bias.zero_()


class PSSRDraft(nn.Module):
    """phi_draft: a Wan transformer with ``len(kept)`` blocks and one fusion layer before each.

    Args:
        config: the base transformer's config (``in_channels`` already the base's widened ``2c``).
        kept: the base block each draft block starts from (:func:`kept_blocks`).
    """

    def __init__(self, config: dict[str, Any], kept: Sequence[int]) -> None:
        super().__init__()
        if not kept:
            raise ConfigError("the draft must keep at least one block")
        self.kept = list(kept)
        self.transformer = WanTransformer3DModel(**{**config, "num_layers": len(self.kept)})
        dim = self.transformer.config.num_attention_heads * self.transformer.config.attention_head_dim
        self.fusion = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in self.kept)
        for layer in self.fusion:
            _identity_on_base_half(layer)

    @torch.no_grad()
    def initialise_from(
        self,
        base: WanTransformer3DModel,
        patch_embedding: nn.Module,
        proj_out: nn.Module,
        adapter: str | None,
    ) -> None:
        """Copy the base (LoRA ``adapter`` merged into its weights) into the draft; fusion back to ``[I | 0]``.

        ``patch_embedding`` / ``proj_out`` are the base's own (widened input, trained head).
        """
        draft = self.transformer
        draft.patch_embedding.load_state_dict(patch_embedding.state_dict())
        draft.proj_out.load_state_dict(proj_out.state_dict())
        draft.condition_embedder.load_state_dict(base.condition_embedder.state_dict())
        draft.scale_shift_table.copy_(base.scale_shift_table)
        for j, index in enumerate(self.kept):
            draft.blocks[j].load_state_dict(_merged_block(base.blocks[index], adapter).state_dict())
        for layer in self.fusion:
            _identity_on_base_half(layer)

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        base_features: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Velocity ``[B, c, t, h, w]`` of ``latents [B, 2c, t, h, w]`` at model timestep ``timestep [B]``.

        ``base_features[j]`` ``[B, N, D]``: the hidden state entering base block ``kept[j]``.
        """
        if len(base_features) != len(self.kept):
            raise ValueError(f"the draft has {len(self.kept)} blocks but got {len(base_features)} base features")
        tokens, context = embed(self.transformer, latents, timestep, text)

        def fuse(j: int, hidden: torch.Tensor) -> torch.Tensor:
            feature = base_features[j].to(hidden.dtype)
            return self.fusion[j](torch.cat([feature, hidden], dim=-1))

        tokens, _ = run_blocks(self.transformer.blocks, tokens, context, before_block=fuse)
        return unembed(self.transformer, tokens, context)


def _merged_block(block: nn.Module, adapter: str | None) -> nn.Module:
    """A plain copy of ``block`` with LoRA ``adapter`` folded into its weights (other adapters dropped)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    plain = copy.deepcopy(block)
    if any(isinstance(m, BaseTunerLayer) for m in plain.modules()):
        merge_lora(plain, [adapter] if adapter else [], unload=True)
    return plain
