"""SATB-VR method tests: training-step properties, ablations, restore options.

The conformance kit runs for SATB-VR in tests/plugins/test_every_method.py (``SATBVR.tiny_init_args``).
"""

from __future__ import annotations


import pytest
import torch
from satb import SATBVR

from vsr_core.errors import ConfigError

TINY = {"scale": 4, "preset": "tiny", "learning_rate": 5e-4}


def make_batch(frames: int = 5, size: int = 32, batch: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    hq = torch.rand(batch, 3, frames, size, size, generator=g) * 2 - 1
    lq = torch.nn.functional.avg_pool3d(hq, (1, 4, 4))
    return {"hq": hq, "lq": lq, "prompt": [""] * batch, "key": [str(i) for i in range(batch)]}


def grads(module: torch.nn.Module | None) -> list[torch.Tensor]:
    if module is None:
        return []
    return [p.grad for p in module.parameters() if p.requires_grad and p.grad is not None]


def test_ddc_gradients_reach_predictor_not_denoiser() -> None:
    """Eq. 6 with F_d detached: DDC changes the predictor's gradients and nothing else."""

    def gradients(ddc_weight: float) -> tuple[dict, dict]:
        torch.manual_seed(0)
        method = SATBVR(**TINY, ddc_weight=ddc_weight, diff_grad_to_predictor=False)
        losses = method.compute_losses(make_batch())
        losses["total"].backward()
        split = {"predictor": {}, "rest": {}}
        for name, p in method.named_parameters():
            if p.requires_grad:
                split["predictor" if name.startswith("predictor.") else "rest"][name] = p.grad
        return split["predictor"], split["rest"], losses

    predictor_ddc, rest_ddc, losses = gradients(1.0)
    predictor_none, rest_none, _ = gradients(0.0)
    assert set(losses) == {"diff", "ddc", "total"} and losses["ddc"] > 0
    assert all(g is None for g in predictor_none.values())  # L_diff alone cannot reach it here
    assert any(g is not None and g.abs().sum() > 0 for g in predictor_ddc.values())
    for name, grad in rest_ddc.items():  # the denoiser and ControlNet get exactly L_diff's gradients
        if grad is None:
            assert rest_none[name] is None, name
        else:
            torch.testing.assert_close(grad, rest_none[name], msg=name)


def test_diffusion_loss_trains_all_and_can_stop_at_the_predictor() -> None:
    torch.manual_seed(0)
    method = SATBVR(**TINY, ddc_weight=0.0, diff_grad_to_predictor=True)
    losses = method.compute_losses(make_batch())
    assert "ddc" not in losses
    losses["total"].backward()
    assert grads(method.denoiser) and grads(method.controlnet) and grads(method.predictor)
    torch.manual_seed(0)
    method = SATBVR(**TINY, ddc_weight=0.0, diff_grad_to_predictor=False)
    method.compute_losses(make_batch())["total"].backward()
    assert grads(method.predictor) == [] and grads(method.denoiser)


def test_training_draws_are_reproducible() -> None:
    torch.manual_seed(0)
    method = SATBVR(**TINY)
    a = method.compute_losses(make_batch())["total"].item()
    b = method.compute_losses(make_batch())["total"].item()
    assert a == b  # noise and timesteps come from step_generator(), not the global RNG


@pytest.mark.parametrize(
    "row, options",
    [
        ("a", {"lq_condition": False, "denoiser_finetune": "none", "blend": "none"}),
        ("b", {"lq_condition": False}),
        ("c", {"blend": "none"}),
        ("d", {"blend": "linear"}),
        ("e", {"blend": "cosine"}),
        ("f", {"use_predictor": False, "ddc_weight": 0.0}),
        ("g", {"ddc_weight": 0.0}),
    ],
)
def test_table_2_ablations_train_and_restore(row: str, options: dict) -> None:
    torch.manual_seed(0)
    method = SATBVR(**TINY, **options)
    if row == "a":
        assert method.controlnet is None and not any(p.requires_grad for p in method.denoiser.parameters())
    if row == "f":
        assert method.predictor is None
    losses = method.compute_losses(make_batch())
    losses["total"].backward()
    assert torch.isfinite(losses["total"])
    assert any(p.grad is not None for p in method.parameters() if p.requires_grad)
    out = method.eval().restore(make_batch()["lq"], num_inference_steps=1)
    assert out.shape == (2, 3, 5, 32, 32)


@pytest.mark.parametrize("steps", [1, 5])
def test_untrained_tiny_model_restores_the_bicubic_upsampling(steps: int) -> None:
    """Tiny preset: zero-initialized residual heads give x_p = x_lq and x0 = x_lq at every step."""
    from vsr_core.video_ops import upsample_frames

    method = SATBVR(**TINY).eval()
    assert method.denoiser_output == "lq_residual" and method.predictor.parameterization == "residual"
    lq = make_batch()["lq"]
    out = method.restore(lq, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), color_fix=False)
    torch.testing.assert_close(out, upsample_frames(lq, 4), atol=1e-4, rtol=0)


@pytest.mark.parametrize("sampler", ["dpmsolver++", "cogvideox_dpm"])
@pytest.mark.parametrize("steps", [1, 2, 3, 5, 10])
def test_steps_are_chosen_at_restore_time(steps: int, sampler: str) -> None:
    torch.manual_seed(0)
    method = SATBVR(**TINY).eval()
    calls = []
    original = method._denoise
    method._denoise = lambda x, t, *rest: calls.append(int(t[0])) or original(x, t, *rest)
    lq = make_batch()["lq"]
    out = method.restore(lq, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), sampler=sampler)
    assert torch.isfinite(out).all()
    from satb.schedule import jump_start_timesteps

    assert calls == jump_start_timesteps(steps)


def test_bad_steps() -> None:
    method = SATBVR(**TINY, tau_max=300).eval()
    lq = make_batch()["lq"]
    with pytest.raises(ConfigError, match="steps"):
        method.restore(lq, num_inference_steps=0)
    with pytest.raises(ConfigError, match="trained range"):
        method.restore(lq, num_inference_steps=5)  # starts at 399 >= tau_max
    assert method.restore(lq, num_inference_steps=3).shape[2] == 5  # 299 < 300 is fine


def test_jump_start_sampling_trains_the_denoiser_where_the_solver_starts() -> None:
    torch.manual_seed(0)
    method = SATBVR(**TINY, ddc_weight=0.0)  # a random tiny base defaults to jump_start, [1, 5]
    assert method.timestep_sampling == "jump_start" and not method.diff_grad_to_predictor
    assert method.tau_max == 400  # the trained range ends just above the highest start point
    assert SATBVR(**TINY, timestep_sampling="paper").tau_max == 1000
    seen: list[int] = []
    original = method._denoise
    method._denoise = lambda x, t, *rest: seen.extend(t.tolist()) or original(x, t, *rest)
    for step in range(6):
        torch.manual_seed(step)  # step_generator keys on the run seed; without a trainer the step is 0
        method.compute_losses(make_batch(frames=1, size=16, batch=2, seed=step))
    assert set(seen) <= {199, 399} and len(set(seen)) == 2
    with pytest.raises(ConfigError, match="trained range"):
        SATBVR(**TINY, timestep_sampling="jump_start", train_step_counts=[1]).eval().restore(make_batch()["lq"], num_inference_steps=5)


def test_restore_is_seeded_and_crops_odd_sizes() -> None:
    torch.manual_seed(0)
    method = SATBVR(**TINY).eval()
    lq = torch.rand(1, 3, 3, 5, 7) * 2 - 1  # 3 frames (odd latent count), 20x28 output (pads to 32)
    a = method.restore(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(3))
    b = method.restore(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(3))
    assert a.shape == (1, 3, 3, 20, 28) and torch.equal(a, b)
    assert not torch.equal(a, method.restore(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(4)))


def test_prompts_without_text_encoder() -> None:
    lq = make_batch(batch=1)["lq"]
    strict = SATBVR(**TINY, ignore_prompts=False).eval()
    with pytest.raises(ConfigError, match="no text encoder"):
        strict.restore(lq, prompt=["a cat"], num_inference_steps=1)
    assert strict.restore(lq, prompt=[""], num_inference_steps=1).shape[0] == 1
    lenient = SATBVR(**TINY).eval()
    assert lenient.restore(lq, prompt=["a cat"], num_inference_steps=1).shape[0] == 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"blend": "quadratic"}, "blend"),
        ({"preset": "huge"}, "preset"),
        ({"denoiser_finetune": "half"}, "denoiser_finetune"),
        ({"predictor_finetune": "none"}, "predictor_finetune"),
        ({"tau_max": 5000}, "tau_max"),
        ({"ddc_blocks": [7]}, "ddc_blocks"),
        ({"sampler": "euler"}, "sampler"),
        ({"timestep_sampling": "uniform"}, "timestep_sampling"),
        ({"timestep_sampling": "jump_start", "train_step_counts": [500]}, "between 1 and"),
        ({"denoiser_output": "eps"}, "denoiser_output"),
        ({"denoiser_output": "lq_residual", "lq_condition": False}, "lq_condition"),
        ({"predictor_parameterization": "noise"}, "predictor_parameterization"),
    ],
)
def test_bad_configuration(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SATBVR(**{**TINY, **options})


@pytest.mark.parametrize(("scale", "tile", "overlap"), [(4, 16, 4), (2, 32, 8)])
def test_tiny_preset_declares_cpu_sized_native_tiles(scale: int, tile: int, overlap: int) -> None:
    method = SATBVR(**{**TINY, "scale": scale})
    # 64 output pixels with a stride of 48 (the release's 1024/768 ratio), in LQ pixels
    assert (method.native_tile, method.native_tile_overlap) == (tile, overlap)
