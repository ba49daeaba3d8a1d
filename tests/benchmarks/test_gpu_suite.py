"""`python benchmarks/gpu_suite.py --dry-run`: the GPU suite's code on tiny presets on the CPU.

The suite runs rarely (a GPU is lent now and then, for minutes), so its first GPU run must not be
its first run: the dry run goes through the same worker processes, builds, measurements, FLOP
counts, paper comparisons and markdown table, for every installed method.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vsr_core.plugins import available_methods

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "benchmarks" / "gpu_suite.py"


@pytest.mark.slow
def test_dry_run_measures_every_installed_method(tmp_path):
    out = tmp_path / "gpu_suite.md"
    done = subprocess.run(
        [
            sys.executable,
            str(SUITE),
            "--dry-run",
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--peak-tflops",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = out.read_text()
    assert table.strip() in done.stdout  # printed and written
    header = "| method | setting | mode | s/frame | s/clip | s/step | peak GiB | TFLOP/s | MFU | paper | paper scaled | ours / scaled | status |"
    assert header in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and line != header]
    for method in available_methods():
        mine = [r for r in rows if r.startswith(f"| {method} |")]
        assert mine, f"{method} is missing from the suite"
        assert all(r.rstrip().endswith("| ok |") for r in mine), mine
    # a method that declares its paper's timings gets the scaled comparison, e.g. SATB-VR's Table 3
    satb = [r for r in rows if r.startswith("| satb.SATBVR |") and "infer" in r]
    assert satb and all("s/frame (H20, Table 3)" in r for r in satb)
    train = [r for r in rows if "| train |" in r]
    assert train and all(r.split("|")[6].strip() != "-" for r in train)  # s/step measured


def test_scaled_paper_time_is_the_peak_ratio():
    from vsr_core.benchmark import PaperBenchmark, scaled_paper_seconds

    table3 = PaperBenchmark("1 step", paper_seconds=1.106, paper_gpu="H20")
    # an H20 (148 TFLOP/s) second is 148/989 of an H100 second
    assert scaled_paper_seconds(table3, 989.0) == pytest.approx(1.106 * 148.0 / 989.0)
    assert scaled_paper_seconds(PaperBenchmark("none"), 989.0) is None
