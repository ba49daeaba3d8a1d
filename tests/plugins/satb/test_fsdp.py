"""SATB-VR under FSDP2 (ModelParallelStrategy) on two CPU processes: DDC's detached pass included.

Marked slow (spawns two gloo processes). The file doubles as the worker script: Lightning starts
rank 1 by running the launching script again, which must not be pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]


def run_worker(out: Path) -> None:
    """Train the tiny preset 3 steps with FSDP2 over 2 ranks; each rank saves what the test checks."""
    sys.path.insert(0, str(ROOT / "plugins"))
    import lightning as L
    from lightning.pytorch.strategies import ModelParallelStrategy

    from satb import SATBVR
    from vsr_core.testing.synthetic import SyntheticDataModule

    torch.manual_seed(0)
    method = SATBVR(**SATBVR.tiny_init_args, gradient_checkpointing=True)
    before = {n: p.detach().clone() for n, p in method.named_parameters() if p.requires_grad}
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(method, datamodule=SyntheticDataModule(num_clips=6, frames=3, size=32, scale=4, batch_size=1))
    changed = sorted(
        {
            n.split(".")[0]
            for n, p in method.named_parameters()
            if n in before and not torch.equal(p.full_tensor() if hasattr(p, "full_tensor") else p, before[n])
        }
    )
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    torch.save({"changed": changed, "metrics": metrics}, out / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_fsdp2_two_cpu_ranks(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [sys.executable, __file__, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"rank{rank}.pt")
        # Zero-initialized heads and connectors: the ControlNet receives gradients from step 3 on.
        assert saved["changed"] == ["controlnet", "denoiser", "predictor"], saved
        assert all(torch.isfinite(torch.tensor(v)) for k, v in saved["metrics"].items() if k.startswith("train/"))
        assert {"train/diff", "train/ddc", "train/ddc_over_diff"} <= set(saved["metrics"])


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]))
