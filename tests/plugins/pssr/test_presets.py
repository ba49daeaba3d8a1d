"""``--preset real`` builds Wan2.1-T2V-1.3B at full size on the meta device; parameter counts by formula."""

from __future__ import annotations

import pytest

from pssr.presets import WAN21_T2V_1_3B, get_preset
from vsr_core.errors import ConfigError

D, FFN, TEXT, FREQ, C, LAYERS, RANK = 1536, 8960, 4096, 256, 16, 30, 32


def linear(i: int, o: int) -> int:
    return i * o + o


def block() -> int:
    attention = 4 * linear(D, D) + 2 * D  # q, k, v, out + RMS norms of q and k
    return (
        2 * attention + 2 * D + linear(D, FFN) + linear(FFN, D) + 6 * D
    )  # self, cross, cross-attn norm, FFN, modulation


def embeddings(in_channels: int) -> int:
    patch = in_channels * 4 * D + D
    time = linear(FREQ, D) + linear(D, D) + linear(D, 6 * D)
    text = linear(TEXT, D) + linear(D, D)
    return patch + time + text


def head() -> int:
    return linear(D, 4 * C) + 2 * D


@pytest.fixture(scope="module")
def real():
    from vsr_core.commands.bench import build_method

    return build_method("pssr.PSSR", "real", "cpu", materialize_params=False)


def test_the_base_is_wan21_t2v_1_3b(real):
    frozen = sum(p.numel() for n, p in real.transformer.named_parameters() if "lora_" not in n)
    assert frozen == embeddings(C) + LAYERS * block() + head() == 1_418_996_800  # "1.42B"
    assert all(p.device.type == "meta" for p in real.transformer.parameters())


def test_lora_rank_32_on_every_block(real):
    per_block = 8 * RANK * (D + D) + RANK * (D + FFN) + RANK * (FFN + D)  # attn1/attn2 q,k,v,out; ffn in, out
    base = sum(p.numel() for n, p in real.transformer.named_parameters() if ".lora_" in n and ".base." in n)
    fake = sum(p.numel() for n, p in real.transformer.named_parameters() if ".lora_" in n and ".fake." in n)
    assert base == fake == LAYERS * per_block == 43_745_280
    assert sum(p.numel() for p in real.base_io.parameters()) == 2 * C * 4 * D + D + linear(D, 4 * C)


def test_the_draft_keeps_10_of_30_blocks_plus_fusion(real):
    assert real.draft.kept == list(range(2, 30, 3))
    fusion = 10 * linear(2 * D, D)
    assert sum(p.numel() for p in real.draft.parameters()) == embeddings(2 * C) + 10 * block() + head() + fusion
    assert sum(p.numel() for p in real.draft.parameters()) == 537_482_304


def test_the_codec_is_the_wan21_vae(real):
    assert (real.codec.spatial_factor, real.codec.temporal_factor, real.codec.latent_channels) == (8, 4, 16)
    assert real.frames_rule == (4, 1) and real.spatial_multiple == 4  # 16 px at the HQ side, scale 4


def test_presets_and_unknown_names():
    assert get_preset("real").transformer is WAN21_T2V_1_3B
    assert get_preset("tiny").codec == "pixel_unshuffle" and get_preset("tiny-wan").codec == "wan"
    with pytest.raises(ConfigError, match="unknown PS-SR preset 'huge'"):
        get_preset("huge")
