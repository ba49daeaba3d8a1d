"""Classifier-free guidance (Ho & Salimans, 2022) as the diffusers pipelines do it.

The conditional and unconditional passes share one batch ``[negative; positive]`` (diffusers'
order: the unconditional half first), and the two outputs combine as
``uncond + s * (cond - uncond)`` (Ho & Salimans, Eq. 6 written with ``s = 1 + w``). Guidance is
active only for ``s > 1`` (diffusers' ``do_classifier_free_guidance``); ``s = 1`` is exactly the
conditional output, so callers run a single pass instead.
"""

from __future__ import annotations

import torch

__all__ = ["cfg_active", "cfg_batch", "cfg_combine", "cfg_split_combine"]


def cfg_active(guidance_scale: float | None) -> bool:
    """Whether ``guidance_scale`` needs the two-pass batch (``> 1``; ``None`` and ``<= 1`` do not)."""
    return guidance_scale is not None and float(guidance_scale) > 1.0


def cfg_batch(negative: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """``[B, L, D]`` negative and positive embeddings → the ``[2B, L, D]`` batch ``[negative; positive]``.

    Any leading batch dimension works (latents ``[B, c, t, h, w]`` are duplicated with
    ``cfg_batch(x, x)``). Shapes must match.
    """
    if negative.shape != positive.shape:
        raise ValueError(f"negative {list(negative.shape)} and positive {list(positive.shape)} shapes differ")
    return torch.cat([negative, positive.to(negative.dtype)])


def cfg_combine(uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """``uncond + s * (cond - uncond)``: the guided model output (any matching shapes)."""
    return uncond + guidance_scale * (cond - uncond)


def cfg_split_combine(output: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """The ``[2B, ...]`` output of a :func:`cfg_batch` pass → guided ``[B, ...]``."""
    if output.shape[0] % 2:
        raise ValueError(f"a guidance batch has an even size, got {output.shape[0]}")
    uncond, cond = output.chunk(2)
    return cfg_combine(uncond, cond, guidance_scale)
