"""``vsr bench``: inference and training speed and peak memory of an installed method.

Inference: ``restore`` on one ``[1,3,F,H/s,W/s]`` window -> s/frame, frames/s, peak memory.
Training: one optimizer step (``training_step`` + backward + AdamW) on a ``[1,3,F,H,W]`` clip ->
s/step, clips/s, peak memory. Warm-up runs are discarded; medians of the repeats are printed.
Peak memory is the process RSS (sampled every 2 ms) on CPU and ``torch.cuda.max_memory_allocated``
on CUDA. ``--preset real`` builds the paper-size architecture with random weights: parameters
are created on the meta device, materialised empty on the target device and re-initialised, so
no checkpoint or download is needed. On CUDA, FLOPs of one run are counted with
``torch.utils.flop_counter.FlopCounterMode`` to report achieved TFLOP/s and MFU against the
device's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vsr_core.errors import ConfigError
from vsr_core.frames import frames_at_least, frames_at_most
from vsr_core.method import VSRMethod
from vsr_core.plugins import method_class

# Dense bf16 tensor-core peaks (TFLOP/s) by a substring of torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A6000": 155.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
}


def device_peak_tflops(device_name: str) -> float | None:
    """Known dense bf16 peak for a CUDA device name (longest matching key wins), else None."""
    matches = [key for key in BF16_PEAK_TFLOPS if key in device_name]
    return BF16_PEAK_TFLOPS[max(matches, key=len)] if matches else None


@contextlib.contextmanager
def _params_on_meta():
    """Move every ``nn.Parameter`` to the meta device as it is registered; buffers stay real.

    A plain ``with torch.device("meta")`` would also empty the buffers (schedules, rotary tables)
    whose computed values the model needs; parameters are re-initialised anyway. Each parameter
    exists on the host only between its creation and registration, so peak host memory is one layer.
    """
    original = nn.Module.register_parameter

    def register(module, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def materialize(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Give meta parameters real (empty) storage on ``device`` and re-initialise them.

    Modules with ``reset_parameters`` use it for their own parameters; any other parameter is drawn
    from N(0, 0.02) (1-D ones: ones for norm weights, zeros for biases), as transformer inits do.
    """
    reset_done: set[int] = set()
    for module in model.modules():
        own = dict(module.named_parameters(recurse=False))
        for name, param in own.items():
            if param.device.type == "meta":
                setattr(module, name, nn.Parameter(torch.empty_like(param, device=device), requires_grad=param.requires_grad))
        if own and hasattr(module, "reset_parameters"):
            with torch.no_grad():
                module.reset_parameters()
            reset_done.update(id(p) for p in module.parameters(recurse=False))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if id(param) in reset_done:
                continue
            if param.ndim > 1:
                param.normal_(0.0, 0.02)
            else:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
    return model.to(device)


def build_method(name: str, preset: str | None, device: str, materialize_params: bool = True) -> VSRMethod:
    """Instantiate method ``name``; ``preset`` needs a ``preset`` init argument. ``real`` is built via meta."""
    cls = method_class(name)
    kwargs: dict[str, Any] = {}
    if preset is not None:
        if "preset" not in inspect.signature(cls.__init__).parameters:
            raise ConfigError(
                f"method {cls.__name__} has no presets (no 'preset' init argument); drop --preset to bench its default size"
            )
        kwargs["preset"] = preset
    if preset in (None, "tiny"):
        return cls(**kwargs).to(device)
    with _params_on_meta():
        method = cls(**kwargs)
    return materialize(method, device) if materialize_params else method


class _PeakRSS:
    """Peak resident set size of this process while active, sampled by a thread (psutil)."""

    def __enter__(self):
        import psutil

        self._proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _measure(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> tuple[float, int]:
    """Median seconds of ``fn`` over ``repeats`` after ``warmup``; peak memory in bytes over the repeats."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times), torch.cuda.max_memory_allocated(device)
    with _PeakRSS() as rss:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times), rss.peak


def _count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _check_frames(method: VSRMethod, frames: int) -> None:
    multiple, remainder = method.frames_rule
    if frames < 1 or frames_at_least(frames, method.frames_rule) != frames:
        ok = frames_at_most(frames, method.frames_rule)
        raise ConfigError(
            f"{type(method).__name__} needs frames = {multiple}k+{remainder} (e.g. {ok} or {ok + multiple}), got {frames}"
        )


def run_bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but no CUDA device is available")
    torch.manual_seed(args.seed)
    method = build_method(args.model, args.preset, args.device)
    _check_frames(method, args.frames)
    if args.height % method.scale or args.width % method.scale:
        raise ConfigError(f"--height/--width must be multiples of the scale {method.scale}")
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
    hq = torch.rand(1, 3, args.frames, args.height, args.width, device=device) * 2 - 1
    lq = torch.rand(1, 3, args.frames, args.height // method.scale, args.width // method.scale, device=device) * 2 - 1
    sampling = {"num_inference_steps": args.steps} if args.steps is not None else {}
    results = []
    peak_tflops = args.peak_tflops or (device_peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None)

    def flops_row(row: dict[str, Any], fn: Callable[[], Any], seconds: float) -> None:
        # FLOP counting costs one more pass; on CPU only when asked for through --peak-tflops.
        if device.type != "cuda" and not args.peak_tflops:
            return
        tflops = _count_flops(fn) / seconds / 1e12
        row["TFLOP/s"] = tflops
        row["MFU"] = tflops / peak_tflops if peak_tflops else None

    if args.mode in ("infer", "both"):
        method.eval()

        def infer():
            with torch.no_grad(), amp:
                return method.restore(lq, **sampling)

        seconds, peak = _measure(infer, device, args.warmup, args.repeats)
        row = {"mode": "infer", "s/frame": seconds / args.frames, "frames/s": args.frames / seconds, "peak_mem_gib": peak / 2**30}
        flops_row(row, infer, seconds)
        results.append(row)
    if args.mode in ("train", "both"):
        if not method.automatic_optimization:
            raise ConfigError(
                f"{type(method).__name__} uses manual optimization; bench its training through `vsr fit --trainer.max_steps`"
            )
        method.train()
        params = [p for group in method.parameter_groups().values() for p in group]
        optimizer = torch.optim.AdamW(params, lr=1e-5)
        batch = {"lq": lq, "hq": hq}

        def train_step():
            with amp:
                out = method.training_step(batch, 0)
            loss = out["loss"] if isinstance(out, dict) else out
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        seconds, peak = _measure(train_step, device, args.warmup, args.repeats)
        row = {"mode": "train", "s/step": seconds, "clips/s": 1.0 / seconds, "peak_mem_gib": peak / 2**30}
        flops_row(row, train_step, seconds)
        results.append(row)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsr bench", description="Measure a method's inference/training speed and memory.")
    parser.add_argument("--model", required=True, help="installed method, e.g. satb.SATBVR or reference.ReferenceVSR")
    parser.add_argument(
        "--preset", help="architecture size for methods with presets (tiny|real); real = paper size, random weights"
    )
    parser.add_argument("--frames", type=int, default=17, help="frames per clip/window (must satisfy the method's frame rule)")
    parser.add_argument("--height", type=int, default=256, help="output (HQ) height")
    parser.add_argument("--width", type=int, default=256, help="output (HQ) width")
    parser.add_argument("--steps", type=int, help="restore(num_inference_steps=N) (method default if omitted)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16 runs under autocast")
    parser.add_argument("--mode", choices=("infer", "train", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, help="device peak TFLOP/s for MFU when the device is not in the built-in table (also enables TFLOP/s on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def print_results(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    title = f"{args.model} preset={args.preset or 'default'} {args.frames}x{args.height}x{args.width} on {args.device} ({args.precision}), median of {args.repeats}"
    table = Table(title=title)
    for column in ("mode", "metric", "value"):
        table.add_column(column)
    for row in results:
        for key, value in row.items():
            if key == "mode":
                continue
            text = (
                "n/a (unknown device peak; pass --peak-tflops)"
                if value is None
                else (f"{value:.1%}" if key == "MFU" else f"{value:.4g}")
            )
            table.add_row(row["mode"], key, text)
    Console(soft_wrap=True).print(table)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        raise ConfigError("--repeats must be >= 1 and --warmup >= 0")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer attached while benchmarking
        results = run_bench(args)
    print_results(args, results)
    return 0
