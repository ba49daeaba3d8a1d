"""The VGG-16-style latent discriminator of Eq. 9."""

from __future__ import annotations

import torch
from torch import nn

from pssr.discriminator import LatentVGGDiscriminator
from vsr_core.losses import LatentDiscriminator, d_loss


def test_default_is_vgg16_features_with_a_16_channel_first_convolution():
    d = LatentVGGDiscriminator(16)
    convs = [m for m in d.feature_extractor if isinstance(m, nn.Conv2d)]
    pools = [m for m in d.feature_extractor if isinstance(m, nn.MaxPool2d)]
    assert isinstance(d, LatentDiscriminator)
    assert len(convs) == 13 and len(pools) == 5 and convs[0].in_channels == 16
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    widths = [16, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    conv_params = sum(9 * a * b + b for a, b in zip(widths[:-1], widths[1:]))
    head_params = 512 * 7 * 7 * 1024 + 1024 + 1024 + 1  # the release's Linear(25088, 1024), Linear(1024, 1)
    assert sum(p.numel() for p in d.parameters()) == conv_params + head_params


def test_one_logit_per_latent_frame_and_frames_are_scored_separately():
    torch.manual_seed(0)
    d = LatentVGGDiscriminator(4, channels=(8, 16), convs=(1, 1), pooled_size=2, hidden_channels=8)
    z = torch.randn(2, 4, 3, 8, 8)
    (logits,) = d(z)
    assert logits.shape == (2, 1, 3)
    z2 = z.clone()
    z2[:, :, 1] = torch.randn(2, 4, 8, 8)
    (changed,) = d(z2)
    torch.testing.assert_close(changed[..., [0, 2]], logits[..., [0, 2]])  # per frame, no temporal mixing
    assert not torch.allclose(changed[..., 1], logits[..., 1])
    loss = d_loss(d(z), d(z2), "hinge")
    loss.backward()
    assert all(p.grad is not None for p in d.parameters())
