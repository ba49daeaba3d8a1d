"""Files written before the option groups (flat init arguments) still load and restore as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from satb import SATBVR
from satb.legacy import upgrade_flat_arguments
from vsr_core.checkpoint import load_method, method_from_checkpoint
from vsr_core.errors import ConfigError
from vsr_core.export import METHOD_FILE, export_method

RECORDS = json.loads((Path(__file__).parent / "fixtures" / "flat_layout_records.json").read_text())
SATB_FLAT = {"preset", "pretrained", "satb_weights", "torch_dtype"}

#: What the old code built for ``SATBVR()`` (the random tiny preset), worked out from its constructor.
OLD_TINY_DEFAULT = {
    "recipe": {"timestep_sampling": "jump_start", "tau_max": 400, "train_step_counts": [1, 5], "blend": "satb",
               "diff_grad_to_predictor": False},
    "predictor_options": {"enabled": True, "parameterization": "residual", "timestep": 399, "finetune": "full"},
    "denoiser_options": {"lq_condition": True, "output": "lq_residual", "finetune": "full"},
    "ddc": {"weight": 1.0, "blocks": "quarters"},
    "lora": {"rank": 64, "alpha": 64.0},
    "sampling": {"num_inference_steps": 5, "guidance_scale": 1.0, "sampler": "dpmsolver++", "color_fix": "wavelet",
                 "prompt_template": True},
}  # fmt: skip
#: ``SATBVR(denoiser_finetune="lora", predictor_finetune="lora", lora_rank=4, num_steps=2, blend="linear")``.
OLD_TINY_LORA = {
    **OLD_TINY_DEFAULT,
    "recipe": {**OLD_TINY_DEFAULT["recipe"], "blend": "linear"},
    "predictor_options": {**OLD_TINY_DEFAULT["predictor_options"], "finetune": "lora"},
    "denoiser_options": {**OLD_TINY_DEFAULT["denoiser_options"], "finetune": "lora"},
    "lora": {"rank": 4, "alpha": 4.0},
    "sampling": {**OLD_TINY_DEFAULT["sampling"], "num_inference_steps": 2},
}


def flat(record: dict) -> dict:
    return {k: v for k, v in record["init_args"].items() if k in set(SATBVR.init_argument_names()) - {"scale"}}


@pytest.mark.parametrize("name, expected", [("tiny_default", OLD_TINY_DEFAULT), ("tiny_lora_rank4", OLD_TINY_LORA)])
def test_flat_records_become_the_groups_the_old_code_meant(name: str, expected: dict) -> None:
    args = flat(RECORDS[name])
    groups = upgrade_flat_arguments({k: args[k] for k in args if k not in SATB_FLAT}, "tiny", None, 1)
    for group, values in expected.items():
        for key, value in values.items():
            got = groups[group][key]
            assert (list(got) if isinstance(got, tuple) else got) == value, (group, key)
    # With a pretrained base the same record meant LoRA and CogVideoX's own outputs.
    pretrained = upgrade_flat_arguments({k: args[k] for k in args if k not in SATB_FLAT}, "tiny", "/weights", 1)
    assert (
        pretrained["denoiser_options"]["output"] == "v"
        and pretrained["predictor_options"]["parameterization"] == "v_at_lq"
    )
    assert pretrained["recipe"]["timestep_sampling"] == "paper" and pretrained["recipe"]["tau_max"] == 1000


def perturbed(options: dict) -> SATBVR:
    torch.manual_seed(0)
    method = SATBVR(**options)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in method.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return method.eval()


def restored(method: SATBVR) -> torch.Tensor:
    lq = torch.rand(1, 3, 5, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return method.restore(lq, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("name, expected", [("tiny_default", OLD_TINY_DEFAULT), ("tiny_lora_rank4", OLD_TINY_LORA)])
def test_an_export_with_a_flat_record_loads_and_restores_the_same(tmp_path: Path, name: str, expected: dict) -> None:
    method = perturbed({"scale": 4, "preset": "tiny", **expected})
    folder = export_method(method, tmp_path / "export")
    record = json.loads((folder / METHOD_FILE).read_text())
    record["init_args"] = RECORDS[name]["init_args"]  # what the old code wrote
    (folder / METHOD_FILE).write_text(json.dumps(record))
    loaded = load_method(folder)
    assert loaded.recipe == method.recipe and loaded.sampling == method.sampling and loaded.lora == method.lora
    assert torch.equal(restored(loaded), restored(method))
    # Exported again, it records the groups.
    again = json.loads((export_method(loaded, tmp_path / "again") / METHOD_FILE).read_text())["init_args"]
    assert "lora_rank" not in again and again["recipe"]["timestep_sampling"] == "jump_start"


def test_a_checkpoint_with_flat_hyperparameters_loads(tmp_path: Path) -> None:
    method = perturbed({"scale": 4, "preset": "tiny", **OLD_TINY_LORA})
    checkpoint = {
        "state_dict": method.state_dict(),
        "hyper_parameters": RECORDS["tiny_lora_rank4"]["init_args"],
        "vsr_method": {"class_path": "satb.SATBVR", "scale": 4},
    }
    loaded = method_from_checkpoint(checkpoint, tmp_path / "old.ckpt")
    assert loaded.denoiser_options.finetune == "lora" and loaded.lora.rank == 4
    assert torch.equal(restored(loaded), restored(method))


def test_a_flat_record_asking_for_another_controlnet_depth_is_refused() -> None:
    with pytest.raises(ConfigError, match="3-block ControlNet; the tiny preset has 1"):
        SATBVR(controlnet_layers=3)
