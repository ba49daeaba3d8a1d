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
        "fit", "--model", "ReferenceVSR",
        "--model.channels", "4", "--model.num_blocks", "1",
        "--trainer.max_steps", "1", "--trainer.val_check_interval", "1", "--trainer.limit_val_batches", "1",
        "--trainer.logger.init_args.save_dir", str(root),
        "--trainer.enable_progress_bar", "false",
        "--data.init_args.num_workers", "0", "--data.init_args.clip_frames", "3", "--data.init_args.crop_size", "32",
        "--samples.save_files", "false",
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
    runs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
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
def test_fit_ckpt_path_bad_files_are_one_line_and_leave_no_run_folder(tmp_path, monkeypatch, capsys, kind, malicious_checkpoint):
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
    assert {"missing": "does not exist", "text": "not a file written by torch.save", "malicious": "refused"}[kind] in line
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
    assert sorted(p.name for p in (tmp_path / "runs" / "ReferenceVSR").iterdir()) == ["version_0", "version_1"]


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
