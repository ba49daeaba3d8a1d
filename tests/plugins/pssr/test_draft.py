"""The draft model: uniform pruning, initialisation from the (LoRA-merged) base, feature fusion (Sec. 3.4)."""

from __future__ import annotations

import pytest
import torch

from pssr.dit import embed, run_blocks, unembed, widen_patch_embedding
from pssr.draft import PSSRDraft, kept_blocks
from vsr_core.errors import ConfigError
from vsr_core.lora import add_lora
from vsr_core.losses import use_adapters


def test_kept_blocks_are_the_release_choice_and_table6_rows():
    assert kept_blocks(30, 20, 30) == [2, 5, 8, 11, 14, 17, 20, 23, 26, 29]  # release k_select = 3
    assert kept_blocks(30, 0, 30) == list(range(30))
    assert kept_blocks(30, 25, 30) == [5, 11, 17, 23, 29]
    twenty = kept_blocks(30, 10, 30)
    assert len(twenty) == 20 and twenty[-1] == 29 and len(set(twenty)) == 20
    assert [b for b in range(30) if b not in twenty] == [1, 4, 7, 10, 13, 16, 19, 22, 25, 28]  # every third removed
    assert kept_blocks(3, 20, 30) == [2]


@pytest.mark.parametrize("pruned, out_of", [(20, 30), (1, 4)])
def test_fractional_pruning_is_a_config_error(pruned, out_of):
    with pytest.raises(ConfigError, match="not a whole number of blocks"):
        kept_blocks(4 if pruned == 20 else 6, pruned, out_of)


def _base_with_lora(model):
    add_lora(
        model, rank=3, alpha=6.0, target_modules=["attn1.to_q", "attn2.to_v", "ffn.net.0.proj"], adapter_name="base"
    )
    with torch.no_grad():  # a "trained" adapter: B != 0
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    return model


def _draft_for(model, kept):
    config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    config["in_channels"] = 2 * config["in_channels"]
    patch = widen_patch_embedding(model.patch_embedding, 2)
    draft = PSSRDraft(config, kept)
    draft.initialise_from(model, patch, model.proj_out, "base")
    return draft, patch


def test_initialisation_is_the_kept_blocks_with_lora_merged(tiny_wan):
    base = _base_with_lora(tiny_wan)
    draft, patch = _draft_for(base, [2, 5])
    assert len(draft.transformer.blocks) == 2
    for j, index in enumerate([2, 5]):
        source, target = base.blocks[index], draft.transformer.blocks[j]
        layer = source.attn1.to_q
        scale = 6.0 / 3  # alpha / rank
        merged = layer.base_layer.weight + scale * layer.lora_B["base"].weight @ layer.lora_A["base"].weight
        torch.testing.assert_close(target.attn1.to_q.weight, merged)
        assert not torch.allclose(target.attn1.to_q.weight, layer.base_layer.weight)
        torch.testing.assert_close(target.attn2.to_k.weight, source.attn2.to_k.weight)  # no LoRA there
        torch.testing.assert_close(target.scale_shift_table, source.scale_shift_table)
        torch.testing.assert_close(target.norm2.weight, source.norm2.weight)
    assert torch.equal(draft.transformer.patch_embedding.weight, patch.weight)
    assert torch.equal(draft.transformer.proj_out.weight, base.proj_out.weight)
    for fusion in draft.fusion:  # [I | 0]: identity on the base half
        d = fusion.out_features
        assert (
            torch.equal(fusion.weight[:, :d], torch.eye(d))
            and not fusion.weight[:, d:].any()
            and not fusion.bias.any()
        )


def test_at_initialisation_the_draft_reproduces_the_base_on_the_kept_path(tiny_wan, wan_inputs):
    base = _base_with_lora(tiny_wan)
    latents, timestep, text = wan_inputs
    kept = [1, 3, 5]
    draft, patch = _draft_for(base, kept)
    doubled = torch.cat([latents, latents], dim=1)
    leaving = {}
    hooks = [
        b.register_forward_hook(lambda m, a, out, i=i: leaving.__setitem__(i, out.clone()))
        for i, b in enumerate(base.blocks)
    ]
    with torch.no_grad(), use_adapters(base, "base"):
        tokens, context = embed(base, doubled, timestep, text, patch)
        tokens, features = run_blocks(base.blocks, tokens, context, capture=kept)
        base_out = unembed(base, tokens, context)
    for h in hooks:
        h.remove()
    drafted = {}
    hooks = [
        b.register_forward_hook(lambda m, a, out, j=j: drafted.__setitem__(j, out.clone()))
        for j, b in enumerate(draft.transformer.blocks)
    ]
    with torch.no_grad():
        other = torch.randn_like(
            doubled
        )  # the draft's own input does not matter yet: fusion picks the base's features
        draft_out = draft(other, timestep, text, features)
    for h in hooks:
        h.remove()
    for j, index in enumerate(kept):  # each draft block outputs what its base block output
        torch.testing.assert_close(drafted[j], leaving[index], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(draft_out, base_out, rtol=1e-5, atol=1e-5)  # the last block is kept: same velocity


def test_fusion_reads_base_features_first_then_the_draft_state(tiny_wan, wan_inputs):
    latents, timestep, text = wan_inputs
    draft, _ = _draft_for(_base_with_lora(tiny_wan), [5])
    doubled = torch.cat([latents, latents], 1)
    tokens = embed(draft.transformer, doubled, timestep, text)[0]
    features = [torch.randn_like(tokens)]
    d = draft.fusion[0].out_features
    with torch.no_grad():
        first = draft(doubled, timestep, text, features)
        assert torch.allclose(first, draft(doubled * 2, timestep, text, features))  # [I | 0] ignores the draft path
        draft.fusion[0].weight.copy_(torch.cat([torch.zeros(d, d), torch.eye(d)], 1))  # [0 | I]: only the draft path
        own = draft(doubled, timestep, text, features)
        assert torch.allclose(own, draft(doubled, timestep, text, [features[0] * 3]))
        assert not torch.allclose(own, draft(doubled * 2, timestep, text, features))


def test_wrong_number_of_features_is_refused(tiny_wan, wan_inputs):
    latents, timestep, text = wan_inputs
    draft, _ = _draft_for(_base_with_lora(tiny_wan), [2, 5])
    with pytest.raises(ValueError, match="2 blocks but got 1"):
        draft(torch.cat([latents, latents], 1), timestep, text, [torch.zeros(1)])
