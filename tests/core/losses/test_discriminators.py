"""Temporal PatchGAN and the latent-discriminator base: shapes, spectral norm, receptive field."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from vsr_core.errors import ConfigError
from vsr_core.losses import LatentDiscriminator, TemporalPatchDiscriminator, d_loss


def small(**kwargs) -> TemporalPatchDiscriminator:
    torch.manual_seed(0)
    return TemporalPatchDiscriminator(base_channels=4, max_channels=8, **kwargs)


def test_output_shape_default_layout():
    # H = 64: 32, 16, 8 (stride 2), 7, 6 (stride 1, k = 4, pad 1); T kept (k_t = 3, pad 1, stride 1)
    logits = small()(torch.randn(2, 3, 8, 64, 64))
    assert logits.shape == (2, 1, 8, 6, 6)


def test_output_shape_with_temporal_downsampling_and_depth():
    # first two convs halve time: 8 -> 4 -> 2; H = 32 with 2 layers: 16, 8, 7, 6
    logits = small(num_layers=2, temporal_downsample=2)(torch.randn(1, 3, 8, 32, 32))
    assert logits.shape == (1, 1, 2, 6, 6)
    d = TemporalPatchDiscriminator(in_channels=16, base_channels=8, num_layers=4, max_channels=16)
    assert [c.out_channels for c in d.convolutions] == [8, 16, 16, 16, 16, 1]  # doubling, capped at max_channels


def test_receptive_field_is_pix2pix_70_and_matches_the_gradient_support():
    assert TemporalPatchDiscriminator().receptive_field == (11, 70, 70)  # pix2pix's 70x70 PatchGAN
    d = small(norm="none")  # (group/batch norm would couple every position through its statistics)
    video = torch.randn(1, 3, 13, 96, 96, requires_grad=True)
    logits = d(video)  # [1, 1, 13, 10, 10]
    logits[0, 0, 6, 5, 5].backward()
    support = video.grad.abs().sum(dim=(0, 1)).nonzero()
    extent = tuple((support.max(0).values - support.min(0).values + 1).tolist())
    assert extent == d.receptive_field == (11, 70, 70)
    # where it starts: output index o sees inputs from o * jump - padding (jumps 1 and 8, paddings 5 and 23)
    assert tuple(support.min(0).values.tolist()) == (6 - 5, 5 * 8 - 23, 5 * 8 - 23)


def test_spectral_norm_when_asked():
    plain = small()
    assert not any(parametrize.is_parametrized(c, "weight") for c in plain.convolutions)
    d = small(spectral_norm=True, norm="none")
    assert all(parametrize.is_parametrized(c, "weight") for c in d.convolutions)
    assert any(k.endswith("parametrizations.weight.original") for k in d.state_dict())
    with torch.no_grad():  # whatever the stored weights' scale, the weights used have spectral norm 1
        for conv in d.convolutions:
            conv.parametrizations.weight.original.mul_(10.0)
    d.train()
    video = torch.randn(1, 3, 4, 32, 32)
    for _ in range(50):  # one power iteration per training forward
        d(video)
    d.eval()
    for conv in d.convolutions:
        stored = conv.parametrizations.weight.original.detach().reshape(conv.out_channels, -1)
        used = conv.weight.detach().reshape(conv.out_channels, -1)
        assert torch.linalg.matrix_norm(stored, ord=2).item() > 3
        assert torch.linalg.matrix_norm(used, ord=2).item() == pytest.approx(1.0, abs=2e-2)


def test_norm_choices_and_bad_config():
    assert any(isinstance(m, nn.GroupNorm) for m in small().modules())
    assert any(isinstance(m, nn.BatchNorm3d) for m in small(norm="batch").modules())
    assert not any(isinstance(m, (nn.GroupNorm, nn.BatchNorm3d)) for m in small(norm="none").modules())
    with pytest.raises(ConfigError, match="norm"):
        small(norm="layer")
    with pytest.raises(ConfigError, match="temporal_downsample"):
        small(num_layers=2, temporal_downsample=3)
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        small()(torch.randn(1, 4, 2, 32, 32))


class TinyLatentDiscriminator(LatentDiscriminator):
    """A frozen conv backbone over latents [B, 4, t, h, w]: a 3D feature map and a token sequence."""

    def __init__(self, spectral_norm: bool = False) -> None:
        super().__init__(feature_channels=[8, 6], hidden_channels=16, spectral_norm=spectral_norm)
        self.backbone = nn.Conv3d(4, 8, 3, padding=1).requires_grad_(False)
        self.to_tokens = nn.Linear(8, 6).requires_grad_(False)

    def features(self, latents, timestep=None):
        feat = self.backbone(latents)  # [B, 8, t, h, w]
        tokens = self.to_tokens(feat.flatten(2).transpose(1, 2))  # DiT-like [B, N, 6]
        return [feat, tokens.transpose(1, 2)]  # channel-first [B, 6, N]


def test_latent_discriminator_heads():
    d = TinyLatentDiscriminator()
    z = torch.randn(2, 4, 3, 4, 4)
    logits = d(z)
    assert [tuple(x.shape) for x in logits] == [(2, 1, 3, 4, 4), (2, 1, 48)]
    d_loss(d(z), d(torch.randn_like(z)), "hinge").backward()
    assert all(p.grad is not None for p in d.heads.parameters())
    assert all(p.grad is None for p in d.backbone.parameters())
    sn = TinyLatentDiscriminator(spectral_norm=True)
    assert all(
        parametrize.is_parametrized(h.fc1, "weight") and parametrize.is_parametrized(h.fc2, "weight") for h in sn.heads
    )


def test_latent_discriminator_contract():
    with pytest.raises(TypeError):
        LatentDiscriminator([8])  # abstract: features() must be implemented

    class Wrong(TinyLatentDiscriminator):
        def features(self, latents, timestep=None):
            return super().features(latents)[:1]

    with pytest.raises(ValueError, match="1 maps for 2 heads"):
        Wrong()(torch.randn(1, 4, 1, 2, 2))

    class NoMaps(LatentDiscriminator):
        def features(self, latents):
            return []

    with pytest.raises(ConfigError, match="at least one"):
        NoMaps([])
