"""TE3DVAE: the conformance kit, its losses by value, what trains, and its export feeding DiffVSR."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from diffvsr import TE3DVAE, DiffVSR
from vsr_core.checkpoint import load_method
from vsr_core.errors import ConfigError
from vsr_core.export import export_method
from vsr_core.losses import TinyPerceptual
from vsr_core.testing import MethodConformance, SyntheticDataModule, tiny_trainer


class TestTE3DVAEConformance(MethodConformance):
    method_class = TE3DVAE
    lq_size = 32
    min_frames = 4


def _method(**overrides) -> TE3DVAE:
    torch.manual_seed(0)
    return TE3DVAE(**{**TE3DVAE.tiny_init_args, **overrides})


def test_losses_are_l1_perceptual_and_temporal_patchgan_by_value():
    method = _method(perceptual_weight=0.5, adversarial_weight=0.2)
    method.ensure_training_modules()
    g = torch.Generator().manual_seed(1)
    hq = torch.rand(1, 3, 4, 16, 16, generator=g) * 2 - 1
    restored = (hq + 0.1 * torch.randn(hq.shape, generator=g)).clamp(-1, 1)
    terms = method.decoder_losses(restored, hq)
    frames = lambda v: v.transpose(1, 2).reshape(-1, 3, 16, 16)  # noqa: E731
    perceptual = TinyPerceptual()(frames(restored), frames(hq)).mean()
    fake, real = method.discriminator(restored), method.discriminator(hq)
    assert fake.shape[:2] == (1, 1) and fake.dim() == 5  # one logit per space-time patch
    torch.testing.assert_close(terms["l1"], (restored - hq).abs().mean())
    torch.testing.assert_close(terms["perceptual"], perceptual)
    torch.testing.assert_close(terms["adversarial"], -fake.mean())  # hinge generator loss
    torch.testing.assert_close(terms["total"], terms["l1"] + 0.5 * perceptual - 0.2 * fake.mean())
    expected_d = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    torch.testing.assert_close(method.discriminator_loss(restored, hq), expected_d)


def test_training_moves_the_decoder_and_the_discriminator_not_the_encoder(tmp_path):
    method = _method()
    encoder = {k: v.clone() for k, v in method.codec.vae.encoder.state_dict().items()}
    decoder = {k: v.clone() for k, v in method.codec.vae.decoder.state_dict().items()}
    data = SyntheticDataModule(num_clips=2, frames=4, size=16, scale=1, batch_size=1)
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(method, datamodule=data)
    assert all(torch.equal(v, method.codec.vae.encoder.state_dict()[k]) for k, v in encoder.items())
    assert any(not torch.equal(v, method.codec.vae.decoder.state_dict()[k]) for k, v in decoder.items())
    assert list(method.parameter_groups()) == ["decoder", "discriminator"]


def test_export_feeds_diffvsr_and_reads_back(tmp_path):
    method = _method()
    with torch.no_grad():
        method.codec.vae.decoder.time_conv_out.weight.add_(0.05)
    export_method(method, tmp_path / "te3dvae")
    assert (tmp_path / "te3dvae" / "vae" / "config.json").is_file()
    loaded = load_method(tmp_path / "te3dvae")
    x = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded.restore(x), method.restore(x))
    diffvsr = DiffVSR(preset="tiny", vae="te-3dvae", vae_weights=str(tmp_path / "te3dvae"))
    torch.testing.assert_close(
        diffvsr.codec.vae.decoder.time_conv_out.weight, method.codec.vae.decoder.time_conv_out.weight
    )
    with pytest.raises(ConfigError, match="not a 3dvae"):
        DiffVSR(preset="tiny", vae="3dvae", vae_weights=str(tmp_path / "te3dvae"))


def test_it_reconstructs_at_scale_one_only():
    with pytest.raises(ConfigError, match="scale must be 1"):
        _method(scale=4)
