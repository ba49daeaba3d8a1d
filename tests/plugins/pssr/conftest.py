"""Tiny Wan transformers for the PS-SR unit tests (random weights, seeded)."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel

TINY = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 4,
    "out_channels": 4,
    "text_dim": 8,
    "freq_dim": 16,
    "ffn_dim": 32,
    "num_layers": 6,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 64,
}


@pytest.fixture
def tiny_wan() -> WanTransformer3DModel:
    """A 6-block random Wan transformer (24 wide, 4 latent channels), in eval mode."""
    torch.manual_seed(0)
    model = WanTransformer3DModel(**TINY).eval()
    with torch.no_grad():  # Wan's head and modulations start small; make every path matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.fixture
def wan_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(latents [2, 4, 3, 4, 6], timestep [2], text [2, 5, 8])``."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 4, 3, 4, 6, generator=g), torch.tensor([699.0, 250.0]), torch.randn(2, 5, 8, generator=g)
