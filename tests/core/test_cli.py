"""The `vsr` command as a user runs it: listing, short names, configs, errors, resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vsr_core.cli import main, overlay_base

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIGS = sorted(REPO.glob("plugins/*/configs/*.yaml"))


def run_vsr(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "vsr_core.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fast_fit_args(root: Path, steps: int) -> list[str]:
    return [
        "--trainer.max_steps",
        str(steps),
        "--trainer.val_check_interval",
        str(steps),
        "--trainer.limit_val_batches",
        "1",
        "--trainer.logger.init_args.save_dir",
        str(root),
        "--trainer.enable_progress_bar",
        "false",
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.clip_frames",
        "3",
        "--data.init_args.crop_size",
        "32",
        "--model.init_args.channels",
        "4",
        "--model.init_args.num_blocks",
        "1",
        "--samples.save_files",
        "false",
    ]


def test_overview_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "fit" in out and "plugins" in out


def test_plugins_command_lists_reference(tmp_path):
    result = run_vsr("plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "reference.ReferenceVSR" in result.stdout and "Minimal latent residual" in result.stdout


def test_unknown_method_is_one_line_with_suggestion(capsys):
    assert main(["fit", "--model", "RefrenceVSR"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown method 'RefrenceVSR'") and "Did you mean" in err
    assert len(err.splitlines()) == 1


def test_unknown_config_key_is_an_error(tmp_path):
    result = run_vsr("fit", "--model", "ReferenceVSR", "--model.init_args.no_such_option", "3", cwd=tmp_path)
    assert result.returncode != 0
    assert "no_such_option" in result.stderr
    assert "Traceback" not in result.stderr


def config_stack(config: Path) -> list[Path]:
    """``[config]``, or ``[base, config]`` for an overlay (a file without ``model.class_path``): the base its header names."""
    if "class_path" in (yaml.safe_load(config.read_text()).get("model") or {}):
        return [config]
    base = overlay_base(str(config))
    assert base is not None, f"{config} has no model.class_path and names no base config in its header"
    return [Path(base), config]


def test_an_overlay_given_alone_names_its_base(tmp_path, capsys):
    (tmp_path / "base.yaml").write_text("model:\n  class_path: reference.ReferenceVSR\n")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        "# Use after base.yaml:\n#   vsr fit --config base.yaml --config overlay.yaml\nmodel:\n  init_args:\n    channels: 4\n"
    )
    assert main(["fit", "--config", str(overlay)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {overlay} sets no model.class_path: it is an overlay of another config; give its base first: "
        f"vsr fit --config {tmp_path / 'base.yaml'} --config {overlay}"
    )
    anonymous = tmp_path / "anonymous.yaml"
    anonymous.write_text("model:\n  init_args:\n    channels: 4\n")
    assert main(["fit", "--config", str(anonymous)]) == 2
    assert "give that config (or --model NAME) before it" in capsys.readouterr().err


@pytest.mark.parametrize("config", SHIPPED_CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_shipped_config_is_valid(config, tmp_path):
    stack = config_stack(config)
    result = run_vsr("fit", *(f"--config={path}" for path in stack), "--print_config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = yaml.safe_load(result.stdout)
    assert printed["model"]["class_path"] == yaml.safe_load(stack[0].read_text())["model"]["class_path"]


def test_model_help_shows_method_arguments(tmp_path):
    result = run_vsr("fit", "--model.help", "ReferenceVSR", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--model.channels" in result.stdout and "--model.num_blocks" in result.stdout


@pytest.mark.slow
def test_fit_rerun_from_config_and_exact_resume(tmp_path):
    """6 steps straight == 3 steps + resume for 3 more, and the saved config.yaml re-runs."""
    straight = run_vsr("fit", "--model", "ReferenceVSR", *fast_fit_args(tmp_path / "a", 6), cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = run_vsr("fit", "--model", "ReferenceVSR", *fast_fit_args(tmp_path / "b", 3), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]

    config = next((tmp_path / "b").rglob("config.yaml"))
    last = next((tmp_path / "b").rglob("last.ckpt"))
    resumed = run_vsr(
        "fit",
        "-c",
        str(config),
        "--trainer.max_steps",
        "6",
        "--trainer.val_check_interval",
        "6",
        "--ckpt_path",
        str(last),
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = torch.load(next((tmp_path / "a").rglob("last.ckpt")), weights_only=True)
    assert sorted(p.name for p in (tmp_path / "b" / "ReferenceVSR").iterdir()) == ["version_0"]  # resumed in its run
    b = torch.load(next((tmp_path / "b").rglob("version_0/**/last.ckpt")), weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=f"{key} differs after resume")


def test_ckpt_path_last_without_runs_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--model", "ReferenceVSR", "--ckpt_path", "last"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1] == "error: --ckpt_path last: no checkpoints/last.ckpt under 'runs/ReferenceVSR'; pass --ckpt_path PATH"
    )


def test_latest_checkpoint_picks_the_newest_version(tmp_path):
    import time

    from vsr_core.cli import latest_checkpoint

    for version in ("version_0", "version_1"):
        path = tmp_path / version / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        time.sleep(0.01)
    assert latest_checkpoint(tmp_path) == tmp_path / "version_1" / "checkpoints" / "last.ckpt"


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: reference.ReferenceVSR\n  init_args: {channels: 4\ntrainer: [\n")
    assert main(["fit", "-c", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: YAML syntax error at line 4, column 8: ") and "\n" not in err
    assert "from line 3" in err  # where the unclosed mapping began
    tab = tmp_path / "tab.yaml"
    tab.write_text("model:\n  class_path: reference.ReferenceVSR\n\tinit_args: {}\n")
    assert main(["fit", "--config", str(tab)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tab}: YAML syntax error at line 3, column 1: found character '\\t' that cannot start any token"
    )


def test_version_is_the_distribution_version(capsys):
    import tomllib

    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert main(["--version"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"vsr {expected} (torch {torch.__version__.split('+')[0]}") and "lightning" in line


HEAVY = ("torch", "lightning", "diffusers", "pyiqa", "reference", "satb")


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["--help"], ()),
        (["--version"], ()),
        (["plugins"], ()),
        (["evaluate", "--help"], ()),
        (["degrade", "--help"], ()),
        (["restore", "--help"], ()),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_help_version_and_listing_import_no_heavy_stack(argv, allowed, tmp_path):
    """What `vsr --help`, `vsr plugins`, ... import: none of torch, Lightning, diffusers, pyiqa or a plugin."""
    code = (
        "import sys\nfrom vsr_core.cli import main\n"
        f"try:\n    code = main({argv!r})\nexcept SystemExit as exit_:\n    code = exit_.code or 0\n"
        f"print('IMPORTED', sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}), code)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"IMPORTED {sorted(allowed)} 0", result.stdout[-2000:]


@pytest.mark.slow
def test_a_fit_prints_one_summary_and_none_of_lightnings_noise(tmp_path):
    """What the terminal shows for a run: the method's parameter summary once, vsr's one-line run summary, the bar."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = fast_fit_args(tmp_path / "runs", 2)
    i = args.index("--trainer.enable_progress_bar")
    del args[i : i + 2]  # the bar stays on: it is part of what a user sees
    result = run_vsr("fit", "--model", "ReferenceVSR", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = result.stdout + result.stderr
    for noise in ("Seed set to", "GPU available", "TPU available", "FLOPs", "v_num", "┃ Name", "Traceback"):
        assert noise not in shown, noise
    assert shown.count("ReferenceVSR: ") == 1  # VSRMethod's parameter summary, not Lightning's table as well
    summary = [line for line in result.stderr.splitlines() if line.startswith("vsr fit ReferenceVSR in ")]
    assert summary == [
        f"vsr fit ReferenceVSR in {tmp_path / 'runs'}/ReferenceVSR/version_0: cpu, 32-true, seed 0, "
        "2 steps, validation every 2 steps"
    ]
    events = EventAccumulator(str(tmp_path / "runs" / "ReferenceVSR" / "version_0"))
    events.Reload()
    assert "hp_metric" not in events.Tags()["scalars"] and "val/psnr_bicubic" in events.Tags()["scalars"]


def test_vsr_warnings_are_one_line_without_a_source_line(capsys, monkeypatch):
    import warnings

    from vsr_core import cli
    from vsr_core.data.sources import DataWarning

    others = []
    monkeypatch.setattr(cli, "_default_show_warning", lambda *args: others.append(args))
    cli._show_warning(DataWarning("evaluation data: skipping 1 of 4 clips: x"), DataWarning, "/some/module.py", 12)
    assert capsys.readouterr().err == "warning: evaluation data: skipping 1 of 4 clips: x\n" and others == []
    cli._show_warning(UserWarning("from elsewhere"), UserWarning, "/some/module.py", 12)
    assert len(others) == 1 and others[0][1] is UserWarning  # other libraries' warnings keep Python's format
    assert warnings.showwarning is not cli._show_warning  # only installed while vsr runs a Lightning command
