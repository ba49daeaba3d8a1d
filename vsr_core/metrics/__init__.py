"""Quality metrics for restored videos (``[B,3,T,H,W]`` in ``[-1,1]``)."""

from vsr_core.metrics.dover import DoverMetric, create_dover_metric
from vsr_core.metrics.fidelity import psnr, ssim
from vsr_core.metrics.iqa import MissingWeights, create_iqa_metric, default_weights_dir
from vsr_core.metrics.suite import ALL_METRICS, DEFAULT_METRICS, MetricSuite, Report
from vsr_core.metrics.temporal import HornSchunckFlow, RaftFlow, default_flow_estimator, flicker, warping_error
from vsr_core.metrics.validation import validation_scores

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "DoverMetric",
    "HornSchunckFlow",
    "MetricSuite",
    "MissingWeights",
    "RaftFlow",
    "Report",
    "create_dover_metric",
    "create_iqa_metric",
    "default_flow_estimator",
    "default_weights_dir",
    "flicker",
    "psnr",
    "ssim",
    "validation_scores",
    "warping_error",
]
