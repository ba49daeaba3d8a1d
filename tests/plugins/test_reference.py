"""The reference plugin passes the conformance kit and starts exactly at bicubic upsampling."""

from __future__ import annotations

import torch

from reference import ReferenceVSR
from vsr_core.testing import MethodConformance, SyntheticClips
from vsr_core.video_ops import upsample_frames


class TestReferenceConformance(MethodConformance):
    method_class = ReferenceVSR
    init_args = {"scale": 4, "channels": 8, "num_blocks": 1}
    config_file = "plugins/reference/configs/tiny.yaml"


def test_untrained_model_returns_bicubic_upsampling():
    method = ReferenceVSR(scale=2, channels=8, num_blocks=1).eval()
    lq = SyntheticClips(num_clips=1, frames=3, size=16, scale=2)[0]["lq"][None]
    with torch.no_grad():
        restored = method.restore(lq)
    torch.testing.assert_close(restored, upsample_frames(lq, 2))
