"""`--sample KEY=VALUE`: values parsed by the annotation of the method's restore argument; unknown keys listed."""

from __future__ import annotations

from typing import Any, Literal

import pytest
import torch

from vsr_core.errors import ConfigError
from vsr_core.inference import describe_sampling, parse_sample_options
from vsr_core.testing import BoringMethod


class Options(BoringMethod):
    def restore(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        alpha: float = 0.5,
        frames_per_batch: int = 4,
        color_fix: bool | None = None,
        sampler: Literal["euler", "dpm++"] = "euler",
        label: str = "x",
        weights: list[float] | None = None,
    ) -> torch.Tensor:
        """Restore.

        Args:
            alpha: mixing weight of the draft (PS-SR's alpha),
                between 0 and 1.
            frames_per_batch: frames per spatial batch.
            sampler: the solver.
        """
        return super().restore(lq)


def test_values_are_parsed_by_the_annotation():
    parsed = parse_sample_options(
        Options,
        [
            "alpha=0.25",
            "frames-per-batch=8",
            "color_fix=false",
            "sampler=DPM++",
            "label=7",
            "guidance_scale=6",
            "weights=[1, 2.5]",
        ],
    )
    assert parsed == {
        "alpha": 0.25,
        "frames_per_batch": 8,
        "color_fix": False,
        "sampler": "dpm++",
        "label": "7",
        "guidance_scale": 6.0,
        "weights": [1, 2.5],
    }
    assert type(parsed["frames_per_batch"]) is int and type(parsed["guidance_scale"]) is float
    assert parse_sample_options(Options, ["color_fix=none"]) == {"color_fix": None}
    # a dict (the Python API) keeps non-string values as given
    assert parse_sample_options(Options(), {"alpha": 1, "sampler": "euler"}) == {"alpha": 1, "sampler": "euler"}


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        (
            "beta=1",
            "--sample beta: Options has no such sampling option; it takes: alpha, color_fix, frames_per_batch, "
            "guidance_scale, label, sampler, weights",
        ),
        ("alpha", "--sample expects KEY=VALUE, got 'alpha'"),
        ("alpha=much", "--sample alpha=much: expected float"),
        ("frames_per_batch=2.5", "--sample frames_per_batch=2.5: expected int"),
        ("sampler=ddim", "--sample sampler=ddim: expected euler|dpm++"),
        ("color_fix=maybe", "--sample color_fix=maybe: expected bool | none"),
        ("num_inference_steps=4", "--sample num_inference_steps: use --steps instead"),
        ("generator=1", "--sample generator: use --seed instead"),
    ],
)
def test_bad_keys_and_values_are_one_line(pair, message):
    with pytest.raises(ConfigError) as err:
        parse_sample_options(Options, [pair])
    assert str(err.value) == message


def test_a_method_without_own_options_says_so():
    with pytest.raises(ConfigError, match="BoringMethod has no such sampling option; it takes: guidance_scale"):
        parse_sample_options(BoringMethod, ["alpha=1"])


def test_describe_lists_types_defaults_and_docs():
    text = describe_sampling(Options)
    lines = text.splitlines()
    assert lines[0].endswith("Options sampling options (vsr restore --sample KEY=VALUE):")
    assert "  alpha: float (default: 0.5)" in lines
    assert "      mixing weight of the draft (PS-SR's alpha), between 0 and 1." in lines
    assert "  sampler: euler|dpm++ (default: 'euler')" in lines
    assert "  color_fix: bool | none (default: method default)" in lines
    assert "  num_inference_steps: int | none (default: method default) [set with --steps]" in lines
    # the shared arguments are described by VSRMethod.restore's docstring
    assert "      denoiser evaluations; ``None`` takes the method's default." in lines


def annotations_are_strings() -> Any:  # this module uses `from __future__ import annotations`
    return Options.restore.__annotations__["alpha"]


def test_string_annotations_are_resolved():
    assert annotations_are_strings() == "float"
    assert parse_sample_options(Options, ["alpha=2"]) == {"alpha": 2.0}
