"""The plugin-authoring guide is executable: build its example package, install it, train it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugin-authoring.md"
FENCE = re.compile(r"^```\w+ file=(?P<path>\S+)\n(?P<body>.*?)^```$", re.S | re.M)


def guide_files() -> dict[str, str]:
    return {m["path"]: m["body"] for m in FENCE.finditer(GUIDE.read_text())}


def test_guide_declares_the_whole_package() -> None:
    files = guide_files()
    assert {"pyproject.toml", "sharpvsr/__init__.py", "sharpvsr/model.py", "sharpvsr/configs/tiny.yaml"} <= set(files)


@pytest.mark.slow
def test_example_plugin_installs_lists_and_trains(tmp_path: Path) -> None:
    package = tmp_path / "sharpvsr"
    for rel, body in guide_files().items():
        target = package / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    site = tmp_path / "site"
    # A real pip install (into a separate target dir, so the test leaves the environment as it was).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(package),
        ],
        check=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    vsr = [sys.executable, "-m", "vsr_core.cli"]

    listed = subprocess.run([*vsr, "plugins"], env=env, capture_output=True, text=True, check=True)
    assert "sharpvsr.SharpVSR" in listed.stdout

    run_dir = tmp_path / "runs"
    fit = subprocess.run(
        [
            *vsr,
            "fit",
            "--model",
            "SharpVSR",
            "--trainer.max_steps",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.val_check_interval",
            "2",
            "--trainer.default_root_dir",
            str(run_dir),
            "--trainer.logger.init_args.save_dir",
            str(run_dir),
            "--data.init_args.num_workers",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert list(run_dir.rglob("*.ckpt")), "training wrote no checkpoint"
    assert list(run_dir.rglob("config.yaml")), "training wrote no resolved config"

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert tests.returncode == 0, tests.stdout[-3000:]

    # vsr's every-method smoke test covers the newly installed plugin with no edit.
    smoke = Path(__file__).resolve().parents[1] / "plugins" / "test_every_method.py"
    every = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(smoke), "-k", "sharpvsr"],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert every.returncode == 0, every.stdout[-3000:]
    assert "passed" in every.stdout and "Test_sharpvsr_SharpVSR" not in every.stdout  # quiet: counts only
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", str(smoke)],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert "Test_sharpvsr_SharpVSR::test_fit_steps_update_trainable_parameters" in collected.stdout
