"""vsr's LightningCLI: safe `--ckpt_path`, atomic run folders, nothing left by a failed fit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

import vsr_core.lightning_cli as lightning_cli
from vsr_core.cli import main
from vsr_core.lightning_cli import allocate_version


def fit_args(root: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--model",
        "ReferenceVSR",
        "--model.channels",
        "4",
        "--model.num_blocks",
        "1",
        "--trainer.max_steps",
        "1",
        "--trainer.val_check_interval",
        "1",
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
        "--samples.save_files",
        "false",
        *extra,
    ]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def test_racing_allocators_get_different_folders_even_from_a_stale_listing(tmp_path, monkeypatch):
    """Every thread sees the folder as it was before any created one (the listing frozen at empty):
    only the atomic os.mkdir and its retry keep them apart."""
    monkeypatch.setattr(lightning_cli, "_taken_versions", lambda root: [])
    barrier = threading.Barrier(8)
    got: list[int] = []

    def allocate() -> None:
        barrier.wait()
        got.append(allocate_version(tmp_path / "runs" / "M"))

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == list(range(8))
    assert sorted(p.name for p in (tmp_path / "runs" / "M").iterdir()) == sorted(f"version_{i}" for i in range(8))


def test_the_next_version_follows_the_highest_existing_one(tmp_path):
    (tmp_path / "version_0").mkdir()
    (tmp_path / "version_7").mkdir()
    (tmp_path / "version_x").mkdir()
    assert allocate_version(tmp_path) == 8 and (tmp_path / "version_8").is_dir()


@pytest.mark.slow
def test_two_fits_started_together_land_in_different_folders(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "vsr_core.cli", *fit_args(tmp_path / "runs")]
    runs = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr[-2000:]
    folders = sorted(p.name for p in (tmp_path / "runs" / "ReferenceVSR").iterdir())
    assert folders == ["version_0", "version_1"]
    for folder in folders:
        base = tmp_path / "runs" / "ReferenceVSR" / folder
        assert (base / "config.yaml").is_file() and (base / "checkpoints" / "last.ckpt").is_file()
        # the folder number is not pinned in the saved config: re-running it takes a new folder
        assert yaml.safe_load((base / "config.yaml").read_text())["trainer"]["logger"]["init_args"]["version"] is None


@pytest.mark.parametrize("kind", ["missing", "text", "malicious"])
def test_fit_ckpt_path_bad_files_are_one_line_and_leave_no_run_folder(
    tmp_path, monkeypatch, capsys, kind, malicious_checkpoint
):
    monkeypatch.chdir(tmp_path)
    path, marker = malicious_checkpoint
    if kind == "missing":
        path = tmp_path / "missing.ckpt"
    elif kind == "text":
        path = tmp_path / "notes.ckpt"
        path.write_text("these are my notes, not a checkpoint\n" * 10)
    assert main(fit_args(tmp_path / "runs", "--ckpt_path", str(path))) == 2
    line = one_error_line(capsys)
    assert str(path) in line
    assert {"missing": "does not exist", "text": "not a file written by torch.save", "malicious": "refused"}[
        kind
    ] in line
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()


def test_weights_only_false_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(fit_args(tmp_path / "runs", "--weights_only", "false")) == 2
    assert "weights_only" in one_error_line(capsys)


def test_lightning_loads_the_checkpoint_with_weights_only(tmp_path, monkeypatch):
    """Resuming goes through Lightning's own torch.load: it must be asked for weights_only=True."""
    import torch

    monkeypatch.chdir(tmp_path)
    assert main(fit_args(tmp_path / "runs")) == 0
    last = next((tmp_path / "runs").rglob("last.ckpt"))
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    assert main(fit_args(tmp_path / "runs", "--ckpt_path", str(last), "--trainer.max_steps", "2")) == 0
    assert seen and all(value is True for value in seen)
    # the resume continued in the run it came from
    assert sorted(p.name for p in (tmp_path / "runs" / "ReferenceVSR").iterdir()) == ["version_0"]


def test_a_fit_that_fails_before_a_checkpoint_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "ReferenceVSR" / "version_0").mkdir(parents=True)  # an earlier run: kept
    assert main(fit_args(tmp_path / "runs", "--data.init_args.clip_frames", "5000")) == 2
    assert "clip" in one_error_line(capsys)
    assert sorted(p.name for p in (tmp_path / "runs" / "ReferenceVSR").iterdir()) == ["version_0"]


def test_ctrl_c_while_importing_is_one_line(tmp_path):
    """A KeyboardInterrupt raised by the first heavy import (what Ctrl-C at start-up does) is caught by main."""
    script = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'lightning' or name == 'torch':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from vsr_core.cli import main\n"
        "sys.exit(main(['fit', '--model', 'ReferenceVSR']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 130 and result.stderr.strip() == "interrupted", result.stderr


def test_importing_the_cli_imports_neither_torch_nor_lightning():
    code = "import sys, vsr_core.cli; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


# ----------------------------------------------------------------------------- the documented command lines
DOCS = Path(__file__).resolve().parents[2] / "docs"
# Appended to a documented line so that it runs in seconds: the documented flags themselves are kept verbatim.
FAST = [
    "--model.channels",
    "4",
    "--model.num_blocks",
    "1",
    "--trainer.max_steps",
    "2",
    "--trainer.val_check_interval",
    "2",
    "--trainer.limit_val_batches",
    "1",
    "--data.init_args.num_workers",
    "0",
    "--data.init_args.clip_frames",
    "3",
    "--data.init_args.crop_size",
    "32",
    "--samples.save_files",
    "false",
]


def documented(page: str, start: str) -> list[str]:
    """The argv of the line of ``docs/<page>`` that starts with ``start`` (it must be there, verbatim)."""
    lines = [line.strip() for line in (DOCS / page).read_text().splitlines() if line.strip().startswith(start)]
    assert lines, f"docs/{page} no longer shows a line starting with {start!r}"
    argv = lines[0].split()
    assert argv[0] == "vsr"
    return argv[1:]


def test_the_documented_default_root_dir_moves_the_whole_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = documented("cli.md", "vsr fit --model ReferenceVSR --trainer.default_root_dir")
    assert argv == ["fit", "--model", "ReferenceVSR", "--trainer.default_root_dir", "experiments/exp1"]
    assert main([*argv, *FAST, "--trainer.enable_progress_bar", "false"]) == 0
    run = tmp_path / "experiments" / "exp1" / "ReferenceVSR" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "train.log").is_file()
    assert list(run.glob("events.out.tfevents.*"))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lightning_logs").exists()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["trainer"]["default_root_dir"] == "experiments/exp1"
    assert saved["trainer"]["logger"]["init_args"]["save_dir"] == "experiments/exp1"


def test_the_documented_resume_continues_in_the_same_run_and_says_which_checkpoint(tmp_path, monkeypatch, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1"]
    assert main(["fit", "--model", "ReferenceVSR", *FAST, *quiet]) == 0
    capsys.readouterr()
    argv = documented("cli.md", "vsr fit --model ReferenceVSR --ckpt_path last")
    assert main([*argv, *FAST, *quiet, "--trainer.max_steps", "4", "--trainer.val_check_interval", "2"]) == 0
    err = capsys.readouterr().err
    run = Path("runs") / "ReferenceVSR" / "version_0"
    assert f"resuming from {run}/checkpoints/last.ckpt (step 2) in {run}" in err
    assert sorted(p.name for p in (tmp_path / "runs" / "ReferenceVSR").iterdir()) == ["version_0"]
    import torch

    assert torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    events = EventAccumulator(str(tmp_path / run), size_guidance={"scalars": 0})
    events.Reload()  # one TensorBoard run: the curves of both processes in the same folder, in order
    assert [e.step for e in events.Scalars("train/loss")] == [0, 1, 2, 3]
    log = (tmp_path / run / "train.log").read_text()
    assert log.count(" fit ReferenceVSR in ") == 2 and "(resumed at step 2 from" in log


def test_last_looks_only_under_the_root_dir_or_in_the_named_run(tmp_path, monkeypatch, capsys):
    import os
    import time

    monkeypatch.chdir(tmp_path)
    quiet = ["--trainer.enable_progress_bar", "false"]
    assert (
        main(["fit", "--model", "ReferenceVSR", *FAST, *quiet, "--trainer.default_root_dir", "a"]) == 0
    )  # a/.../version_0
    assert (
        main(["fit", "--model", "ReferenceVSR", *FAST, *quiet, "--trainer.default_root_dir", "a"]) == 0
    )  # a/.../version_1
    assert main(["fit", "--model", "ReferenceVSR", *FAST, *quiet]) == 0  # runs/.../version_0, newest of all
    old = time.time() - 100
    os.utime(tmp_path / "a/ReferenceVSR/version_0/checkpoints/last.ckpt", (old, old))
    capsys.readouterr()
    more = ["--trainer.max_steps", "3", "--trainer.val_check_interval", "3"]
    assert (
        main(
            [
                "fit",
                "--model",
                "ReferenceVSR",
                *FAST,
                *quiet,
                *more,
                "--trainer.default_root_dir",
                "a",
                "--ckpt_path",
                "last",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert (
        "resuming from a/ReferenceVSR/version_1/checkpoints/last.ckpt (step 2) in a/ReferenceVSR/version_1; the newest of 2 runs"
        in err
    )
    named = ["--trainer.logger.init_args.version", "0", "--ckpt_path", "last", "--data.init_args.crop_size", "48"]
    assert (
        main(["fit", "--model", "ReferenceVSR", *FAST, *quiet, *more, "--trainer.default_root_dir", "a", *named]) == 0
    )
    err = capsys.readouterr().err
    assert "resuming from a/ReferenceVSR/version_0/checkpoints/last.ckpt (step 2)" in err
    assert "warning: that run trained on other data: data.init_args.crop_size: 32 -> 48" in err
    assert sorted(p.name for p in (tmp_path / "a" / "ReferenceVSR").iterdir()) == ["version_0", "version_1"]


def test_an_earlier_checkpoint_of_a_run_branches_into_a_new_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    quiet = [
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.val_check_interval",
        "1",
        "--checkpoint.save_top_k",
        "-1",
    ]
    assert main(["fit", "--model", "ReferenceVSR", *FAST, *quiet]) == 0
    first = tmp_path / "runs/ReferenceVSR/version_0/checkpoints/step000001.ckpt"
    assert first.is_file()
    capsys.readouterr()
    assert main(["fit", "--model", "ReferenceVSR", *FAST, *quiet, "--ckpt_path", str(first)]) == 0
    assert "an earlier checkpoint of" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs" / "ReferenceVSR").iterdir()) == ["version_0", "version_1"]


def test_the_documented_tqdm_progress_bar_replaces_vsrs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = documented("training.md", "vsr fit --model ReferenceVSR --trainer.callbacks+=TQDMProgressBar")
    assert main([*argv, *FAST]) == 0
    out = capsys.readouterr()
    assert "Epoch 0: 100%|" in out.out  # tqdm bar (Lightning writes it to stdout)
    assert "━" not in out.out + out.err  # no rich bar
    assert "multiple progress bar" not in out.err


def test_the_documented_wandb_command_without_wandb_is_one_line(tmp_path, monkeypatch, capsys):
    import importlib.util

    monkeypatch.chdir(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a)
    )
    argv = documented("training.md", "vsr fit --model ReferenceVSR --trainer.logger WandbLogger")
    assert main([*argv, *FAST]) == 2
    assert one_error_line(capsys) == (
        "error: --trainer.logger WandbLogger needs the wandb package, which is not installed: pip install 'vsr[wandb]'"
    )
    assert not (tmp_path / "runs").exists()


def test_the_wandb_extra_is_declared():
    import tomllib

    project = tomllib.loads((DOCS.parent / "pyproject.toml").read_text())["project"]
    assert any(r.startswith("wandb") for r in project["optional-dependencies"]["wandb"])


def test_the_documented_csv_logger_writes_metrics_csv_in_the_run_folder(tmp_path, monkeypatch):
    import csv

    monkeypatch.chdir(tmp_path)
    argv = documented("training.md", "vsr fit --model ReferenceVSR --trainer.logger CSVLogger")
    assert argv == ["fit", "--model", "ReferenceVSR", "--trainer.logger", "CSVLogger"]
    assert main([*argv, *FAST, "--trainer.enable_progress_bar", "false"]) == 0
    run = tmp_path / "runs" / "ReferenceVSR" / "version_0"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert any(row.get("val/psnr") for row in rows) and any(row.get("val/psnr_bicubic") for row in rows)
    assert (run / "train.log").is_file() and not list(run.glob("events.out.tfevents.*"))


def test_data_help_describes_every_argument_and_lists_the_presets(capsys):
    from vsr_core.data.degradations import available_presets

    with pytest.raises(SystemExit):
        main(["fit", "--data.help", "VideoDataModule"])
    out = capsys.readouterr().out
    assert "side of the square HQ training crop" in out and "DataLoader worker processes" in out
    assert "{" + ",".join(available_presets()) + "}" in out
