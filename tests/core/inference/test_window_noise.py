"""Per-file generators and the block-seeded timeline noise that overlapping windows and tiles share."""

import torch

from vsr_core.inference import TimelineNoise, make_generator


def test_make_generator_on_the_device_or_the_cpu():
    g = make_generator(5, "cpu")
    assert g.device.type == "cpu" and torch.equal(
        torch.randn(3, generator=g), torch.randn(3, generator=torch.Generator().manual_seed(5))
    )
    # a device without generators (meta) falls back to a CPU generator
    assert make_generator(5, "meta").device.type == "cpu"


def test_overlapping_slices_agree_in_any_order_and_across_block_borders():
    noise = TimelineNoise(seed=3, batch=1, channels=2, block=4)
    whole = noise.slice(0, range(0, 6), range(0, 10), range(0, 9))
    part = noise.slice(0, range(2, 5), range(3, 9), range(5, 9))  # crosses block borders at 4 and 8
    assert part.shape == (1, 2, 3, 6, 4)
    assert torch.equal(part, whole[:, :, 2:5, 3:9, 5:9])
    again = TimelineNoise(seed=3, batch=1, channels=2, block=4).slice(0, range(0, 6), range(0, 10), range(0, 9))
    assert torch.equal(again, whole)
    # other levels, seeds and frames are other noise
    assert not torch.equal(noise.slice(1, range(0, 6), range(0, 10), range(0, 9)), whole)
    assert not torch.equal(
        TimelineNoise(seed=4, batch=1, channels=2, block=4).slice(0, range(0, 6), range(10), range(9)), whole
    )
    assert not torch.equal(whole[:, :, 0], whole[:, :, 1])


def test_noise_is_standard_normal():
    x = TimelineNoise(seed=0, batch=2, channels=4).slice(0, range(3), range(64), range(64))
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02
