"""``vsr predict`` over whole videos: a file-list data module and a prediction writer using the engine.

:class:`VideoFilesDataModule` yields one ``{"path": [str], "key": [str]}`` batch per input video
(Lightning's distributed sampler spreads the files over the ranks, so each GPU restores its own
share). :class:`RestorePredictionWriter` runs the long-video engine on each file the rank receives
and writes ``<output_dir>/<key>.mp4`` atomically. The method's ``predict_step`` must pass such
batches through (return the batch when it has ``"path"`` and no ``"lq"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from vsr_core.inference.engine import EngineOptions, RestoreEngine
from vsr_core.inference.files import collect_inputs, restore_file

__all__ = ["RestorePredictionWriter", "VideoFilesDataModule"]


class _Files(Dataset):
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, str]:
        path = self.paths[i]
        return {"path": str(path), "key": path.stem if path.is_file() else path.name}


def _collate(items: list[dict[str, str]]) -> dict[str, list[str]]:
    return {"path": [i["path"] for i in items], "key": [i["key"] for i in items]}


class VideoFilesDataModule(pl.LightningDataModule):
    """Prediction inputs: video files, frame folders, or directories of them (one batch per video).

    Args:
        inputs: paths as for ``vsr restore``.
    """

    def __init__(self, inputs: list[str]) -> None:
        super().__init__()
        self.inputs = list(inputs)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(_Files(collect_inputs(self.inputs)), batch_size=1, collate_fn=_collate)


class RestorePredictionWriter(BasePredictionWriter):
    """Restore each predicted video file with :class:`RestoreEngine` into ``output_dir/<key>.mp4``.

    Args:
        output_dir: folder of the restored videos.
        window, overlap, tile, tile_overlap, color_fix, seed, prompt, sampling: as :class:`EngineOptions`
            (``tile=None``: the method's native tiling).
        crf: H.264 quality of the outputs.
    """

    def __init__(
        self,
        output_dir: str = "restored",
        window: int | None = None,
        overlap: int | None = None,
        tile: int | None = None,
        tile_overlap: int | None = None,
        color_fix: str = "none",
        seed: int | None = 0,
        prompt: str | None = None,
        sampling: dict[str, Any] | None = None,
        crf: int = 18,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.options = {
            "window": window,
            "overlap": overlap,
            "tile": tile,
            "tile_overlap": tile_overlap,
            "color_fix": color_fix,
            "seed": seed,
            "prompt": prompt,
        }
        self.sampling = dict(sampling or {})
        self.crf = crf
        self.written: list[Path] = []

    def write_on_batch_end(
        self,
        trainer,
        pl_module,
        prediction,
        batch_indices,
        batch,
        batch_idx,
        dataloader_idx,
    ) -> None:
        if not isinstance(batch, dict) or "path" not in batch:
            return
        sampling = {**(getattr(pl_module, "val_sampling", {}) or {}), **self.sampling}
        engine = RestoreEngine(
            pl_module,
            EngineOptions(device=pl_module.device, sampling=sampling, **self.options),
        )
        for path, key in zip(batch["path"], batch["key"]):
            target = self.output_dir / f"{key}.mp4"
            restore_file(engine, path, target, crf=self.crf)
            self.written.append(target)
