"""`vsr bench`: table of medians on a tiny installed method (``fake_tiny.TinyVSR``); meta-device build of paper-size presets."""

import types

import pytest
import torch
from torch import nn

from vsr_core.cli import main as vsr_main
from vsr_core.commands.bench import (
    _check_frames,
    _params_on_meta,
    build_method,
    build_parser,
    device_peak_tflops,
    materialize,
    run_bench,
)
from vsr_core.errors import ConfigError


def test_bench_on_cpu_prints_medians(capsys, tiny_plugin):
    rc = vsr_main(
        [
            "bench",
            "--model",
            "fake_tiny.TinyVSR",
            "--frames",
            "5",
            "--height",
            "32",
            "--width",
            "32",
            "--repeats",
            "1",
            "--warmup",
            "0",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    for key in ("s/frame", "frames/s", "s/step", "clips/s", "peak_mem_gib"):
        assert key in out


def test_flop_rate_and_mfu_against_a_given_peak_on_cpu(tiny_plugin):
    args = build_parser().parse_args(
        ["--model", "fake_tiny.TinyVSR", "--frames", "5", "--height", "32", "--width", "32"]
        + ["--repeats", "1", "--warmup", "0", "--peak-tflops", "0.5"]
    )
    rows = {row["mode"]: row for row in run_bench(args)}
    for mode in ("infer", "train"):
        assert rows[mode]["TFLOP/s"] > 0
        assert rows[mode]["MFU"] == pytest.approx(rows[mode]["TFLOP/s"] / 0.5)
    seconds = rows["infer"]["s/frame"] * 5
    # a training step (forward + backward) does at least twice the work of an inference pass
    assert rows["train"]["TFLOP/s"] * rows["train"]["s/step"] > 2 * rows["infer"]["TFLOP/s"] * seconds


def test_preset_on_method_without_presets_is_one_line_error(capsys, tiny_plugin):
    assert vsr_main(["bench", "--model", "fake_tiny.TinyVSR", "--preset", "real", "--mode", "infer"]) != 0
    err = capsys.readouterr().err.strip()
    assert "has no presets" in err and len(err.splitlines()) == 1


def test_frame_rule_is_checked():
    causal = types.SimpleNamespace(frames_rule=(4, 1))
    _check_frames(causal, 17)
    with pytest.raises(ConfigError, match=r"4k\+1 \(e.g. 5 or 9\), got 6"):
        _check_frames(causal, 6)


def test_meta_build_then_materialize_reinitialises():
    with _params_on_meta():
        model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16))
        model.register_buffer("table", torch.arange(4.0))
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert model.table.tolist() == [0, 1, 2, 3]  # buffers keep their computed values
    materialize(model, "cpu")
    assert model[0].weight.abs().sum() > 0 and torch.isfinite(model[0].weight).all()
    assert model[1].weight.tolist() == [1.0] * 16
    assert model(torch.ones(2, 8)).shape == (2, 16)


def test_peak_table():
    assert device_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert device_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert device_peak_tflops("Some GPU") is None


@pytest.mark.slow
def test_satb_real_preset_builds_on_meta_without_memory():
    method = build_method("satb.SATBVR", "real", "cpu", materialize_params=False)
    params = list(method.parameters())
    assert {p.device.type for p in params} == {"meta"}
    assert sum(p.numel() for p in params) > 5e9  # CogVideoX1.5-5B-sized denoiser and more


def test_train_mode_runs_a_three_optimizer_method_through_the_trainer(capsys):
    """`vsr bench --mode train` times a real training step of any method, several optimizers included."""
    rc = vsr_main(
        [
            "bench",
            "--model",
            "vsr_core.testing.ThreeNetworkMethod",
            "--mode",
            "train",
            "--frames",
            "3",
            "--height",
            "16",
            "--width",
            "16",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--peak-tflops",
            "1",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    for metric in ("s/step", "clips/s", "peak_mem_gib", "TFLOP/s", "MFU"):
        assert metric in out
    assert "Trainer.fit" not in out


def test_flop_count_by_value_and_inside_autograd_grad_of_checkpointed_code():
    from torch.utils.checkpoint import checkpoint

    from vsr_core.commands.bench import FlopCount

    a, b = torch.randn(3, 5), torch.randn(5, 7)
    with FlopCount() as count:
        a @ b
    assert count.total == 2 * 3 * 5 * 7  # one multiply and one add per term

    x = torch.randn(4, 6, requires_grad=True)
    w = torch.randn(6, 6)
    with FlopCount() as count:  # FlopCounterMode's module hooks fail here (SATB-VR's DDC gradient)
        y = checkpoint(lambda t: torch.tanh(t @ w), x, use_reentrant=False)  # tanh's backward needs its output
        (grad,) = torch.autograd.grad(y.sum(), x)
    assert grad.shape == x.shape
    # forward 2*4*6*6, recomputed forward 2*4*6*6, backward for x 2*4*6*6 (w needs no gradient)
    assert count.total == 3 * 2 * 4 * 6 * 6
