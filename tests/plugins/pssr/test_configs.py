"""The stage configs: every model argument they set exists and is valid; the tiny ones run the conformance kit."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pssr import PSSR
from vsr_core.testing import conformance_suite

CONFIGS = Path(__file__).resolve().parents[3] / "plugins" / "pssr" / "configs"
REAL = ["wan2.1-1.3b-latent.yaml", "wan2.1-1.3b-pixel.yaml", "wan2.1-1.3b-draft.yaml"]


def _init_args(*names: str) -> dict:
    args: dict = {}
    for name in names:  # later configs override earlier ones, as `vsr fit --config a --config b` does
        for key, value in yaml.safe_load((CONFIGS / name).read_text())["model"]["init_args"].items():
            args[key] = (
                {**args[key], **value} if isinstance(value, dict) and isinstance(args.get(key), dict) else value
            )
    return args


@pytest.mark.parametrize(
    "names", [[n] for n in REAL] + [["wan2.1-1.3b-draft.yaml", f"draft-prune-{n}.yaml"] for n in (0, 10, 25)]
)
def test_paper_scale_configs_build(names):
    args = _init_args(*names)
    assert args["preset"] == "real" and args["lora"] == {"rank": 32, "alpha": 32.0}
    # the same arguments at tiny size (no weights, no GPU): names and values are checked by construction
    tiny = {**args, "preset": "tiny", "torch_dtype": "float32", "text": {"encoder": "none"}}
    tiny["draft"] = {
        **args.get("draft", {}),
        "out_of": 3,
        "pruned": {0: 0, 10: 1, 20: 2, 25: 2}[args.get("draft", {}).get("pruned", 20)],
    }
    method = PSSR(**tiny)
    assert method.stage == args["stage"]


def test_the_paper_recipe_is_in_the_latent_config():
    args = _init_args("wan2.1-1.3b-latent.yaml")
    assert args["losses"] == {"l2": 1.0, "vsd": 1.0, "adv": 0.1}
    assert args["vsd"]["guidance_scale"] == 5.0 and (args["vsd"]["t_min"], args["vsd"]["t_max"]) == (20.0, 980.0)
    assert args["learning_rate"] == 5e-5 and args["flow"]["base_timestep"] == 699
    assert _init_args("wan2.1-1.3b-pixel.yaml")["losses"] == {"pixel_l2": 1.0, "lpips": 2.0}


# tiny.yaml through the CLI (the rest of the kit runs on tiny_init_args in tests/plugins/test_every_method.py)
_ONLY_THE_CONFIG = {
    name: None
    for name in dir(conformance_suite(PSSR))
    if name.startswith("test_") and name != "test_config_round_trip"
}
TestTinyLatentConfig = conformance_suite(PSSR, config_file=str(CONFIGS / "tiny.yaml"), **_ONLY_THE_CONFIG)
# the draft stage has its own parameter groups and checkpoint contents: the whole kit
TestTinyDraftStage = conformance_suite(
    PSSR, init_args={"preset": "tiny", "stage": "draft", "pixel": {"perceptual": "tiny"}}
)
