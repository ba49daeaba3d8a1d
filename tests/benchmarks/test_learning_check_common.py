"""The learning checks' shared pieces, by value: the flicker metric and the wall-time cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch


def test_temporal_flicker_is_the_mean_gap_between_frame_changes_in_8_bit_levels(benchmark_script):
    common = benchmark_script("learning_check_common")
    reference = torch.zeros(2, 3, 3, 2, 2)
    video = torch.zeros(2, 3, 3, 2, 2)
    # Clip 0: the output jumps by 0.2 at frame 1 and stays there; the truth does not move. Frame changes of the
    # output: +0.2, 0 -> gaps 0.2 and 0 -> mean 0.1 -> 12.75 levels.
    video[0, :, 1:] = 0.2
    # Clip 1: output and truth change alike (a brightness ramp): no flicker even though they differ by a constant.
    ramp = torch.tensor([0.0, 0.1, 0.3]).view(1, 3, 1, 1)
    video[1], reference[1] = ramp + 0.5, ramp
    flicker = common.temporal_flicker(video, reference)
    assert flicker.tolist() == pytest.approx([0.1 * 127.5, 0.0], abs=1e-5)
    # Swapping output and truth gives the same magnitude; a sign error in the difference would not.
    assert common.temporal_flicker(reference, video).tolist() == pytest.approx(flicker.tolist(), abs=1e-5)


def test_cosine_over_seconds_anneals_by_wall_time_not_steps(benchmark_script):
    common = benchmark_script("learning_check_common")
    now = [100.0]
    factory = common.cosine_over_seconds(40.0, clock=lambda: now[0])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = factory(optimizer)
    rates = []
    for elapsed in (0.0, 10.0, 20.0, 40.0, 55.0):
        now[0] = 100.0 + elapsed
        optimizer.step()  # (no gradient: a no-op; the order schedulers expect)
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    expected = [2.0 * 0.5 * (1 + math.cos(math.pi * min(1.0, e / 40.0))) for e in (0.0, 10.0, 20.0, 40.0, 55.0)]
    assert rates == pytest.approx(expected)
    assert rates[2] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.0)


def test_wall_time_trainer_is_bounded_by_time_and_quiet(benchmark_script):
    trainer = benchmark_script("learning_check_common").wall_time_trainer(0.4, max_steps=7)
    assert trainer.max_steps == 7
    assert trainer.logger is None and trainer.checkpoint_callback is None
    assert trainer.limit_val_batches == 0
