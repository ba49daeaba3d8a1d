"""The release's temporal attention: rotary embedding, relative-position buckets, the attention itself, by value."""

from __future__ import annotations

import math

import torch

from diffvsr.temporal_attention import (
    RelativePositionBias,
    TemporalAttention,
    apply_rotary,
    relative_position_bucket,
    rotary_frequencies,
)


def test_rotary_frequencies_are_the_lang_frequencies_of_dim_32():
    freqs = rotary_frequencies(32)
    expected = torch.tensor([10000.0 ** (-2 * i / 32) for i in range(16)])
    torch.testing.assert_close(freqs, expected)


def test_apply_rotary_rotates_interleaved_pairs_by_position():
    freqs = torch.tensor([0.5, 0.25])  # rotates features 0..3, leaves 4, 5
    x = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(0))  # [N, T, D]
    out = apply_rotary(x, freqs)
    for t in range(3):
        for i, f in enumerate(freqs.tolist()):
            a, b = x[:, t, 2 * i], x[:, t, 2 * i + 1]
            angle = t * f
            torch.testing.assert_close(out[:, t, 2 * i], a * math.cos(angle) - b * math.sin(angle))
            torch.testing.assert_close(out[:, t, 2 * i + 1], b * math.cos(angle) + a * math.sin(angle))
    torch.testing.assert_close(out[..., 4:], x[..., 4:])


def test_rotary_scores_depend_only_on_the_frame_distance():
    freqs = rotary_frequencies(8)
    q, k = torch.randn(8), torch.randn(8)
    rq = apply_rotary(q.expand(6, 8).clone(), freqs)
    rk = apply_rotary(k.expand(6, 8).clone(), freqs)
    torch.testing.assert_close(rq[1] @ rk[3], rq[2] @ rk[4])
    torch.testing.assert_close(rq[0] @ rk[0], q @ k)
    assert not torch.allclose(rq[1] @ rk[3], rq[3] @ rk[1])  # not symmetric in the offset's sign


def test_relative_position_buckets_as_t5_computes_them():
    rel = torch.tensor([0, -1, -7, 1, 7, -8, -10, -31, -100])  # j - i
    buckets = relative_position_bucket(rel, num_buckets=32, max_distance=32)

    # n = i - j; n >= 0: exact below 8, else 8 + floor(log(n / 8) / log(4) * 8), at most 15; n < 0: +16, |n|.
    def by_hand(n: int) -> int:
        offset = 16 if n < 0 else 0
        n = abs(n)
        return offset + (n if n < 8 else min(15, 8 + int(math.log(n / 8) / math.log(32 / 8) * 8)))

    assert buckets.tolist() == [by_hand(-int(r)) for r in rel] == [0, 1, 7, 17, 23, 8, 9, 15, 15]


def test_relative_position_bias_table():
    bias = RelativePositionBias(heads=2)
    with torch.no_grad():
        bias.relative_attention_bias.weight.copy_(torch.arange(64.0).reshape(32, 2))
    table = bias(3, torch.device("cpu"))  # [heads, T, T]
    # entry [h, i, j] = weight[bucket(j - i), h]: i >= j -> bucket i - j; i < j -> 16 + (j - i)
    assert table[0].tolist() == [[0, 34, 36], [2, 0, 34], [4, 2, 0]]
    assert table[1].tolist() == [[1, 35, 37], [3, 1, 35], [5, 3, 1]]


def _attention_by_hand(module: TemporalAttention, x: torch.Tensor) -> torch.Tensor:
    n, t, c = x.shape
    h, d = module.heads, module.head_dim
    q = (x @ module.to_q.weight.T).reshape(n, t, h, d).transpose(1, 2) / math.sqrt(d)
    k = (x @ module.to_k.weight.T).reshape(n, t, h, d).transpose(1, 2)
    v = (x @ module.to_v.weight.T).reshape(n, t, h, d).transpose(1, 2)
    freqs = rotary_frequencies(min(32, d))
    q, k = apply_rotary(q, freqs), apply_rotary(k, freqs)
    positions = torch.arange(t)
    buckets = relative_position_bucket(positions[None, :] - positions[:, None])
    bias = module.position_bias.relative_attention_bias.weight[buckets].permute(2, 0, 1)
    scores = torch.einsum("nhid,nhjd->nhij", q, k) + bias
    out = torch.einsum("nhij,nhjd->nhid", scores.softmax(-1), v).transpose(1, 2).reshape(n, t, c)
    return out @ module.to_out.weight.T + module.to_out.bias


def test_temporal_attention_by_value_and_zero_at_initialisation():
    torch.manual_seed(0)
    module = TemporalAttention(64, heads=2)
    x = torch.randn(5, 6, 64)
    assert torch.equal(module(x), torch.zeros_like(x))
    assert not module.to_q.bias and not module.to_k.bias and not module.to_v.bias
    with torch.no_grad():
        torch.nn.init.normal_(module.to_out.weight, std=0.1)
        torch.nn.init.normal_(module.to_out.bias, std=0.1)
        torch.nn.init.normal_(module.position_bias.relative_attention_bias.weight)
    torch.testing.assert_close(module(x), _attention_by_hand(module, x), rtol=1e-5, atol=1e-5)
    assert "rotary_freqs" not in module.state_dict()  # a constant, not a weight
