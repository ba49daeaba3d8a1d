"""Zero-initialized cross-attention connector: how a ControlNet state enters one main block.

One connector sits after every main transformer block (the layout of the authors' release,
``connectors.pt``: ``connectors.<i>.{h_to_q,h_to_k,norm_q,norm_k,out_layer,c_mlp}``). The query comes
from the main hidden state, key and value from the control state; both output MLPs end in a
zero-initialized linear layer, so a fresh connector returns the main state unchanged and the
denoiser starts exactly as the base model (the ControlNet recipe the paper cites, Vivid-VR [1]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.nn import zero_module

__all__ = ["Connector", "bottleneck_mlp"]


def bottleneck_mlp(width: int, bottleneck: int, zero_output: bool = False) -> nn.Sequential:
    """``Linear(width→bottleneck) → SiLU → Linear(bottleneck→width)``; the last layer optionally zeroed."""
    last = nn.Linear(bottleneck, width)
    return nn.Sequential(nn.Linear(width, bottleneck), nn.SiLU(), zero_module(last) if zero_output else last)


class Connector(nn.Module):
    """``h' = h + MLP_out(Attn(q=MLP_q(h), k=MLP_k(c), v=c)) + MLP_c(c)`` with zero-initialized outputs.

    Shapes: ``control`` ``c`` and ``hidden`` ``h`` are both ``[B, N, width]`` (the video tokens of the
    ControlNet block and of the main block, same token grid); returns ``[B, N, width]``.

    Args:
        width: token width (``heads * head_dim`` of the transformer, 3072 for CogVideoX1.5-5B).
        heads: attention heads of the connector (48 in the release, head width 64).
        bottleneck: hidden width of the four MLPs (512 in the release).
    """

    def __init__(self, width: int, heads: int = 48, bottleneck: int = 512) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"connector width {width} is not divisible by its {heads} heads")
        self.heads = heads
        head_dim = width // heads
        self.h_to_q = bottleneck_mlp(width, bottleneck)
        self.h_to_k = bottleneck_mlp(width, bottleneck)
        self.norm_q = nn.LayerNorm(head_dim, eps=1e-6)
        self.norm_k = nn.LayerNorm(head_dim, eps=1e-6)
        self.out_layer = bottleneck_mlp(width, bottleneck, zero_output=True)
        self.c_mlp = bottleneck_mlp(width, bottleneck, zero_output=True)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, control: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        control = control.to(hidden.dtype)
        q = self.norm_q(self._split_heads(self.h_to_q(hidden)))
        k = self.norm_k(self._split_heads(self.h_to_k(control)))
        v = self._split_heads(control)
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.transpose(1, 2).reshape(hidden.shape)
        return hidden + self.out_layer(attended) + self.c_mlp(control)
