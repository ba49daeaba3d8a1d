"""``benchmarks/pssr_fdu_ceiling.py``: oracle-draft frequency updates, checked by value on a known pattern."""

from __future__ import annotations

import torch


def checkerboard(size: int = 32, amplitude: float = 0.2) -> torch.Tensor:
    """A grey ``[1, 3, 2, size, size]`` video whose luminance is a one-pixel checkerboard (all high band)."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    pattern = ((x + y) % 2 * 2 - 1).float() * amplitude
    return pattern.expand(1, 3, 2, size, size).clone()


def test_an_oracle_draft_equal_to_the_base_keeps_it_or_damps_it_by_alpha_per_step(benchmark_script):
    module = benchmark_script("pssr_fdu_ceiling")
    truth = checkerboard()
    inner = (Ellipsis, slice(2, -2), slice(2, -2))  # the update keeps a 2-px border of the current frame
    # alpha on the draft's share: w = 1/2 where both high bands are equal, so Y_H stays Y_H exactly
    kept = module.oracle_updates(truth, truth, alpha=0.6, steps=4, alpha_scales="draft")
    assert torch.allclose(kept[inner], truth[inner], atol=1e-5)
    # Eq. 14 as printed multiplies the whole blend by alpha at each of the T - 1 steps
    damped = module.oracle_updates(truth, truth, alpha=0.6, steps=2, alpha_scales="blend")
    gain = (damped[inner] * truth[inner]).sum() / truth[inner].square().sum()
    assert 0.58 < float(gain) < 0.63  # 0.6 on the high band, plus the checkerboard's tiny low-pass share
    twice = module.oracle_updates(truth, truth, alpha=0.6, steps=3, alpha_scales="blend")
    gain2 = (twice[inner] * truth[inner]).sum() / truth[inner].square().sum()
    # step 2 starts from 0.6 H against the oracle's H: w = 1 / 1.6, so 0.6 (w + (1 - w) 0.6) = 0.51 (not 0.6²)
    assert 0.49 < float(gain2) < 0.53


def test_the_script_prints_one_row_per_base_alpha_and_reading(capsys, benchmark_script):
    module = benchmark_script("pssr_fdu_ceiling")
    assert module.main(["--mix", "0", "--alphas", "1", "--val-crop-size", "64", "--val-clips", "1"]) == 0
    rows = dict(
        line.strip("|").rsplit("|", 1) for line in capsys.readouterr().out.splitlines()[2:] if line.startswith("|")
    )
    values = {name.strip(): float(v) for name, v in rows.items()}
    assert set(values) == {
        "ground truth",
        "base m=0 (T=1)",
        "base m=0, T=4, α 1 (blend)",
        "base m=0, T=4, α 1 (draft)",
    }
    # at alpha = 1 both readings are the same update; an oracle draft sharpens bicubic towards the truth
    assert values["base m=0, T=4, α 1 (blend)"] == values["base m=0, T=4, α 1 (draft)"]
    assert values["base m=0 (T=1)"] < values["base m=0, T=4, α 1 (blend)"] < values["ground truth"]
