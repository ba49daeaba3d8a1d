"""TE3DVAE: the conformance kit, the losses it steps, export/weights round trip."""

from __future__ import annotations

from diffvsr import TE3DVAE

from vsr_core.testing import MethodConformance


class TestTE3DVAEConformance(MethodConformance):
    method_class = TE3DVAE
    lq_size = 32
    min_frames = 4
