"""SATB-VR backbones: zero-initialized ControlNet branch, connectors, LQ patch embedding, LoRA, features."""

from __future__ import annotations

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.embeddings import CogVideoXPatchEmbed

from satb.build import add_block_lora
from satb.connector import Connector
from satb.control_embed import patchify
from satb.controlnet import SATBControlNet
from satb.denoiser import LQConditionedTransformer, pad_latent_frames, rotary_embeddings
from satb.options import SATBLoRA
from satb.presets import get_preset

CHANNELS = 8
SPEC = get_preset("tiny")
CONFIG = {**SPEC.transformer, "in_channels": CHANNELS, "out_channels": CHANNELS}
EXTRAS = {
    "connector_heads": SPEC.connector_heads,
    "connector_dim": SPEC.connector_dim,
    "control_hidden_channels": SPEC.control_hidden_channels,
    "control_groups": SPEC.control_groups,
}


@pytest.fixture(scope="module")
def base() -> CogVideoXTransformer3DModel:
    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(**CONFIG).eval()


def inputs(frames: int = 4, size: int = 8, batch: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, frames, CHANNELS, size, size, generator=g)
    lq = torch.randn(batch, frames, CHANNELS, size, size, generator=g)
    text = torch.randn(batch, 4, CONFIG["text_embed_dim"], generator=g)
    t = torch.tensor([17, 650])[:batch]
    return x, lq, text, t


def conditioned(base: CogVideoXTransformer3DModel) -> tuple[LQConditionedTransformer, SATBControlNet]:
    denoiser = LQConditionedTransformer(**CONFIG, enable_connector=True, enable_control_patchemb=True, **EXTRAS)
    missing, unexpected = denoiser.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("connectors", "control_patch_embed")) for k in missing)
    controlnet = SATBControlNet.from_transformer(base, 1, SPEC.control_hidden_channels, SPEC.control_groups)
    return denoiser.eval(), controlnet.eval()


def test_zero_initialized_controlnet_leaves_base_output_unchanged(base) -> None:
    denoiser, controlnet = conditioned(base)
    x, lq, text, t = inputs()
    rotary = rotary_embeddings(base.config, x.shape[1], x.shape[3], x.shape[4], x.device)
    with torch.no_grad():
        expected = base(x, text, t, image_rotary_emb=rotary).sample
        states = controlnet(x, text, t, lq, rotary)
        actual = denoiser(x, text, t, control_latents=lq, control_hidden_states=states, image_rotary_emb=rotary)
    assert len(states) == 1 and states[0].abs().sum() > 0
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    # ... and the branch does act once its zero layers move.
    with torch.no_grad():
        torch.nn.init.normal_(denoiser.connectors[0].c_mlp[2].weight)
        changed = denoiser(x, text, t, control_latents=lq, control_hidden_states=states, image_rotary_emb=rotary)
    assert not torch.allclose(changed, expected)


def test_controlnet_copies_the_first_blocks(base) -> None:
    controlnet = SATBControlNet.from_transformer(base, 2, SPEC.control_hidden_channels, SPEC.control_groups)
    for own, original in zip(controlnet.transformer_blocks, base.transformer_blocks):
        for (name, a), (_, b) in zip(own.state_dict().items(), original.state_dict().items()):
            assert torch.equal(a, b), name
    assert torch.equal(controlnet.patch_embed.proj.weight, base.patch_embed.proj.weight)
    with pytest.raises(ValueError, match="blocks"):
        SATBControlNet.from_transformer(base, 3)


def test_connector_is_identity_at_init_and_maps_states() -> None:
    connector = Connector(32, heads=2, bottleneck=16)
    h, c = torch.randn(2, 10, 32), torch.randn(2, 10, 32)
    assert torch.equal(connector(c, h), h)
    with pytest.raises(ValueError, match="divisible"):
        Connector(30, heads=4)


def test_control_patchify_matches_cogvideox_token_order() -> None:
    """The LQ embedding's projection sees the same (C, p_t, p, p) features as CogVideoX1.5's patch embedding."""
    embed = CogVideoXPatchEmbed(
        patch_size=2,
        patch_size_t=2,
        in_channels=3,
        embed_dim=16,
        text_embed_dim=4,
        bias=False,
        use_positional_embeddings=False,
        use_learned_positional_embeddings=False,
    )
    latents = torch.randn(1, 4, 3, 6, 8)
    text = torch.zeros(1, 0, 4)
    expected = embed(text, latents)
    actual = embed.proj(patchify(latents, 2, 2))
    torch.testing.assert_close(actual, expected)


def test_block_features_stop_early_and_match_full_run(base) -> None:
    denoiser, controlnet = conditioned(base)
    x, lq, text, t = inputs()
    rotary = rotary_embeddings(base.config, 4, 8, 8, x.device)
    states = controlnet(x, text, t, lq, rotary)
    first = denoiser.block_features(x, text, t, [0], lq, states, rotary)
    both = denoiser.block_features(x, text, t, [0, -1], lq, states, rotary)
    assert len(first) == 1 and len(both) == 2 and first[0].shape == (2, 2 * 4 * 4, 96)
    torch.testing.assert_close(first[0], both[0])


def test_lora_targets_only_block_projections(base) -> None:
    denoiser, _ = conditioned(base)
    add_block_lora(denoiser, SATBLoRA(rank=4, alpha=4.0))
    adapted = {name.rsplit(".lora_", 1)[0] for name, _ in denoiser.named_parameters() if ".lora_" in name}
    per_block = {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ff.net.0.proj", "ff.net.2"}
    expected = {f"transformer_blocks.{i}.{name}" for i in range(CONFIG["num_layers"]) for name in per_block}
    assert adapted == expected
    x, lq, text, t = inputs()
    rotary = rotary_embeddings(base.config, 4, 8, 8, x.device)
    with torch.no_grad():
        torch.testing.assert_close(
            denoiser(x, text, t, lq, None, rotary), base(x, text, t, image_rotary_emb=rotary).sample
        )


def test_odd_latent_frames_need_padding(base) -> None:
    z = torch.randn(1, 3, CHANNELS, 8, 8)
    padded, extra = pad_latent_frames(z, 2)
    assert extra == 1 and padded.shape[1] == 4 and torch.equal(padded[:, 0], z[:, 0]) and torch.equal(padded[:, 1:], z)
    assert pad_latent_frames(padded, 2)[1] == 0


def test_rotary_grid_beyond_the_sample_size_extends_it(base) -> None:
    p = base.config.patch_size
    small = rotary_embeddings(base.config, 2, 8, 8, torch.device("cpu"))
    large = rotary_embeddings(base.config, 2, base.config.sample_height + 8, 8, torch.device("cpu"))
    rows = base.config.sample_height // p + 4
    assert large[0].shape == (rows * 4, base.config.attention_head_dim)
    # The first rows keep their positions: the top-left 4x4 tokens of frame 0 agree.
    torch.testing.assert_close(large[0][:16], small[0][:16])
