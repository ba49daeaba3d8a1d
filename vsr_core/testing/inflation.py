"""Test helper for methods that inflate an image network to video: at initialisation nothing may change."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vsr_core.nn.inflate import is_inflated, temporal_modules, temporal_state_dict

__all__ = ["assert_reproduces_image_model"]


def _primary(output: Any) -> torch.Tensor:
    """The main tensor of a model output: a tensor, the first item of a tuple/list, the first field of a dict."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output:
        return _primary(output[0])
    if isinstance(output, dict) and output:  # diffusers BaseOutput (``.sample``) is an OrderedDict
        return _primary(next(iter(output.values())))
    raise AssertionError(f"cannot find the output tensor in a {type(output).__name__}")


def assert_reproduces_image_model(
    video_model: nn.Module,
    image_model: nn.Module,
    *args: Any,
    num_frames: int,
    atol: float = 1e-6,
    check_weights: bool = True,
    **kwargs: Any,
) -> float:
    """Assert that ``video_model`` computes per frame what ``image_model`` computes; return the max abs difference.

    ``args``/``kwargs`` are per-frame inputs (``[B*T, ...]``, row ``b*T + t``, conditioning repeated per frame);
    the image model gets them as they are, the video model gets them plus ``num_frames`` (the calling convention
    of :func:`vsr_core.nn.inflate_to_video`). Both run under ``torch.no_grad()`` in their current train/eval mode
    (use eval mode when they have dropout). With ``check_weights`` it also asserts that every ``state_dict`` entry
    of the image model is in the video model under the same key with the same value, and, for a model inflated
    with ``inflate_to_video``, that it has temporal modules and every other key belongs to one of them.
    """
    if check_weights:
        image_state, video_state = image_model.state_dict(), video_model.state_dict()
        missing = [k for k in image_state if k not in video_state]
        assert not missing, f"the video model renamed or lost {len(missing)} image weights, e.g. {missing[:3]}"
        changed = [k for k, v in image_state.items() if not torch.equal(v.cpu(), video_state[k].cpu())]
        assert not changed, f"the video model's copies of {len(changed)} image weights differ, e.g. {changed[:3]}"
        if is_inflated(video_model):
            assert temporal_modules(video_model), "the inflated video model has no temporal modules"
            extra = set(video_state) - set(image_state) - set(temporal_state_dict(video_model))
            assert not extra, f"the video model has new weights outside its temporal modules: {sorted(extra)[:3]}"
    with torch.no_grad():
        expected = _primary(image_model(*args, **kwargs))
        actual = _primary(video_model(*args, num_frames=num_frames, **kwargs))
    assert actual.shape == expected.shape, f"video output {tuple(actual.shape)}, image output {tuple(expected.shape)}"
    difference = (actual.double() - expected.double()).abs().max().item() if expected.numel() else 0.0
    assert difference <= atol, f"the video model differs from the image model by {difference:.3g} (atol {atol:g})"
    return difference
