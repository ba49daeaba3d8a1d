"""SATB-VR's option groups through the CLI: real defaults in --print_config, the config round trip, the recipes."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from satb import SATBVR
from satb.options import (
    DDCOptions,
    DenoiserOptions,
    PredictorOptions,
    SATBLoRA,
    SATBSampling,
    SATBText,
    SATBTiling,
    TrainingRecipe,
)
from vsr_core.errors import ConfigError
from vsr_core.method import VSRMethod

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "plugins" / "satb" / "configs"
GROUPS = {
    "recipe": TrainingRecipe,
    "predictor_options": PredictorOptions,
    "denoiser_options": DenoiserOptions,
    "ddc": DDCOptions,
    "lora": SATBLoRA,
    "sampling": SATBSampling,
    "text": SATBText,
    "vae_tiling": SATBTiling,
}
#: SATB-VR's own arguments whose effective value really is "nothing".
TRULY_NULL = {"pretrained", "satb_weights", "text.cache"}


def null_leaves(tree: dict, prefix: str = "") -> set[str]:
    nulls = set()
    for key, value in tree.items():
        if isinstance(value, dict):
            nulls |= null_leaves(value, f"{prefix}{key}.")
        elif value is None:
            nulls.add(f"{prefix}{key}")
    return nulls


def vsr(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vsr_core.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_print_config_shows_every_effective_value(tmp_path: Path) -> None:
    """``vsr fit --model satb.SATBVR --print_config``: no null where the method uses a real value."""
    result = vsr("fit", "--model", "satb.SATBVR", "--print_config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = yaml.safe_load(result.stdout)["model"]["init_args"]
    core = set(inspect.signature(VSRMethod.__init__).parameters) - {"self", "scale"}  # the core's own
    own_nulls = {name for name in null_leaves(printed) if name.split(".")[0] not in core}
    assert own_nulls == TRULY_NULL
    method = SATBVR()
    assert (
        method.hparams["pretrained"] is None and method.hparams["satb_weights"] is None and method.text.cache is None
    )
    # The printed defaults are the ones the method uses.
    assert printed["sampling"] == SATBSampling().as_dict()
    assert printed["recipe"] == {**TrainingRecipe().as_dict(), "train_step_counts": [1, 5]}
    assert printed["ddc"] == {"weight": 1.0, "blocks": "quarters"} and method.ddc_blocks == [0, 1]
    assert printed["predictor_options"] == PredictorOptions().as_dict()
    assert printed["torch_dtype"] == "float32" and printed["vae_tiling"] == {"tile_size": 0, "tile_overlap": 0}


def test_config_round_trip_keeps_every_group(tmp_path: Path) -> None:
    """tiny-paper.yaml -> parsed -> dumped -> parsed again: the same config, and the model has the file's values."""
    from vsr_core.cli import VSRCLI

    first = VSRCLI(args=["--config", str(CONFIGS / "tiny-paper.yaml")], run=False)
    dumped = first.parser.dump(first.config, skip_none=False)
    (tmp_path / "config.yaml").write_text(dumped)
    second = VSRCLI(args=["--config", str(tmp_path / "config.yaml")], run=False)
    assert second.parser.dump(second.config, skip_none=False) == dumped
    model = second.model
    assert model.recipe.timestep_sampling == "paper" and model.recipe.diff_grad_to_predictor is False
    assert model.recipe.tau_max == 400 and model.recipe.diff_weighting == "v" and model.recipe.blend == "satb"
    assert model.predictor_options.parameterization == "residual" and model.denoiser_options.output == "lq_residual"
    assert model.sampling.guidance_scale == 1.0 and model.sampling.sampler == "dpmsolver++"
    third = VSRCLI(args=["--config", str(tmp_path / "config.yaml"), "--model.recipe.blend", "none"], run=False)
    assert third.model.recipe.blend == "none"


def test_tiny_init_args_are_the_tiny_recipe() -> None:
    """``tiny_init_args`` (the smoke test's model) trains as configs/tiny-paper.yaml says, restoring with 2 steps."""
    config = yaml.safe_load((CONFIGS / "tiny-paper.yaml").read_text())["model"]["init_args"]
    config.pop("val_sampling")
    config["sampling"]["num_inference_steps"] = 2
    tiny = dict(SATBVR.tiny_init_args)
    groups = {name: p.annotation for name, p in inspect.signature(SATBVR.__init__).parameters.items()}
    for name in set(tiny) | set(config):
        group = GROUPS.get(name)
        if group is None:
            assert tiny[name] == config[name], name
        else:  # the same effective values (the file may write a default out)
            assert group.coerce(tiny.get(name, {})) == group.coerce(config.get(name, {})), name
    assert set(GROUPS) <= set(groups)


def test_tiny_yaml_is_tiny_paper_trained_at_the_start_points_only() -> None:
    """configs/tiny.yaml (make demo, the learning check) = tiny-paper.yaml with jump_start sampling at 1 and 5 steps."""
    tiny = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    paper = yaml.safe_load((CONFIGS / "tiny-paper.yaml").read_text())
    tiny_recipe = tiny["model"]["init_args"].pop("recipe")
    paper_recipe = paper["model"]["init_args"].pop("recipe")
    assert tiny == paper
    assert GROUPS["recipe"].coerce(tiny_recipe) == GROUPS["recipe"].coerce(
        {**paper_recipe, "timestep_sampling": "jump_start", "train_step_counts": [1, 5], "tau_max": 1000}
    )


def test_paper_scale_config_is_the_class_defaults_with_the_size_and_text() -> None:
    """configs/cogvideox1.5-5b.yaml restates the paper's recipe: it must equal the class defaults."""
    config = yaml.safe_load((CONFIGS / "cogvideox1.5-5b.yaml").read_text())["model"]["init_args"]
    for name in ("recipe", "predictor_options", "denoiser_options", "ddc", "lora", "sampling"):
        assert GROUPS[name].coerce(config[name]) == GROUPS[name](), name


def test_frames_rule_comes_from_the_codec_and_the_window_from_the_preset() -> None:
    tiny = SATBVR(**SATBVR.tiny_init_args)
    assert "frames_rule" not in SATBVR.__dict__
    assert tiny.frames_rule == tiny.codec.frames_rule == (1, 0) and tiny.temporal_window == 17
    import torch

    with torch.device("meta"):
        real = SATBVR(preset="real")
    assert real.frames_rule == (4, 1) and real.temporal_window == 81


@pytest.mark.parametrize(
    "group, values, message",
    [
        (TrainingRecipe, {"tau_max": 0}, "tau_max"),
        (TrainingRecipe, {"train_step_counts": ()}, "at least one"),
        (DDCOptions, {"weight": -1.0}, "weight"),
        (DDCOptions, {"blocks": ()}, "at least one"),
        (SATBSampling, {"guidance_scale": 0.5}, "guidance_scale"),
        (SATBSampling, {"color_fix": "adain"}, "color_fix"),
    ],
)
def test_groups_check_their_values(group: type, values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        group(**values)
