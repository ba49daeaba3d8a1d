"""``vsr bench``: inference and training speed and peak memory of an installed method.

Inference: ``restore`` on one ``[1,3,F,H/s,W/s]`` window -> s/frame, frames/s, peak memory.
Training: one training step through the Lightning Trainer (``training_step`` with the method's own
optimizers, one or several, clipping and precision, as ``vsr fit`` runs it) on a ``[1,3,F,H,W]``
clip -> s/step, clips/s, peak memory. Warm-up runs are discarded; medians of the repeats are printed.
Peak memory is the process RSS (sampled every 2 ms) on CPU and ``torch.cuda.max_memory_allocated``
on CUDA. ``--preset real`` builds the paper-size architecture with random weights: parameters
are created on the meta device, materialised empty on the target device and re-initialised, so
no checkpoint or download is needed. On CUDA, FLOPs of one run are counted with
``torch.utils.flop_counter``'s per-operator formulas (:class:`FlopCount`) to report achieved
TFLOP/s and MFU against the device's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vsr_core.benchmark import BF16_PEAK_TFLOPS, device_peak_tflops  # noqa: F401 (re-exported for callers)
from vsr_core.errors import ConfigError
from vsr_core.frames import frames_at_least, frames_at_most
from vsr_core.method import VSRMethod
from vsr_core.plugins import method_class


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
                setattr(
                    module,
                    name,
                    nn.Parameter(torch.empty_like(param, device=device), requires_grad=param.requires_grad),
                )
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


class FlopCount:
    """Counts the FLOPs of everything run inside it with ``torch.utils.flop_counter``'s per-op formulas.

    A plain dispatch mode: unlike ``FlopCounterMode`` it tracks no module hierarchy, whose backward
    hooks fail inside ``torch.autograd.grad`` of checkpointed regions (SATB-VR's DDC gradient).
    """

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                formula = flop_registry.get(getattr(func, "_overloadpacket", None))
                if formula is not None:
                    counter.total += int(formula(*args, **kwargs, out_val=out))
                return out

        self.total = 0
        self._mode = _Mode()

    def __enter__(self) -> FlopCount:
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)


def _count_flops(fn: Callable[[], Any]) -> int:
    with FlopCount() as counter:
        fn()
    return counter.total


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
    peak_tflops = args.peak_tflops or (
        device_peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    )

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
        row = {
            "mode": "infer",
            "s/frame": seconds / args.frames,
            "frames/s": args.frames / seconds,
            "peak_mem_gib": peak / 2**30,
        }
        flops_row(row, infer, seconds)
        results.append(row)
    if args.mode in ("train", "both"):
        results.append(_train_row(method, hq, lq, device, args, peak_tflops))
    return results


class _FixedBatch(torch.utils.data.Dataset):
    """The same training batch every step (``hq``/``lq`` on the CPU; the Trainer moves it)."""

    def __init__(self, hq: torch.Tensor, lq: torch.Tensor, length: int) -> None:
        self.hq, self.lq, self.length = hq[0].cpu(), lq[0].cpu(), length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"hq": self.hq, "lq": self.lq, "prompt": "", "key": f"bench_{index}"}


class _StepTimer:
    """A Lightning callback: seconds of each training step (batch start to end), peak memory, FLOPs."""

    def __init__(self, device: torch.device, warmup: int, count_flops: bool) -> None:
        from lightning.pytorch import Callback

        timer = self

        class Hook(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                timer._start(batch_idx)

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                timer._end(batch_idx)

        self.callback = Hook()
        self.device, self.warmup, self.count_flops = device, warmup, count_flops
        self.times: list[float] = []
        self.peak = 0
        self.flops = 0
        self._rss: _PeakRSS | None = None
        self._counter: Any = None
        self._t0 = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _start(self, index: int) -> None:
        self._sync()
        if index == self.warmup:  # the first measured step
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            else:
                self._rss = _PeakRSS().__enter__()
        if self.count_flops and index == self.warmup - 1:  # the last warm-up step is counted
            self._counter = FlopCount().__enter__()
        self._t0 = time.perf_counter()

    def _end(self, index: int) -> None:
        self._sync()
        elapsed = time.perf_counter() - self._t0
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops, self._counter = self._counter.total, None
        if index >= self.warmup:
            self.times.append(elapsed)

    def finish(self) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self._rss is not None:
            self._rss.__exit__(None, None, None)
            self.peak = self._rss.peak


def _train_row(
    method: VSRMethod,
    hq: torch.Tensor,
    lq: torch.Tensor,
    device: torch.device,
    args: argparse.Namespace,
    peak_tflops: float | None,
) -> dict[str, Any]:
    """One training step of ``method`` measured through the Trainer, exactly as ``vsr fit`` runs it.

    Any method works, with one or several optimizers (the method's own ``configure_optimizers``,
    ``optimize`` calls, clipping and precision): the Trainer runs ``warmup + repeats`` steps on one
    fixed batch; the medians of the measured steps, the peak memory over them and the FLOPs of one
    step (counted on the last warm-up step, so the count never slows a measured one) are reported.
    """
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    count_flops = device.type == "cuda" or bool(args.peak_tflops)
    warmup = max(args.warmup, 1 if count_flops else 0)
    steps = warmup + args.repeats
    timer = _StepTimer(device, warmup, count_flops)
    method.train()
    loader = DataLoader(_FixedBatch(hq, lq, steps), batch_size=1, num_workers=0)
    # Lightning's and the method's start-of-fit messages are noise in a benchmark table.
    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "vsr_core")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in (".*LeafSpec.*", ".*does not have many workers.*", ".*no `val_dataloader`.*"):
                warnings.filterwarnings("ignore", message=message)
            trainer = Trainer(
                accelerator="gpu" if device.type == "cuda" else "cpu",
                devices=[device.index or 0] if device.type == "cuda" else 1,
                precision="bf16-mixed" if args.precision == "bf16" else "32-true",
                max_steps=steps,
                limit_val_batches=0,
                num_sanity_val_steps=0,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                callbacks=[timer.callback],
            )
            trainer.fit(method, train_dataloaders=loader)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    timer.finish()
    seconds = statistics.median(timer.times)
    row = {"mode": "train", "s/step": seconds, "clips/s": 1.0 / seconds, "peak_mem_gib": timer.peak / 2**30}
    if count_flops:
        tflops = timer.flops / seconds / 1e12
        row["TFLOP/s"] = tflops
        row["MFU"] = tflops / peak_tflops if peak_tflops else None
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsr bench", description="Measure a method's inference/training speed and memory."
    )
    parser.add_argument("--model", required=True, help="installed method, e.g. satb.SATBVR or reference.ReferenceVSR")
    parser.add_argument(
        "--preset", help="architecture size for methods with presets (tiny|real); real = paper size, random weights"
    )
    parser.add_argument(
        "--frames", type=int, default=17, help="frames per clip/window (must satisfy the method's frame rule)"
    )
    parser.add_argument("--height", type=int, default=256, help="output (HQ) height")
    parser.add_argument("--width", type=int, default=256, help="output (HQ) width")
    parser.add_argument("--steps", type=int, help="restore(num_inference_steps=N) (method default if omitted)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16 runs under autocast")
    parser.add_argument("--mode", choices=("infer", "train", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="device peak TFLOP/s for MFU when the device is not in the built-in table (also enables TFLOP/s on CPU)",
    )
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
