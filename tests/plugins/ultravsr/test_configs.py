"""The shipped configs parse through the CLI into the method they describe (Table 3 rows as configuration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ultravsr import UltraVSR
from vsr_core.cli import VSRCLI

from .test_model import _tiny_sd_folder

CONFIGS = Path(__file__).resolve().parents[3] / "plugins" / "ultravsr" / "configs"


def test_tiny_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    cli = VSRCLI(args=["--config", str(CONFIGS / "tiny.yaml")], run=False)
    model = cli.model
    assert isinstance(model, UltraVSR) and model.preset == "tiny" and model.lora.finetune == "full"
    assert model.dem.kind == "tiny" and model.sjd.temporal_weight == 0.5 and model.learning_rate == 1e-3
    assert cli.trainer.max_steps == 400


@pytest.mark.parametrize(
    ("extra", "check"),
    [
        (None, lambda m: m.dem.kind == "clipiqa" and m.sjd.temporal_weight == 0.5 and m.rts.enabled),
        ("ablation-a-fixed-t999.yaml", lambda m: m.drs.schedule == "fixed" and not m.rts.enabled),
        ("ablation-d-vsd.yaml", lambda m: m.sjd.temporal_weight == 0.0 and m.rts.attention_unit),
        ("ablation-e-local-windows.yaml", lambda m: m.tai.interval_frames == 10 and m.tai.interval_min_size == 0),
    ],
)
def test_paper_configs(extra, check, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _tiny_sd_folder(tmp_path / "sd")
    (tmp_path / "reds").mkdir()
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "sd2.1-base.yaml")]
    if extra:
        args += ["--config", str(CONFIGS / extra)]
    # The paper's recipe on a tiny SD folder (the real one is 5 GB): same options, tiny shapes.
    args += ["--model.init_args.pretrained", str(folder), "--model.init_args.preset", "tiny"]
    args += ["--data.init_args.train.init_args.root", str(tmp_path / "reds")]
    model = VSRCLI(args=args, run=False).model
    assert model.prompt_encoder.mode == "clip" and model.losses.perceptual_kind == "lpips-vgg"
    assert model.learning_rate == 5e-5 and model.adam_betas == (0.9, 0.99)
    assert check(model)
