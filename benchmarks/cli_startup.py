"""Start-up time of the ``vsr`` command: each command line in fresh processes, medians, ratio to ``import torch``.

Every command runs ``--repeat`` times in a new interpreter (``python -m vsr_core.cli ...``, which is what
the ``vsr`` console script calls), alternating with the others so that a busy machine slows all of them
alike. The reference is ``python -c "import torch"``: a vsr command that prints help or a listing should
cost less than the library it drives. Targets (2 cores): ``vsr --help`` faster than ``import torch``,
``vsr plugins`` within 2x of it.

    python benchmarks/cli_startup.py [--repeat 7] [--json out.json]

Prints one row per command: median and min wall time in seconds, the ratio of the median to the
``import torch`` median, and whether the command imported torch / lightning / a plugin (read with
``-X importtime`` in one extra run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["COMMANDS", "imported_modules", "main", "time_command"]

ROOT = Path(__file__).resolve().parents[1]

# (label, argv after the interpreter, target ratio to `import torch` or None)
COMMANDS: list[tuple[str, list[str], float | None]] = [
    ('python -c "import torch"', ["-c", "import torch"], None),
    ("vsr --help", ["-m", "vsr_core.cli", "--help"], 1.0),
    ("vsr --version", ["-m", "vsr_core.cli", "--version"], 1.0),
    ("vsr plugins", ["-m", "vsr_core.cli", "plugins"], 2.0),
    ("vsr restore --help", ["-m", "vsr_core.cli", "restore", "--help"], None),
    ("vsr evaluate --help", ["-m", "vsr_core.cli", "evaluate", "--help"], None),
    ("vsr degrade --help", ["-m", "vsr_core.cli", "degrade", "--help"], None),
]

WATCHED = ("torch", "lightning", "diffusers", "pyiqa", "reference", "satb")


def _env() -> dict[str, str]:
    # The in-tree plugins are importable the way the test suite makes them so.
    extra = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    return {
        **os.environ,
        "PYTHONPATH": extra + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "PYTHONWARNINGS": "ignore",
    }


def time_command(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and exit code of one fresh ``python argv...`` (output discarded)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *argv], env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start, done.returncode


def imported_modules(argv: list[str]) -> list[str]:
    """Which of :data:`WATCHED` the command imports (top-level names, from ``-X importtime``)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], env=_env(), cwd=ROOT, capture_output=True, text=True
    )
    found = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name.split(".")[0] in WATCHED:
                found.add(name.split(".")[0])
    return [name for name in WATCHED if name in found]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh processes per command")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    for _, argv, _ in COMMANDS:  # warm the file cache once, untimed
        time_command(argv)
    times: dict[str, list[float]] = {label: [] for label, _, _ in COMMANDS}
    failed: set[str] = set()
    for _ in range(args.repeat):
        for label, argv, _ in COMMANDS:
            seconds, code = time_command(argv)
            times[label].append(seconds)
            if code != 0:
                failed.add(label)
    reference = statistics.median(times[COMMANDS[0][0]])
    print(f"{'command':<26} {'median s':>9} {'min s':>7} {'x torch':>8} {'target':>7}  imports")
    results = {}
    for label, argv, target in COMMANDS:
        median = statistics.median(times[label])
        ratio = median / reference
        verdict = "" if target is None else ("OK" if ratio <= target else "MISSED")
        if label in failed:
            verdict = "FAILS"  # a non-zero exit: the command (or option) does not exist here
        imports = imported_modules(argv)
        target_text = "-" if target is None else f"<={target:g}"
        print(
            f"{label:<26} {median:>9.3f} {min(times[label]):>7.3f} {ratio:>8.2f} {target_text:>7} {verdict:>6}  "
            f"{', '.join(imports) or 'none of ' + '/'.join(WATCHED[:3])}"
        )
        results[label] = {
            "median_s": median,
            "min_s": min(times[label]),
            "ratio_to_torch": ratio,
            "target": target,
            "imports": imports,
            "exit_ok": label not in failed,
        }
    print(f"\n{args.repeat} fresh processes per command, {os.cpu_count()} CPUs, {sys.executable}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    missed = [
        label
        for label, r in results.items()
        if label in failed or (r["target"] is not None and r["ratio_to_torch"] > r["target"])
    ]
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
