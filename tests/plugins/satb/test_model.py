"""SATB-VR method tests: every equation of a training step and of the jump start pinned by value.

Expected values are built here by hand from the CogVideoX ``alphas_cumprod`` (read from diffusers'
own scheduler, not from the code under test) and from values captured inside ``compute_losses`` /
``prepare_window`` with hand-chosen timesteps and noise. The conformance kit runs for SATB-VR in
tests/plugins/test_every_method.py (``SATBVR.tiny_init_args``).
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler

from satb import SATBVR
from vsr_core.diffusion import PRESETS
from vsr_core.errors import ConfigError
from vsr_core.video_ops import upsample_frames

TINY = dict(SATBVR.tiny_init_args)
#: The tiny recipe with the paper's sampling (t <= τ_s, so the blend matters) and L_diff into F_p.
PAPER = {**TINY, "recipe": {"timestep_sampling": "paper", "tau_max": 400, "diff_grad_to_predictor": True}}
#: Training only at the 1- and 5-step solver start points (τ_s = t = 199, 399; the blend plays no part).
JUMP = {**TINY, "recipe": {"timestep_sampling": "jump_start", "train_step_counts": [1, 5]}}


def alpha_bar() -> torch.Tensor:
    """CogVideoX's ᾱ_t (v-prediction, zero terminal SNR), float64 ``[1000]``, from diffusers itself."""
    config = {k: v for k, v in PRESETS["cogvideox"].items() if k != "_class_name"}
    return CogVideoXDDIMScheduler.from_config(config).alphas_cumprod.double()


A = alpha_bar()


def coef(t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(√ᾱ_t, √(1−ᾱ_t))`` per sample, shaped to broadcast over ``like``."""
    a = A[t].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))
    return a.sqrt(), (1 - a).sqrt()


def make_batch(frames: int = 5, size: int = 32, batch: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    hq = torch.rand(batch, 3, frames, size, size, generator=g) * 2 - 1
    lq = torch.nn.functional.avg_pool3d(hq, (1, 4, 4))
    return {"hq": hq, "lq": lq, "prompt": [""] * batch, "key": [str(i) for i in range(batch)]}


def build(options: dict, perturb_predictor: bool = True, seed: int = 0) -> SATBVR:
    """A tiny model whose predictor no longer outputs x_lq exactly (so x_p, x_lq and x_gt all differ)."""
    torch.manual_seed(seed)
    method = SATBVR(**options)
    if perturb_predictor and method.predictor is not None:
        g = torch.Generator().manual_seed(11)
        with torch.no_grad():
            for p in method.predictor.transformer.proj_out.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return method


class Recorder:
    """Fixes the training draws of ``method`` and records what its networks receive and return."""

    def __init__(self, method: SATBVR, tau_s: list[int], t: list[int], seed: int = 3) -> None:
        self.method, self.tau_s, self.t = method, torch.tensor(tau_s), torch.tensor(t)
        self.noise: torch.Tensor | None = None
        self.denoised: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.features: list[tuple[torch.Tensor, torch.Tensor, bool]] = []
        self.predicted: list[torch.Tensor] = []
        self.seed = seed
        method.draw_training_noise = self.draw
        for name, store in (("_denoise", self.denoised), ("_predict", self.predicted)):
            self.wrap(name, store)
        original = method._features

        def features(x, t, *rest):
            self.features.append((x.detach().clone(), t.clone(), torch.is_grad_enabled()))
            return original(x, t, *rest)

        method._features = features

    def wrap(self, name: str, store: list) -> None:
        original = getattr(self.method, name)

        def wrapped(x, t, *rest):
            out = original(x, t, *rest)
            store.append((x.detach().clone(), t.clone()) if name == "_denoise" else out.detach().clone())
            return out

        setattr(self.method, name, wrapped)

    def draw(self, x_gt: torch.Tensor):
        self.noise = torch.randn(x_gt.shape, generator=torch.Generator().manual_seed(self.seed), dtype=x_gt.dtype)
        return self.tau_s.clone(), self.t.clone(), self.noise


def x_gt_of(method: SATBVR, batch: dict) -> torch.Tensor:
    return method._encode(batch["hq"])[0]


def blend_weight_by_hand(kind: str, tau_s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 4's coefficient γ_τs/γ_t and the Table 2 alternatives, from ᾱ and the paper's definitions."""
    snr = A / (1 - A)
    if kind == "satb":
        w = torch.where(t == tau_s, torch.ones_like(A[t]), snr[tau_s] / snr[t])
    elif kind == "none":
        w = torch.ones_like(A[t])
    elif kind == "linear":
        w = t.double() / tau_s.double()
    else:
        w = 1 - torch.cos(math.pi * t.double() / (2 * tau_s.double()))
    return w


# ---------------------------------------------------------------------------------------------
# Training: Eq. 4 / 29 (the denoiser's input), Eq. 5 (its target), Eq. 6 / 7 (DDC)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["satb", "none", "linear", "cosine"])
def test_eq29_denoiser_input_is_the_noised_blend(kind: str) -> None:
    """x_t = √ᾱ_t (x_gt + w (x_p − x_gt)) + √(1−ᾱ_t) ε with Eq. 4's w (or the Table 2 blends)."""
    method = build({**PAPER, "recipe": {**PAPER["recipe"], "blend": kind}})
    batch = make_batch()
    rec = Recorder(method, tau_s=[399, 250], t=[120, 250])  # sample 2 at t = τ_s: x_b = x_p (Eq. 26)
    method.compute_losses(batch)
    x_gt, (x_p,) = x_gt_of(method, batch), rec.predicted
    w = blend_weight_by_hand(kind, rec.tau_s, rec.t).float().view(-1, 1, 1, 1, 1)
    s, n = coef(rec.t, x_gt)
    expected = s * (x_gt + w * (x_p - x_gt)) + n * rec.noise
    x_t, t = rec.denoised[0]
    assert torch.equal(t, rec.t)
    torch.testing.assert_close(x_t, expected, rtol=1e-5, atol=1e-6)
    assert (x_p - x_gt)[0].abs().mean() > 0.05  # so a wrong blend weight would show


def test_eq29_blend_kinds_give_different_inputs() -> None:
    inputs = {}
    for kind in ("satb", "none", "linear", "cosine"):
        method = build({**PAPER, "recipe": {**PAPER["recipe"], "blend": kind}})
        rec = Recorder(method, tau_s=[399, 399], t=[150, 300])
        method.compute_losses(make_batch())
        inputs[kind] = rec.denoised[0][0]
    kinds = list(inputs)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            assert (inputs[a] - inputs[b]).abs().max() > 1e-3, (a, b)


def test_eq5_v_target_is_built_from_x_gt(monkeypatch) -> None:
    """v = √ᾱ_t ε − √(1−ᾱ_t) x_gt (Eq. 5), not from the blended anchor x_b."""
    import satb.model

    captured = []
    original = satb.model.diffusion_loss
    monkeypatch.setattr(
        satb.model,
        "diffusion_loss",
        lambda v_pred, v, weight=None: captured.append((v_pred, v, weight)) or original(v_pred, v, weight),
    )
    method = build(PAPER)
    batch = make_batch()
    rec = Recorder(method, tau_s=[399, 300], t=[200, 90])
    losses = method.compute_losses(batch)
    (v_pred, v, weight), x_gt = captured[0], x_gt_of(method, batch)
    s, n = coef(rec.t, x_gt)
    torch.testing.assert_close(v, s * rec.noise - n * x_gt, rtol=1e-5, atol=1e-6)
    assert weight is None
    assert losses["diff"].item() == pytest.approx(((v_pred.float() - v.float()) ** 2).mean().item(), rel=1e-6)


def test_eq5_x0_weighting_is_the_squared_clean_estimate_error(monkeypatch) -> None:
    """diff_weighting=x0: (1−ᾱ_t)‖v̂ − v‖² per sample = ‖x̂0 − x0*‖² with x0 = √ᾱ x_t − √(1−ᾱ) v."""
    method = build({**PAPER, "recipe": {**PAPER["recipe"], "diff_weighting": "x0"}}, seed=1)
    rec = Recorder(method, tau_s=[399, 300], t=[10, 250])
    outputs = []
    original = method._denoise
    method._denoise = lambda *args: outputs.append(original(*args)) or outputs[-1]
    batch = make_batch()
    losses = method.compute_losses(batch)
    x_t, _ = rec.denoised[0]
    x_gt = x_gt_of(method, batch)
    s, n = coef(rec.t, x_gt)
    v = s * rec.noise - n * x_gt
    x0_pred, x0_target = s * x_t - n * outputs[0], s * x_t - n * v
    expected = ((x0_pred - x0_target) ** 2).flatten(1).mean(1).mean()
    assert losses["diff"].item() == pytest.approx(expected.item(), rel=1e-4)


def test_eq6_ddc_compares_features_at_tau_s_with_the_same_noise() -> None:
    """Φ(N(x_p, τ_s, ε)) vs Φ(N(x_gt, τ_s, ε)): both at τ_s (not t), with L_diff's ε in both branches."""
    method = build(PAPER)
    batch = make_batch()
    rec = Recorder(method, tau_s=[399, 300], t=[100, 50])
    method.compute_losses(batch)
    x_gt, (x_p,) = x_gt_of(method, batch), rec.predicted
    (target_x, target_t, target_grad), (probe_x, probe_t, probe_grad) = rec.features
    s, n = coef(rec.tau_s, x_gt)
    assert not target_grad and probe_grad  # the target is computed without gradients
    assert torch.equal(target_t, rec.tau_s) and torch.equal(probe_t, rec.tau_s)
    torch.testing.assert_close(target_x, s * x_gt + n * rec.noise, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probe_x, s * x_p + n * rec.noise, rtol=1e-5, atol=1e-6)


def test_eq6_ddc_is_zero_when_the_predictor_is_exact() -> None:
    method = build(PAPER)
    batch = make_batch()
    Recorder(method, tau_s=[399, 200], t=[100, 200])
    x_gt = x_gt_of(method, batch)
    method._predict = lambda x_lq, *rest: x_gt.clone().requires_grad_(True)
    assert method.compute_losses(batch)["ddc"].item() == 0.0


def test_eq6_ddc_gradient_equals_a_reference_with_the_denoiser_frozen_by_hand() -> None:
    """∂(λ L_ddc)/∂θ_p from compute_losses == the same loss back-propagated with F_d's parameters frozen."""
    options = {**PAPER, "recipe": {**PAPER["recipe"], "diff_grad_to_predictor": False}, "ddc": {"weight": 0.7}}
    batch = make_batch()
    method = build(options)
    rec = Recorder(method, tau_s=[399, 300], t=[100, 50])
    method.compute_losses(batch)["total"].backward()
    got = {n: p.grad.clone() for n, p in method.predictor.named_parameters() if p.grad is not None}

    reference = build(options)
    for module in (reference.denoiser, reference.controlnet):
        module.requires_grad_(False)
    x_gt = x_gt_of(reference, batch)
    x_lq = reference._encode(upsample_frames(batch["lq"], 4))[0]
    text, rotary = reference._text(None, 2, x_gt), reference._rotary(x_gt)
    x_p = reference._predict(x_lq, rec.tau_s, text, rotary)
    s, n = coef(rec.tau_s, x_gt)
    with torch.no_grad():
        target = reference._features(s * x_gt + n * rec.noise, rec.tau_s, x_lq, text, rotary)
    probe = reference._features(s * x_p + n * rec.noise, rec.tau_s, x_lq, text, rotary)
    loss = torch.stack([((a - b) ** 2).mean() for a, b in zip(probe, target)]).mean()
    (0.7 * loss).backward()
    expected = {n: p.grad for n, p in reference.predictor.named_parameters() if p.grad is not None}
    assert set(got) == set(expected) and got
    assert any(g.abs().max() > 0 for g in got.values())
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-8, msg=name)


def test_eq6_ddc_gradients_reach_the_predictor_not_the_denoiser() -> None:
    """F_d detached (Eq. 6): DDC changes the predictor's gradients and nothing else."""

    def gradients(ddc_weight: float) -> tuple[dict, dict, dict]:
        options = {
            **PAPER,
            "recipe": {**PAPER["recipe"], "diff_grad_to_predictor": False},
            "ddc": {"weight": ddc_weight},
        }
        method = build(options)
        Recorder(method, tau_s=[399, 300], t=[100, 50])
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


def test_eq7_total_is_diff_plus_lambda_ddc() -> None:
    method = build({**PAPER, "ddc": {"weight": 0.25}})
    Recorder(method, tau_s=[399, 300], t=[100, 50])
    losses = method.compute_losses(make_batch())
    assert losses["total"].item() == pytest.approx(losses["diff"].item() + 0.25 * losses["ddc"].item(), rel=1e-6)


def test_diffusion_loss_trains_all_and_can_stop_at_the_predictor() -> None:
    method = build({**PAPER, "ddc": {"weight": 0.0}})
    losses = method.compute_losses(make_batch())
    assert "ddc" not in losses
    losses["total"].backward()
    reached = {name.split(".")[0] for name, p in method.named_parameters() if p.grad is not None}
    moved = {
        name.split(".")[0] for name, p in method.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
    }
    assert reached == {"predictor", "denoiser", "controlnet"}
    assert moved == {"predictor", "denoiser"}  # the ControlNet's path starts at zero-initialized connectors
    method = build({**PAPER, "ddc": {"weight": 0.0}, "recipe": {**PAPER["recipe"], "diff_grad_to_predictor": False}})
    method.compute_losses(make_batch())["total"].backward()
    assert all(p.grad is None for p in method.predictor.parameters())


def test_training_draws_are_reproducible_and_follow_the_recipe() -> None:
    method = build(TINY)
    a = method.compute_losses(make_batch())["total"].item()
    b = method.compute_losses(make_batch())["total"].item()
    assert a == b  # noise and timesteps come from step_generator(), not the global RNG
    x = torch.zeros(4000, 1)
    tau_s, t, _ = build(JUMP).draw_training_noise(x)
    assert torch.equal(tau_s, t) and set(tau_s.tolist()) == {199, 399}  # jump_start: the 1- and 5-step starts
    for recipe in (PAPER, TINY):  # the tiny preset trains with the paper's sampling below τ_max = 400
        tau_s, t, _ = build(recipe).draw_training_noise(x)
        assert (t <= tau_s).all() and tau_s.max() < 400 and len(set(tau_s.tolist())) > 300
        assert (t < tau_s).float().mean() > 0.9  # almost always t < τ_s: the blend weight is below 1


def test_training_step_logs_the_ddc_to_diff_ratio() -> None:
    method = build(PAPER)
    logged = {}
    method.log = lambda name, value, **_: logged.__setitem__(name, float(value))
    Recorder(method, tau_s=[399, 300], t=[100, 50])
    method.training_step(make_batch(), 0)
    assert logged["train/ddc_over_diff"] == pytest.approx(logged["train/ddc"] / logged["train/diff"], rel=1e-5)
    assert logged["train/loss"] == pytest.approx(logged["train/diff"] + logged["train/ddc"], rel=1e-5)


@pytest.mark.parametrize(
    "row, options",
    [
        (
            "a",
            {
                "denoiser_options": {"lq_condition": False, "output": "x0", "finetune": "none"},
                "recipe": {"blend": "none"},
            },
        ),
        ("b", {"denoiser_options": {"lq_condition": False, "output": "x0", "finetune": "full"}}),
        ("c", {"recipe": {"timestep_sampling": "paper", "tau_max": 400, "blend": "none"}}),
        ("d", {"recipe": {"timestep_sampling": "paper", "tau_max": 400, "blend": "linear"}}),
        ("e", {"recipe": {"timestep_sampling": "paper", "tau_max": 400, "blend": "cosine"}}),
        ("f", {"predictor_options": {"enabled": False}, "ddc": {"weight": 0.0}}),
        ("g", {"ddc": {"weight": 0.0}}),
    ],
)
def test_table_2_ablations_train_and_restore(row: str, options: dict) -> None:
    torch.manual_seed(0)
    method = SATBVR(**{**TINY, **options})
    losses = method.compute_losses(make_batch())
    if row == "a":
        assert method.controlnet is None and not any(p.requires_grad for p in method.denoiser.parameters())
        assert set(losses) == {"diff", "ddc", "total"}  # only the predictor trains, through DDC
    if row == "b":
        assert method.controlnet is None and method.denoiser.connectors is None
    if row == "f":
        assert method.predictor is None and "ddc" not in losses
    if row == "g":
        assert "ddc" not in losses
    losses["total"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters() if p.requires_grad)
    out = method.eval().restore(make_batch()["lq"], num_inference_steps=1)
    assert out.shape == (2, 3, 5, 32, 32)


# ---------------------------------------------------------------------------------------------
# Inference: Eq. 3 (the jump start), Table 4 (the solver's timesteps), sampling options
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 5])
def test_eq3_solver_starts_from_the_noised_predictor_output(steps: int) -> None:
    """x_τs = √ᾱ_τs x_p + √(1−ᾱ_τs) ε with the predictor's x_p (not x_lq) and a fresh ε from the generator."""
    method = build(TINY).eval()
    rec = Recorder(method, [0], [0])
    starts = []
    original = method.denoise_step
    method.denoise_step = lambda state, i, latents: (
        (starts.append(torch.cat([state.prefix, latents.transpose(1, 2)], 1)) if i == 0 else None)
        or original(state, i, latents)
    )
    lq = make_batch()["lq"]
    method.restore(lq, num_inference_steps=steps, generator=torch.Generator().manual_seed(5))
    (x_p,) = rec.predicted
    x_lq = method._encode(upsample_frames(lq, 4))[0]
    assert (x_p - x_lq).abs().mean() > 0.01  # the predictor moved away from x_lq
    epsilon = torch.randn(x_p.shape, generator=torch.Generator().manual_seed(5))
    tau_s = torch.tensor([{1: 199, 5: 399}[steps]] * 2)
    s, n = coef(tau_s, x_p)
    torch.testing.assert_close(starts[0], s * x_p + n * epsilon, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 5])
def test_untrained_tiny_model_restores_the_bicubic_upsampling(steps: int) -> None:
    """Tiny recipe: zero-initialized residual heads give x_p = x_lq and x0 = x_lq at every step."""
    method = SATBVR(**TINY).eval()
    lq = make_batch()["lq"]
    out = method.restore(lq, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), color_fix="none")
    torch.testing.assert_close(out, upsample_frames(lq, 4), atol=1e-4, rtol=0)


@pytest.mark.parametrize("sampler", ["dpmsolver++", "cogvideox_dpm"])
@pytest.mark.parametrize("steps", [1, 2, 3, 5, 10])
def test_table_4_timesteps_are_what_the_denoiser_sees(steps: int, sampler: str) -> None:
    table_4 = {1: [199], 2: [199, 99], 3: [299, 199, 99], 5: [399, 319, 239, 159, 79]}
    table_4[10] = [399, 359, 319, 279, 239, 199, 159, 119, 79, 39]
    method = build(PAPER).eval()
    rec = Recorder(method, [0], [0])
    method.restore(
        make_batch()["lq"], num_inference_steps=steps, generator=torch.Generator().manual_seed(0), sampler=sampler
    )
    assert [int(t[0]) for _, t in rec.denoised] == table_4[steps]


def test_restore_is_prepare_then_steps_then_finish() -> None:
    method = build(PAPER).eval()
    lq = make_batch()["lq"]
    state = method.prepare_window(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(4))
    latents = state.latents
    for i in range(state.num_steps):
        latents = method.denoise_step(state, i, latents)
    manual = method.finish_window(state, latents)
    assert torch.equal(manual, method.restore(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(4)))


def test_wavelet_colour_fix_comes_after_clamping_the_decoded_video() -> None:
    """The release clamps the decoded video to [-1, 1] and then takes the low frequencies from the input."""
    from vsr_core.inference import wavelet_color_fix

    method = build(PAPER).eval()
    decode = method._decode
    method._decode = lambda latents: 3.0 * decode(latents)  # a VAE overshooting [-1, 1]
    lq = make_batch()["lq"]
    state = method.prepare_window(lq, num_inference_steps=1, color_fix="wavelet")
    latents = method.denoise_step(state, 0, state.latents)
    decoded = method._decode(latents)[:, :, :5, :32, :32]
    assert decoded.abs().max() > 1
    reference = upsample_frames(lq, 4)  # the colour reference: the bicubic x4 input
    expected = wavelet_color_fix(decoded.clamp(-1, 1), reference[:, :, :5]).clamp(-1, 1)
    torch.testing.assert_close(method.finish_window(state, latents), expected)


def test_jump_start_models_refuse_untrained_start_points() -> None:
    method = SATBVR(**JUMP).eval()  # jump_start trained 199 (1 step) and 399 (5 steps)
    lq = make_batch()["lq"]
    with pytest.raises(ConfigError, match="never trained at"):
        method.restore(lq, num_inference_steps=3)  # starts at 299
    assert method.restore(lq, num_inference_steps=2).shape[2] == 5  # 2 steps start at 199 too
    tiny = SATBVR(**TINY).eval()  # the paper's sampling below τ_max = 400 trained every start point of Table 4
    assert tiny.restore(lq, num_inference_steps=3).shape[2] == 5
    only_one = SATBVR(**{**JUMP, "recipe": {**JUMP["recipe"], "train_step_counts": [1]}}).eval()
    with pytest.raises(ConfigError, match="use 1 steps"):
        only_one.restore(lq, num_inference_steps=5)


def test_paper_models_refuse_steps_above_tau_max() -> None:
    method = SATBVR(**{**TINY, "recipe": {"timestep_sampling": "paper", "tau_max": 300}}).eval()
    lq = make_batch()["lq"]
    with pytest.raises(ConfigError, match="steps"):
        method.restore(lq, num_inference_steps=0)
    with pytest.raises(ConfigError, match="trained range"):
        method.restore(lq, num_inference_steps=5)  # starts at 399 >= tau_max
    assert method.restore(lq, num_inference_steps=3).shape[2] == 5  # 299 < 300 is fine


def test_restore_is_seeded_and_crops_odd_sizes() -> None:
    method = build(PAPER).eval()
    lq = torch.rand(1, 3, 3, 5, 7) * 2 - 1  # 3 frames (odd latent count), 20x28 output (pads to 32)
    a = method.restore(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(3))
    b = method.restore(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(3))
    assert a.shape == (1, 3, 3, 20, 28) and torch.equal(a, b)
    assert not torch.equal(a, method.restore(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(4)))


def test_prompts_without_text_encoder() -> None:
    lq = make_batch(batch=1)["lq"]
    strict = SATBVR(**TINY, text={"ignore_prompts": False}).eval()
    with pytest.raises(ConfigError, match="no text encoder"):
        strict.restore(lq, prompt=["a cat"], num_inference_steps=1)
    assert strict.restore(lq, prompt=[""], num_inference_steps=1).shape[0] == 1
    lenient = SATBVR(**TINY).eval()
    assert lenient.restore(lq, prompt=["a cat"], num_inference_steps=1).shape[0] == 1


def test_bf16_restore_of_the_tiny_preset_with_lora_matches_fp32() -> None:
    """torch_dtype=bfloat16 outside autocast used to fail (bf16 frozen weights, fp32 LoRA/ControlNet/inputs)."""
    # LoRA on the random tiny base, CogVideoX's own output parameterizations (no zero-initialized heads).
    lora = {
        "denoiser_options": {"finetune": "lora"},
        "predictor_options": {"finetune": "lora"},
        "lora": {"rank": 4, "alpha": 4.0},
    }
    outputs = {}
    for dtype in ("float32", "bfloat16"):
        method = build({**TINY, **lora, "torch_dtype": dtype}, perturb_predictor=False)
        with torch.no_grad():  # move the zero-initialized parts so every network shapes the output
            g = torch.Generator().manual_seed(2)
            for p in method.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape, generator=g) * 0.02)
        if dtype == "bfloat16":
            frozen = [p.dtype for p in method.parameters() if not p.requires_grad]
            assert frozen and set(frozen) == {torch.bfloat16}
        lq = make_batch(batch=1)["lq"]
        outputs[dtype] = method.eval().restore(lq, num_inference_steps=5, generator=torch.Generator().manual_seed(0))
    assert outputs["bfloat16"].dtype == torch.float32
    difference = (outputs["bfloat16"] - outputs["float32"]).abs()
    bicubic = (outputs["float32"] - upsample_frames(make_batch(batch=1)["lq"], 4)).abs()
    assert bicubic.mean() > 0.01  # the networks change the output, so bf16 rounding would show
    assert 0 < difference.max() < 0.05 and difference.mean() < 0.005  # bf16 keeps 8 bits of mantissa (≈ 4e-3)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"recipe": {"blend": "quadratic"}}, "blend"),
        ({"preset": "huge"}, "preset"),
        ({"denoiser_options": {"finetune": "half"}}, "finetune"),
        ({"predictor_options": {"finetune": "none"}}, "finetune"),
        ({"recipe": {"tau_max": 5000}}, "tau_max"),
        ({"ddc": {"blocks": [7]}}, "ddc.blocks"),
        ({"sampling": {"sampler": "euler"}}, "sampler"),
        ({"sampling": {"num_inference_steps": 500}}, "num_inference_steps"),
        ({"recipe": {"timestep_sampling": "uniform"}}, "timestep_sampling"),
        ({"recipe": {"train_step_counts": [500]}}, "between 1 and"),
        ({"denoiser_options": {"output": "eps"}}, "output"),
        ({"denoiser_options": {"output": "lq_residual", "lq_condition": False}}, "lq_condition"),
        ({"predictor_options": {"parameterization": "noise"}}, "parameterization"),
        ({"predictor_options": {"timestep": "tau"}}, "timestep"),
        ({"torch_dtype": "float8"}, "torch_dtype"),
        ({"sampling": {"steps": 3}}, "has no option 'steps'"),
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


# ---------------------------------------------------------------------------------------------
# Latent tiling per solver step (the release tiles latents and blends them after every step)
# ---------------------------------------------------------------------------------------------


def engine_ready(sampler: str) -> SATBVR:
    """The tiny recipe with every network moved off its zero/identity start, so tiles see their context."""
    method = build({**TINY, "sampling": {**TINY["sampling"], "sampler": sampler}}, perturb_predictor=False)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in method.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return method.eval()


def test_latent_layout_is_the_codec_in_whole_transformer_patches() -> None:
    tiny = SATBVR(**TINY).latent_layout
    assert (tiny.latent_channels, tiny.temporal_factor, tiny.spatial_factor, tiny.causal) == (12, 1, 2, False)
    assert tiny.latent_multiple == 2  # CogVideoX patches 2x2 latent pixels


def test_vsr_restore_of_a_frame_larger_than_one_tile_fuses_every_solver_step() -> None:
    """Each step of every latent tile starts from the Gaussian-weighted mean of the tiles' last outputs."""
    from vsr_core.inference import EngineOptions, LatentFusion, RestoreEngine, TimelineNoise

    method = engine_ready("cogvideox_dpm")
    prepared, stepped = [], []
    prepare, step = method.prepare_window, method.denoise_step

    def recording_prepare(lq, prompt=None, *, noise=None, **sampling):
        prepared.append(noise.clone())
        return prepare(lq, prompt, noise=noise, **sampling)

    def recording_step(state, i, latents, *, noise=None):
        out = step(state, i, latents, noise=noise)
        stepped.append((i, latents.clone(), out.clone()))
        return out

    method.prepare_window, method.denoise_step = recording_prepare, recording_step
    video = torch.rand(3, 5, 24, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    engine = RestoreEngine(method, EngineOptions(seed=7, sampling={"num_inference_steps": 2}))
    out = engine.restore_tensor(video)
    assert out.shape == (3, 5, 96, 96) and engine.latent
    runner = engine.runner
    (window,), tiles = runner.windows, runner.tiles
    assert len(tiles) == 4  # 24 LQ px in native 16-px tiles with 4 px of overlap: 2 x 2

    # Level 0: every tile's ε is its slice of one noise tensor of the whole latent frame.
    noise = TimelineNoise(7, 1, 12)
    for tile, given in zip(tiles, prepared):
        expected = noise.slice(0, range(5), range(tile.y, tile.y + tile.height), range(tile.x, tile.x + tile.width))
        assert torch.equal(given, expected)

    # Level 1: step 1 of each tile reads the weighted mean of the step-0 outputs where tiles overlap.
    fusion = LatentFusion()
    fusion.start(runner.windows, tiles)
    height, width = runner.frame_size
    total, weight = torch.zeros(1, 12, 5, height, width), torch.zeros(5, height, width)
    outputs = [o for i, _, o in stepped if i == 0]
    inputs = [x for i, x, _ in stepped if i == 1]
    assert len(outputs) == len(inputs) == 4
    for tile, x in zip(tiles, outputs):
        w = fusion.weights(window, tile, 1).expand(5, tile.height, tile.width)
        total[..., tile.y : tile.y + tile.height, tile.x : tile.x + tile.width] += x * w
        weight[:, tile.y : tile.y + tile.height, tile.x : tile.x + tile.width] += w
    fused = total / weight
    for tile, x, own in zip(tiles, inputs, outputs):
        region = fused[..., tile.y : tile.y + tile.height, tile.x : tile.x + tile.width]
        torch.testing.assert_close(x, region, rtol=1e-5, atol=1e-6)
        assert (x - own).abs().max() > 1e-4  # a tile's own output is not what it continues from


@pytest.mark.parametrize("sampler", ["dpmsolver++", "cogvideox_dpm"])
def test_one_latent_tile_through_the_engine_equals_prepare_steps_finish_with_the_same_noise(sampler: str) -> None:
    from vsr_core.inference import EngineOptions, RestoreEngine, TimelineNoise, make_generator

    method = engine_ready(sampler)
    video = torch.rand(3, 5, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1  # one native tile
    engine = RestoreEngine(method, EngineOptions(seed=3, sampling={"num_inference_steps": 5}))
    out = engine.restore_tensor(video)
    assert engine.latent and len(engine.last_grid.tiles) == 1

    noise = TimelineNoise(3, 1, 12)
    region = (range(5), range(32), range(32))  # latent frames and pixels: x4 upsampling, codec factor 2
    generator = make_generator(3, "cpu")
    state = method.prepare_window(
        video[None], noise=noise.slice(0, *region), num_inference_steps=5, generator=generator
    )
    latents = state.latents
    for i in range(state.num_steps):
        latents = method.denoise_step(state, i, latents, noise=noise.slice(i + 1, *region))
    expected = method.finish_window(state, latents)[0]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    plain = method.restore(video[None], num_inference_steps=5, generator=torch.Generator().manual_seed(3))[0]
    assert (plain - expected).abs().max() > 1e-3  # the noise matters: the equality above is not vacuous


def test_engine_noise_of_the_wrong_shape_is_named() -> None:
    method = SATBVR(**TINY).eval()
    lq = make_batch(batch=1)["lq"]  # 5 frames of 8x8 -> latents [1, 12, 5, 16, 16]
    method.prepare_window(lq, noise=torch.zeros(1, 12, 5, 16, 16))
    with pytest.raises(ConfigError, match=r"must be \[B, c, t, h, w\] = \[1, 12, 5, 16, 16\]"):
        method.prepare_window(lq, noise=torch.zeros(1, 5, 12, 16, 16))  # CogVideoX's order is internal
