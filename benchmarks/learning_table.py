"""Did a run learn? Bicubic vs the trained method at 1 and 5 steps on the held-out clips of its run.

Reads a checkpoint written by ``vsr fit`` and the ``config.yaml`` of its run folder, rebuilds the
run's validation data (same clips, crop, degradation and seed as its validation; by default the
built-in held-out sample clips), and prints the table of ``benchmarks/satb_learning_check.py``:
mean PSNR, SSIM and temporal error of bicubic upsampling and of the method's ``restore`` at each
step count, on the same LQ inputs. ``make demo`` prints it after training.

    python benchmarks/learning_table.py --ckpt runs/demo/version_0/checkpoints/last.ckpt [--steps 1 5]

Temporal error is the mean absolute difference between the frame-to-frame changes of the output
and those of the ground truth, in 8-bit levels (lower is better; 0 = the true temporal changes).
With ``--check`` the exit code is 1 unless the method beats bicubic in PSNR at every step count.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["evaluate", "main", "temporal_error", "validation_data"]


def temporal_error(video: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-clip ``mean |Δ_t video − Δ_t reference|`` in 8-bit levels; ``[B,3,T,H,W]`` in ``[-1, 1]`` -> ``[B]``."""
    change = video.diff(dim=2) - reference.diff(dim=2)
    return change.abs().mean(dim=(1, 2, 3, 4)) * 127.5


def validation_data(run_config: dict, scale: int):
    """The run's ``VideoDataModule`` (from its ``config.yaml``), set up for validation in this process."""
    import vsr_core.data as data

    section = dict((run_config.get("data") or {}).get("init_args") or {})
    for key in ("train", "val", "test", "predict"):  # sources: only vsr_core.data's own classes are built
        spec = section.get(key)
        if isinstance(spec, dict):
            name = str(spec.get("class_path", "")).rsplit(".", 1)[-1]
            if name not in data.__all__:
                raise SystemExit(
                    f"error: the run's data.{key} is {spec.get('class_path')!r}, not a vsr_core.data source"
                )
            section[key] = getattr(data, name)(**(spec.get("init_args") or {}))
    section.update(scale=scale, num_workers=0, persistent_workers=False, pin_memory=False)
    datamodule = data.VideoDataModule(**section)
    datamodule.setup("validate")
    return datamodule


@torch.no_grad()
def evaluate(method, datamodule, steps: list[int], seed: int = 0) -> dict[str, dict[str, float]]:
    """``{"bicubic" | "<N> step(s)": {"psnr", "ssim", "temporal"}}``: means over the validation clips."""
    from vsr_core.commands.restore import steps_keyword
    from vsr_core.metrics import psnr, ssim
    from vsr_core.video_ops import upsample_frames

    method.eval()
    keyword = steps_keyword(method)
    takes_generator = "generator" in inspect.signature(method.restore).parameters
    sums: dict[str, dict[str, list[float]]] = {}

    def add(name: str, output: torch.Tensor, hq: torch.Tensor) -> None:
        row = sums.setdefault(name, {"psnr": [], "ssim": [], "temporal": []})
        output = output.clamp(-1, 1)
        row["psnr"] += psnr(output, hq).tolist()
        row["ssim"] += ssim(output, hq).tolist()
        row["temporal"] += temporal_error(output, hq).tolist()

    for index, batch in enumerate(datamodule.val_dataloader()):
        batch = datamodule.on_after_batch_transfer(batch, 0)
        hq, lq = batch["hq"].to(method.device), batch["lq"].to(method.device)
        add("bicubic", upsample_frames(lq, method.scale), hq)
        for n in steps:
            options = {keyword: n}
            if takes_generator:
                options["generator"] = torch.Generator().manual_seed(seed + index)
            add(f"{n} step{'s' if n > 1 else ''}", method.restore(lq, prompt=batch.get("prompt"), **options), hq)
    return {name: {k: sum(v) / len(v) for k, v in row.items()} for name, row in sums.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, type=Path, help="a checkpoint in <run>/checkpoints/")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="exit 1 unless every step count beats bicubic in PSNR")
    args = parser.parse_args()

    from vsr_core.checkpoint import load_method

    config_path = args.ckpt.resolve().parents[1] / "config.yaml"
    run_config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    method = load_method(args.ckpt, map_location="cpu")
    checkpoint = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    datamodule = validation_data(run_config, method.scale)
    results = evaluate(method, datamodule, args.steps, args.seed)
    clips = len(datamodule.val_dataset)
    name = type(method).__name__
    print(
        f"\n{name} after {checkpoint.get('global_step', '?')} steps, {clips} held-out clips "
        f"({datamodule.degradation} x{method.scale}, {datamodule.clip_frames} frames):"
    )
    print(f"| {'':<10} | {'PSNR (dB) ↑':>11} | {'SSIM ↑':>7} | {'temporal error ↓':>16} |")
    print(f"|{'-' * 12}|{'-' * 13}|{'-' * 9}|{'-' * 18}|")
    for row_name, row in results.items():
        print(f"| {row_name:<10} | {row['psnr']:>11.2f} | {row['ssim']:>7.4f} | {row['temporal']:>16.2f} |")
    beats = all(row["psnr"] > results["bicubic"]["psnr"] for key, row in results.items() if key != "bicubic")
    print(f"PSNR above bicubic at every step count: {'yes' if beats else 'no'}")
    return 0 if beats or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
