"""Random numbers for the pipeline, drawn from one generator and delivered on the data device.

A ``torch.Generator`` only produces numbers on its own device, and the data module may hand a CPU
generator together with CUDA clips (or a CUDA generator with CUDA clips). :class:`RandomDraws`
always samples on the generator's device and moves the result to the data device, so the same
seed gives the same degradation wherever the clips live (for a given generator device).
Decisions that change shapes or control flow (which stages run, resize sizes, codecs) come back as
Python values; per-frame parameters stay tensors on the data device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["drift_values", "per_frame", "RandomDraws"]


class RandomDraws:
    """Sampling helpers over one ``generator`` (``None`` = torch's default RNG of ``device``)."""

    def __init__(self, generator: torch.Generator | None, device: torch.device | str) -> None:
        self.generator = generator
        self.device = torch.device(device)
        self.source = generator.device if generator is not None else self.device

    # -- tensors on the data device ------------------------------------------------------------
    def uniform(self, n: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        """``[n]`` float32 uniform in ``[low, high)`` on the data device."""
        u = torch.rand(n, generator=self.generator, device=self.source)
        return (low + (high - low) * u).to(self.device)

    def split_uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        """``[n]`` values from ``[low, 1]`` or ``[1, high]`` with probability 1/2 each (Real-ESRGAN's beta).

        Real-ESRGAN draws shape exponents this way so that values below and above 1 are equally
        likely however asymmetric the range is; a range on one side of 1 collapses that half to 1.
        """
        below = self.uniform(n) < 0.5
        lower = self.uniform(n, min(low, 1.0), 1.0)
        upper = self.uniform(n, 1.0, max(high, 1.0))
        return torch.where(below, lower, upper)

    def choice(self, n: int, values: Sequence[float]) -> torch.Tensor:
        """``[n]`` float32 values picked uniformly from ``values`` on the data device."""
        table = torch.tensor([float(v) for v in values], device=self.device)
        return table[self.categorical(n, [1.0] * len(values))]

    def categorical(self, n: int, probs: Sequence[float]) -> torch.Tensor:
        """``[n]`` int64 indices drawn with (unnormalised) weights ``probs`` on the data device."""
        return self._categorical(n, probs).to(self.device)

    def normal(self, shape: Sequence[int]) -> torch.Tensor:
        """Standard normal samples of ``shape`` on the data device."""
        return torch.randn(tuple(shape), generator=self.generator, device=self.source).to(self.device)

    def poisson(self, rates: torch.Tensor) -> torch.Tensor:
        """Poisson samples with the given non-negative ``rates`` (same shape, data device)."""
        return torch.poisson(rates.to(self.source), generator=self.generator).to(self.device)

    # -- Python values (control flow and shapes) -----------------------------------------------
    def host_uniform(self, n: int, low: float = 0.0, high: float = 1.0) -> list[float]:
        u = torch.rand(n, generator=self.generator, device=self.source, dtype=torch.float64)
        return (low + (high - low) * u).tolist()

    def host_bernoulli(self, n: int, p: float) -> list[bool]:
        return [u < p for u in self.host_uniform(n)]

    def host_categorical(self, n: int, probs: Sequence[float]) -> list[int]:
        return self._categorical(n, probs).tolist()

    def _categorical(self, n: int, probs: Sequence[float]) -> torch.Tensor:
        # Inverse-CDF sampling from one uniform per draw: the number of generator calls does not
        # depend on the weights, which keeps later draws aligned when a user overrides them.
        weights = torch.tensor([float(p) for p in probs], dtype=torch.float64)
        cdf = (weights.cumsum(0) / weights.sum()).to(self.source)
        u = torch.rand(n, generator=self.generator, device=self.source, dtype=torch.float64)
        return torch.searchsorted(cdf, u, right=True).clamp_(max=len(probs) - 1)


def drift_values(
    draws: RandomDraws, start: torch.Tensor, frames: int, step: float, low: float, high: float
) -> torch.Tensor:
    """Per-frame values ``[B*T]`` moving linearly from ``start`` ``[B]`` to a random end value.

    The end is ``start + u * step * sqrt(T - 1)`` with ``u`` uniform in ``[-1, 1]``, clipped to
    ``[low, high]``; ``step = 0`` (or one frame) keeps every frame at ``start``. One uniform per
    clip is always drawn so the generator stream does not depend on the step.
    """
    u = draws.uniform(start.shape[0], -1.0, 1.0)
    end = (start + u * step * math.sqrt(max(frames - 1, 0))).clamp(low, high)
    frac = torch.linspace(0.0, 1.0, frames, device=start.device) if frames > 1 else start.new_zeros(1)
    return (start[:, None] + (end - start)[:, None] * frac[None, :]).reshape(-1)


def per_frame(values: torch.Tensor, frames: int) -> torch.Tensor:
    """Repeat per-clip ``[B]`` values for each of ``frames`` frames: ``[B*T]`` (clip-major)."""
    return values.repeat_interleave(frames)
