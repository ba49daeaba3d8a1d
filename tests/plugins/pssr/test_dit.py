"""The opened-up Wan forward equals diffusers' own, and the widened patch embedding starts as the original."""

from __future__ import annotations

import torch
from torch import nn

from pssr.dit import embed, run_blocks, unembed, widen_patch_embedding


def test_embed_blocks_unembed_is_diffusers_forward(tiny_wan, wan_inputs):
    latents, timestep, text = wan_inputs
    with torch.no_grad():
        expected = tiny_wan(hidden_states=latents, timestep=timestep, encoder_hidden_states=text, return_dict=False)[0]
        tokens, context = embed(tiny_wan, latents, timestep, text)
        tokens, captured = run_blocks(tiny_wan.blocks, tokens, context)
        out = unembed(tiny_wan, tokens, context)
    assert captured == []
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_capture_returns_the_hidden_state_entering_each_named_block(tiny_wan, wan_inputs):
    latents, timestep, text = wan_inputs
    entering = {}
    hooks = [
        block.register_forward_pre_hook(lambda m, args, i=i: entering.__setitem__(i, args[0].clone()))
        for i, block in enumerate(tiny_wan.blocks)
    ]
    with torch.no_grad():
        tiny_wan(hidden_states=latents, timestep=timestep, encoder_hidden_states=text)
        tokens, context = embed(tiny_wan, latents, timestep, text)
        _, captured = run_blocks(tiny_wan.blocks, tokens, context, capture=[5, 2])
    for hook in hooks:
        hook.remove()
    assert len(captured) == 2
    torch.testing.assert_close(captured[0], entering[5], rtol=0, atol=1e-6)
    torch.testing.assert_close(captured[1], entering[2], rtol=0, atol=1e-6)
    assert not torch.allclose(captured[0], captured[1])


def test_captured_features_are_detached(tiny_wan, wan_inputs):
    latents, timestep, text = wan_inputs
    tokens, context = embed(tiny_wan, latents.requires_grad_(True), timestep, text)
    out, captured = run_blocks(tiny_wan.blocks, tokens, context, capture=[1])
    assert out.requires_grad and not captured[0].requires_grad


def test_before_block_replaces_a_block_input(tiny_wan, wan_inputs):
    latents, timestep, text = wan_inputs
    with torch.no_grad():
        tokens, context = embed(tiny_wan, latents, timestep, text)
        plain, _ = run_blocks(tiny_wan.blocks, tokens, context)
        zeroed, _ = run_blocks(tiny_wan.blocks, tokens, context, before_block=lambda i, x: x * 0 if i == 0 else x)
        by_hand = tiny_wan.blocks[0](tokens * 0, context.text, context.timestep_proj, context.rotary)
        for block in tiny_wan.blocks[1:]:
            by_hand = block(by_hand, context.text, context.timestep_proj, context.rotary)
    torch.testing.assert_close(zeroed, by_hand)
    assert not torch.allclose(zeroed, plain)


def test_widened_patch_embedding_reads_the_first_half_like_the_original():
    torch.manual_seed(0)
    old = nn.Conv3d(4, 6, kernel_size=(1, 2, 2), stride=(1, 2, 2))
    new = widen_patch_embedding(old, 2)
    assert new.in_channels == 8 and new.weight.shape == (6, 8, 1, 2, 2)
    assert torch.equal(new.weight[:, :4], old.weight) and not new.weight[:, 4:].any()
    x, y = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 4, 2, 4, 4)
    torch.testing.assert_close(new(torch.cat([x, y], 1)), old(x))  # z_L twice = z_L once, at initialisation
    new.weight.data[:, 4:] = 1.0  # a trained second half does read it
    assert not torch.allclose(new(torch.cat([x, y], 1)), old(x))
