"""SATB-VR host memory of building the model from a ``pretrained=`` CogVideoX folder, measured and accounted.

Two numbers per configuration:

* **measured**: peak resident memory (RSS, sampled every 2 ms) of ``SATBVR(preset="real",
  pretrained=FOLDER, torch_dtype=...)`` above the process's RSS before the call, in a fresh
  process. The folder holds a CogVideoX transformer with random weights in the release's bf16,
  scaled down (``--layers``, ``--heads``; full width is 48 heads x 64) so it fits a small machine,
  plus a tiny VAE (the real VAE's 0.2 B and the T5 are added by accounting). Reported per base
  parameter, which is what scales to full size.
* **accounted**: the bytes the built model holds (``numel x element size`` of every parameter and
  buffer, by module), for the scaled model and for the full-size preset built on the meta device.

The full-size host memory per process is the full-size accounting plus the measured transient
(peak minus resident) per base parameter times 5.57 B.

    python benchmarks/satb_host_memory.py                       # bf16, 6 blocks of width 1536
    python benchmarks/satb_host_memory.py --dtype float32
    python benchmarks/satb_host_memory.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3


def write_folder(root: Path, layers: int, heads: int, dtype: str) -> int:
    """A CogVideoX1.5-5B-shaped diffusers folder (transformer scaled to ``layers`` x ``heads``); returns its base size."""
    import torch
    from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    from satb.presets import COGVIDEOX15_5B_TRANSFORMER
    from vsr_core.diffusion import PRESETS
    from vsr_core.latent import CogVideoXCodec

    torch.manual_seed(0)
    # A narrow VAE with the real one's 16 latent channels (the real VAE, 0.2 B, is added by accounting).
    tiny = CogVideoXCodec.presets["tiny"]
    vae = CogVideoXCodec(
        config={**tiny, "latent_channels": 16, "block_out_channels": [16, 16, 16, 16], "norm_num_groups": 4}
    ).vae
    vae.save_pretrained(root / "vae")
    channels = vae.config.latent_channels
    config = {
        **COGVIDEOX15_5B_TRANSFORMER,
        "num_layers": layers,
        "num_attention_heads": heads,
        "in_channels": channels,
        "out_channels": channels,
    }
    with torch.device("meta"):
        shapes = CogVideoXTransformer3DModel(**config)
    transformer = CogVideoXTransformer3DModel(**config).to(getattr(torch, dtype))
    transformer.save_pretrained(root / "transformer")
    del transformer
    scheduler = {k: v for k, v in PRESETS["cogvideox"].items() if k != "_class_name"}
    CogVideoXDDIMScheduler.from_config(scheduler).save_pretrained(root / "scheduler")
    return sum(p.numel() for p in shapes.parameters())


def accounting(method: Any) -> dict[str, float]:
    """GiB held by each top-level module (parameters and buffers, any device but meta counted by size)."""
    report: dict[str, float] = {}
    seen: set[int] = set()
    for name, child in method.named_children():
        total = 0
        for tensor in [*child.parameters(), *child.buffers()]:
            key = tensor.untyped_storage().data_ptr() if tensor.device.type != "meta" else id(tensor)
            if key in seen and tensor.device.type != "meta":
                continue  # shared storage counts once
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
        report[name] = total / GIB
    report["total"] = sum(report.values())
    return report


def measure(folder: str, dtype: str) -> dict[str, Any]:
    """Runs in the child process: peak RSS of building SATBVR from ``folder``."""
    import psutil
    import torch

    sys.path.insert(0, str(ROOT / "plugins"))
    from satb import SATBVR

    torch.set_num_threads(1)
    process = psutil.Process()
    before = process.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.002):
            peak[0] = max(peak[0], process.memory_info().rss)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    method = SATBVR(preset="real", pretrained=folder, torch_dtype=dtype)
    stop.set()
    thread.join()
    after = process.memory_info().rss
    return {
        "peak_gib": (max(peak[0], after) - before) / GIB,
        "resident_gib": (after - before) / GIB,
        "accounted_gib": accounting(method),
    }


def full_size_accounting(dtype: str) -> dict[str, float]:
    """The full-size preset built on the meta device, with frozen weights in ``dtype`` (no memory used)."""
    import torch

    sys.path.insert(0, str(ROOT / "plugins"))
    from satb import SATBVR

    with torch.device("meta"):
        method = SATBVR(preset="real", torch_dtype=dtype)
    return accounting(method)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=6, help="blocks of the scaled base (the ControlNet copies 6)")
    parser.add_argument("--heads", type=int, default=24, help="attention heads of 64 dims (48 at full size)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return 0

    sys.path.insert(0, str(ROOT / "plugins"))
    with tempfile.TemporaryDirectory() as tmp:
        base = write_folder(Path(tmp), args.layers, args.heads, "bfloat16")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]),
        }
        child = subprocess.run(
            [sys.executable, __file__, "--child", tmp, args.dtype],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            return 1
        scaled = json.loads(child.stdout.strip().splitlines()[-1])
    full = full_size_accounting(args.dtype)
    full_base = 5_570_676_352
    transient = (scaled["peak_gib"] - scaled["accounted_gib"]["total"]) / base
    result = {
        "dtype": args.dtype,
        "scaled_base_parameters": base,
        "scaled": scaled,
        "peak_bytes_per_base_parameter": scaled["peak_gib"] * GIB / base,
        "full_size_accounted_gib": full,
        "full_size_estimated_peak_gib": full["total"] + transient * full_base,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
