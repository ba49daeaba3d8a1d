"""Every installed method at its paper's settings on one GPU, in one command (or on CPU with --dry-run).

    python benchmarks/gpu_suite.py                 # real presets, random weights, CUDA, ~8 minutes
    python benchmarks/gpu_suite.py --dry-run       # tiny presets on the CPU: the same code, every column

For each installed method and each of its ``paper_benchmarks`` (``vsr_core.benchmark.PaperBenchmark``:
the paper's speed table), the method's real preset is built on the meta device and materialised on
the GPU with random weights (no download), then:

* ``infer``: ``restore`` on one window in bf16 (weights and activations), median of ``--repeats``
  after warm-up -> seconds per frame and per clip;
* ``train``: one training step through the Lightning Trainer in bf16-mixed with gradient
  checkpointing (fp32 master weights for what trains) -> seconds per step;

each with the peak GPU memory, achieved TFLOP/s (``torch.utils.flop_counter`` counts the FLOPs of
one pass) and MFU against the device's dense bf16 peak, and the paper's time scaled by the
peak-FLOP ratio of the paper's GPU beside ours as a ratio (target: <= 0.5, i.e. 2x better).
Every method runs in its own process with a time box (``--method-seconds``), so one slow or
out-of-memory method cannot take the others down or eat the budget. The table is printed and
written to ``benchmarks/out/gpu_suite.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COLUMNS = (
    "method",
    "setting",
    "mode",
    "s/frame",
    "s/clip",
    "s/step",
    "peak GiB",
    "TFLOP/s",
    "MFU",
    "paper",
    "paper scaled",
    "ours / scaled",
    "status",
)


# ----------------------------------------------------------------------------- one method (worker)


def _settings(cls: Any) -> list[Any]:
    from vsr_core.benchmark import PaperBenchmark

    return list(cls.paper_benchmarks) or [PaperBenchmark("default window", "infer", 17, 256, 256)]


def _tiny(benchmark: Any, method: Any) -> Any:
    """The dry run's stand-in of a setting: same mode and step count, a CPU-sized window."""
    import dataclasses

    from vsr_core.frames import frames_at_least

    size = 8 * method.scale * max(1, method.spatial_multiple)
    return dataclasses.replace(benchmark, frames=frames_at_least(3, method.frames_rule), height=size, width=size)


def _build(cls: Any, benchmark: Any, device: Any, dry_run: bool) -> Any:
    import torch

    from vsr_core.commands.bench import _params_on_meta, materialize

    torch.manual_seed(0)
    if dry_run:
        return cls(**cls.tiny_init_args).to(device)
    with _params_on_meta():
        method = cls(**benchmark.init_args)
    return materialize(method, device)


def _infer_row(method: Any, benchmark: Any, device: Any, args: argparse.Namespace, peak: float | None) -> dict:
    import torch

    from vsr_core.commands.bench import _count_flops, _measure

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    method.eval().to(dtype=dtype)
    scale = method.scale
    lq = torch.rand(1, 3, benchmark.frames, benchmark.height // scale, benchmark.width // scale, device=device)
    lq = (lq * 2 - 1).to(dtype)
    sampling = {} if benchmark.num_inference_steps is None else {"num_inference_steps": benchmark.num_inference_steps}
    generator = torch.Generator(device=device).manual_seed(0)

    def infer() -> Any:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return method.restore(lq, generator=generator, **sampling)

    seconds, memory = _measure(infer, device, args.warmup, args.repeats)
    tflops = _count_flops(infer) / seconds / 1e12
    return {
        "s/frame": seconds / benchmark.frames,
        "s/clip": seconds,
        "peak GiB": memory / 2**30,
        "TFLOP/s": tflops,
        "MFU": tflops / peak if peak else None,
    }


def _train_row(method: Any, benchmark: Any, device: Any, args: argparse.Namespace, peak: float | None) -> dict:
    import torch

    from vsr_core.commands import bench

    frozen_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    for parameter in method.parameters():  # fp32 master weights for what trains, bf16 for the rest
        if not parameter.requires_grad:
            parameter.data = parameter.data.to(frozen_dtype)
    method.gradient_checkpointing = True
    scale = method.scale
    hq = torch.rand(1, 3, benchmark.frames, benchmark.height, benchmark.width) * 2 - 1
    lq = torch.rand(1, 3, benchmark.frames, benchmark.height // scale, benchmark.width // scale) * 2 - 1
    namespace = argparse.Namespace(
        warmup=args.warmup,
        repeats=args.repeats,
        precision="bf16" if device.type == "cuda" else "fp32",
        peak_tflops=peak,
    )
    row = bench._train_row(method, hq, lq, device, namespace, peak)
    return {
        "s/step": row["s/step"],
        "peak GiB": row["peak_mem_gib"],
        "TFLOP/s": row.get("TFLOP/s"),
        "MFU": row.get("MFU"),
    }


def run_method(path: str, args: argparse.Namespace) -> list[dict]:
    """Every benchmark of one method (the worker process); rows as dicts with the table's columns."""
    import torch

    from vsr_core.benchmark import device_peak_tflops
    from vsr_core.plugins import method_class

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cls = method_class(path)
    device = torch.device("cpu" if args.dry_run else "cuda")
    peak = args.peak_tflops or (
        device_peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    )
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    seen: set[tuple[str, int | None]] = set()
    for benchmark in _settings(cls):
        if args.dry_run:  # the tiny stand-ins of settings that differ only in size are the same run
            key = (benchmark.mode, benchmark.num_inference_steps)
            if key in seen:
                continue
            seen.add(key)
        row: dict[str, Any] = {"method": path, "setting": benchmark.label, "mode": benchmark.mode}
        compiled_row = None
        try:
            method = _build(cls, benchmark, device, args.dry_run)
            if args.dry_run:
                benchmark = _tiny(benchmark, method)
            measured = (_infer_row if benchmark.mode == "infer" else _train_row)(method, benchmark, device, args, peak)
            row.update(measured, status="ok")
            if args.compile and benchmark.mode == "infer":
                # torch.compile of the denoiser blocks (VSRMethod.compile_blocks), timed after its warm-up
                method.compile_blocks()
                compiled = _infer_row(method, benchmark, device, args, peak)
                speedup = measured["s/clip"] / compiled["s/clip"]
                compiled_row = _compare(
                    benchmark,
                    peak,
                    {
                        **row,
                        **compiled,
                        "setting": f"{benchmark.label} +compile",
                        "status": f"ok ({speedup:.2f}x vs eager)",
                    },
                )
            del method
        except torch.cuda.OutOfMemoryError:
            row["status"] = "out of memory"
        except Exception as err:  # noqa: BLE001 - a broken setting is reported in its row, the rest still runs
            row["status"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
        if device.type == "cuda":
            torch.cuda.empty_cache()
        rows.append(_compare(benchmark, peak, row))
        if compiled_row is not None:
            rows.append(compiled_row)
    return rows


def _compare(benchmark: Any, peak: float | None, row: dict) -> dict:
    """``row`` with the paper's time, the time scaled to our GPU and our time over it."""
    from vsr_core.benchmark import scaled_paper_seconds

    scaled = scaled_paper_seconds(benchmark, peak)
    ours = {"frame": row.get("s/frame"), "clip": row.get("s/clip"), "step": row.get("s/step")}[benchmark.per]
    if benchmark.paper_seconds is not None:
        row["paper"] = f"{benchmark.paper_seconds:g} s/{benchmark.per} ({benchmark.paper_gpu}, {benchmark.source})"
    row["paper scaled"] = scaled
    row["ours / scaled"] = ours / scaled if scaled and ours else None
    return row


# ----------------------------------------------------------------------------- the suite (parent)


def _format(value: Any, column: str) -> str:
    if value is None:
        return "-"
    if column == "MFU":
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(c), c) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def installed_methods(selected: list[str] | None) -> list[str]:
    from vsr_core.plugins import available_methods

    methods = sorted(available_methods())
    if selected:
        unknown = [m for m in selected if m not in methods]
        if unknown:
            raise SystemExit(f"error: not installed: {', '.join(unknown)} (installed: {', '.join(methods)})")
        methods = [m for m in methods if m in selected]
    return methods


def run_suite(args: argparse.Namespace) -> list[dict]:
    rows: list[dict] = []
    deadline = time.monotonic() + args.budget_seconds
    for path in installed_methods(args.methods):
        left = deadline - time.monotonic()
        if left <= 5:
            rows.append({"method": path, "status": "skipped: the suite's time budget is spent"})
            continue
        box = min(args.method_seconds, left)
        command = [sys.executable, __file__, "--worker", path, *_forwarded(args)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=box, cwd=REPO)
        except subprocess.TimeoutExpired:
            rows.append({"method": path, "status": f"timed out after {box:.0f} s"})
            continue
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:160]
            rows.append({"method": path, "status": f"failed: {tail}"})
            continue
        rows.extend(json.loads(line) for line in lines)
    return rows


def _forwarded(args: argparse.Namespace) -> list[str]:
    out = ["--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    if args.dry_run:
        out.append("--dry-run")
    if args.peak_tflops:
        out += ["--peak-tflops", str(args.peak_tflops)]
    if args.compile:
        out.append("--compile")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny presets on the CPU (what the test suite runs)")
    parser.add_argument("--methods", nargs="*", help="only these installed methods (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--budget-seconds", type=float, default=480.0, help="the whole suite's time box")
    parser.add_argument("--method-seconds", type=float, default=240.0, help="one method's time box")
    parser.add_argument("--peak-tflops", type=float, help="device peak when the GPU is not in the built-in table")
    parser.add_argument("--compile", action="store_true", help="also time each inference setting with compiled blocks")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "gpu_suite.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        for row in run_method(args.worker, args):
            print(json.dumps(row), flush=True)
        return 0
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA device; run with --dry-run to check the suite on the CPU", file=sys.stderr)
            return 2
    start = time.monotonic()
    rows = run_suite(args)
    device = "CPU (dry run, tiny presets)" if args.dry_run else _gpu_name()
    header = (
        f"# GPU suite: {device}, {time.strftime('%Y-%m-%d')}, median of {args.repeats} after {args.warmup} warm-up, "
        f"{time.monotonic() - start:.0f} s\n\n`python benchmarks/gpu_suite.py {' '.join(argv or sys.argv[1:])}`"
    )
    table = markdown(rows, header)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    return 0 if all(str(row.get("status", "")).startswith("ok") for row in rows) else 1


def _gpu_name() -> str:
    """The device and the attention kernels PyTorch may pick (diffusers' processors call SDPA)."""
    import torch

    backends = {
        "flash": torch.backends.cuda.flash_sdp_enabled(),
        "mem-efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
        "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
        "math": torch.backends.cuda.math_sdp_enabled(),
    }
    enabled = ", ".join(name for name, on in backends.items() if on)
    return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, SDPA backends enabled: {enabled})"


if __name__ == "__main__":
    sys.exit(main())
