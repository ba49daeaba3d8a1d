"""The reference plugin starts exactly at bicubic upsampling and fine-tunes from an export.

Its conformance-kit run is in tests/plugins/test_every_method.py, with every other installed method.
"""

from __future__ import annotations

import torch

from reference import ReferenceVSR
from vsr_core.testing import SyntheticClips
from vsr_core.video_ops import upsample_frames


def test_untrained_model_returns_bicubic_upsampling():
    method = ReferenceVSR(scale=2, channels=8, num_blocks=1).eval()
    lq = SyntheticClips(num_clips=1, frames=3, size=16, scale=2)[0]["lq"][None]
    with torch.no_grad():
        restored = method.restore(lq)
    torch.testing.assert_close(restored, upsample_frames(lq, 2))


def test_fit_starts_from_a_vsr_export_folder(tmp_path, capsys):
    """`vsr fit --model ReferenceVSR --model.pretrained EXPORT`: training starts at the exported weights."""
    from vsr_core.checkpoint import load_method
    from vsr_core.cli import main
    from vsr_core.export import export_method

    torch.manual_seed(0)
    source = ReferenceVSR(scale=4, channels=4, num_blocks=1)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_(std=0.01)
    export_method(source, tmp_path / "export")
    args = [
        "fit",
        "--model",
        "ReferenceVSR",
        "--model.init_args.channels",
        "4",
        "--model.init_args.num_blocks",
        "1",
        "--model.init_args.learning_rate",
        "0",  # one step that changes nothing: the start is visible
        "--trainer.max_steps",
        "1",
        "--trainer.limit_val_batches",
        "0",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "runs"),
        "--trainer.enable_progress_bar",
        "false",
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.clip_frames",
        "3",
        "--data.init_args.crop_size",
        "32",
        "--samples.save_files",
        "false",
    ]
    assert main([*args, "--model.init_args.pretrained", str(tmp_path / "export")]) == 0
    tuned = load_method(next((tmp_path / "runs").rglob("last.ckpt")))
    for key, value in source.state_dict().items():
        assert torch.equal(tuned.state_dict()[key], value), key
    capsys.readouterr()
    assert main([*args, "--model.init_args.pretrained", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "nowhere" in err[-1] and "does not exist" in err[-1]
