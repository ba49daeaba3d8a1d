"""UltraVSR as a method: one step, restore's three steps, intervals, SJD wiring, networks, folders, Table 3."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel

from ultravsr import UltraVSR
from ultravsr.drs import reconstruct
from ultravsr.presets import SD21_TEXT_ENCODER, get_preset
from ultravsr.unet import run_unet
from vsr_core.commands import bench
from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.latent import AutoencoderKLCodec
from vsr_core.losses import frame_differences
from vsr_core.video_ops import upsample_frames


def _lq(b=1, t=4, size=8, seed=0):
    return torch.rand(b, 3, t, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def test_restore_is_one_step_without_guidance():
    method = UltraVSR().eval()
    with pytest.raises(ConfigError, match="one-step"):
        method.restore(_lq(), num_inference_steps=2)
    with pytest.raises(ConfigError, match="guidance"):
        method.restore(_lq(), guidance_scale=3.0)


def test_restore_is_prepare_step_finish_and_eq3():
    method = UltraVSR().eval()
    _perturb(method)
    lq = _lq(b=2, t=3)
    with torch.no_grad():
        state = method.prepare_window(lq)
        est = run_unet(method.unet, state.latents, state.t, state.context, state.frames_per_batch)
        z_hr = method.denoise_step(state, 0, state.latents)
        torch.testing.assert_close(z_hr, reconstruct(state.latents, est, state.d))  # Eq. 3 with the UNet's estimate
        out = method.finish_window(state, z_hr)
        torch.testing.assert_close(method.restore(lq), out)
        with pytest.raises(ConfigError, match="one step"):
            method.denoise_step(state, 1, z_hr)
        # TAI (b = 1, the default) and whole-clip processing (b = 0) give the same video.
        torch.testing.assert_close(method.restore(lq, frames_per_batch=0), out, atol=2e-5, rtol=1e-5)


def test_long_windows_are_restored_in_intervals_with_one_dem_score():
    method = UltraVSR(tai={"interval_min_size": 0}).eval()
    _perturb(method)
    lq = _lq(t=5)
    with torch.no_grad():
        degradation = method.degradation(upsample_frames(lq, 4))
        parts = []
        for start, end in ((0, 2), (2, 4), (4, 5)):
            state = method.prepare_window(lq[:, :, start:end], degradation=degradation)
            parts.append(method.finish_window(state, method.denoise_step(state, 0, state.latents)))
        torch.testing.assert_close(method.restore(lq, interval_frames=2), torch.cat(parts, dim=2))
        assert (
            method.restore(lq, interval_frames=0) - torch.cat(parts, dim=2)
        ).abs().max() > 1e-4  # RTS spans intervals


def test_the_dem_of_a_restore_call_can_be_chosen():
    method = UltraVSR().eval()
    _perturb(method)
    lq = _lq()
    with torch.no_grad():
        tiny, constant = method.restore(lq), method.restore(lq, dem="constant")
    assert float(method.degradation(upsample_frames(lq, 4), "constant")[0][0]) == 0.5
    assert (tiny - constant).abs().max() > 1e-4


def test_four_networks_with_the_papers_adam():
    method = UltraVSR()
    groups = method.parameter_groups()
    assert list(groups) == ["generator", "fake_tru", "real_tru", "discriminator"]
    optimizers = method.configure_optimizers()
    assert len(optimizers) == 4
    for config in optimizers:
        group = config["optimizer"].param_groups[0]
        assert group["lr"] == 5e-5 and group["betas"] == (0.9, 0.99) and group["weight_decay"] == 0.0
    # Generator: LoRA, RTS and conv_in; the base UNet and VAE stay frozen (Sec. 4.1.2).
    names = {n for n, p in method.named_parameters() if p.requires_grad and n.startswith(("unet.", "codec."))}
    assert names and all("lora_" in n or "RTS" in n or n.startswith("unet.conv_in.") for n in names)
    # Real TRU: its RTS modules only (the SD prior is kept) -- and, on a random base, the zero-initialised head
    # that would otherwise block their gradient; fake TRU: LoRA + RTS.
    real = {n for n, p in method.real_tru.named_parameters() if p.requires_grad}
    assert {n for n in real if "RTS" not in n} == {"conv_out.weight", "conv_out.bias"}
    z = torch.randn(1, method.codec.latent_channels, 3, 4, 4)
    context = method.prompt_encoder(None, 1, "cpu", torch.float32)
    (run_unet(method.real_tru, z, torch.tensor([500]), context) - torch.randn_like(z)).square().mean().backward()
    assert method.real_tru.conv_out.weight.grad.abs().max() > 0
    fake = {n for n, p in method.fake_tru.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in fake) and any("RTS" in n for n in fake)


def test_sjd_gradient_vanishes_when_the_two_trus_agree_and_not_otherwise():
    method = UltraVSR()
    method.ensure_training_modules()
    z = torch.randn(1, method.codec.latent_channels, 3, 4, 4, requires_grad=True)
    context = method.prompt_encoder(None, 1, "cpu", torch.float32)
    g = torch.Generator().manual_seed(0)
    # At initialisation both TRUs compute the SD UNet (zero LoRA B, zero-initialised RTS outputs): T_real = T_fake.
    loss = method._sjd.generator_loss(z, context, generator=g)
    (grad,) = torch.autograd.grad(loss.loss, z)
    assert torch.count_nonzero(grad) == 0
    _perturb(method.fake_tru, seed=4, scale=0.1)
    loss = method._sjd.generator_loss(z, context, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(loss.loss, z)
    assert grad.abs().max() > 0


def test_eq11_term_by_hand_on_three_frames():
    method = UltraVSR()
    method.ensure_training_modules()
    sjd = method._sjd
    assert sjd.temporal_weight == 0.5  # lambda of Eq. 9
    schedule = method.schedule
    z = torch.randn(1, 1, 3, 1, 2, dtype=torch.float64, requires_grad=True)
    t, noise = torch.tensor([400]), torch.randn(1, 1, 3, 1, 2, dtype=torch.float64)
    real = lambda x_t, timestep, c: 0.3 * x_t  # noqa: E731 - stand-ins with known x0 predictions
    fake = lambda x_t, timestep, c: -0.2 * x_t + 0.1  # noqa: E731
    sjd.real_score, sjd.fake_score = real, fake
    out = sjd.generator_loss(z, None, t=t, noise=noise)
    (grad,) = torch.autograd.grad(out.loss, z)
    a = float(schedule.alphas_cumprod[400])
    x_t = a**0.5 * z.detach() + (1 - a) ** 0.5 * noise
    x0_real, x0_fake = (
        (x_t - (1 - a) ** 0.5 * real(x_t, t, None)) / a**0.5,
        (x_t - (1 - a) ** 0.5 * fake(x_t, t, None)) / a**0.5,
    )
    g = (x0_fake - x0_real) / (z.detach() - x0_real).abs().mean()  # omega(t) of DMD (Eq. 10)
    dg = g[:, :, :2] - g[:, :, 1:]  # Eq. 11's frame differences of the two TRUs' predictions
    expected_temporal = torch.zeros_like(g)
    expected_temporal[:, :, 0] = dg[:, :, 0]
    expected_temporal[:, :, 1] = dg[:, :, 1] - dg[:, :, 0]
    expected_temporal[:, :, 2] = -dg[:, :, 1]
    expected = 2 * g / g.numel() + 0.5 * 2 * expected_temporal / dg.numel()
    torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(frame_differences(g), dg)


def test_training_only_networks_stay_out_of_exports_and_frozen_weights_out_of_checkpoints(tmp_path: Path):
    from vsr_core.export import export_method

    method = UltraVSR()
    method.ensure_training_modules()
    export_method(method, tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["model_vsr.pkl", "vsr_method.json"]
    dropped = method.rebuildable_state_keys()
    assert "unet.down_blocks.0.resnets.0.conv1.base_layer.weight" in dropped
    assert "fake_tru.conv_out.base_layer.weight" in dropped
    assert not any("RTS" in k or "lora_" in k for k in dropped)


def _tiny_sd_folder(root: Path, prediction_type: str = "epsilon") -> Path:
    from vsr_core.testing.tiny_text import write_text_model

    spec = get_preset("tiny")
    UNet2DConditionModel(**spec.unet).save_pretrained(root / "unet")
    AutoencoderKL(**AutoencoderKLCodec.preset_config(spec.vae_preset, spec.vae_config)).save_pretrained(root / "vae")
    PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type=prediction_type,
        skip_prk_steps=True, steps_offset=1,
    ).save_pretrained(root / "scheduler")  # fmt: skip
    write_text_model(root, "clip", width=spec.unet["cross_attention_dim"])
    return root


def test_a_pretrained_sd_folder_with_a_text_encoder(tmp_path: Path):
    folder = _tiny_sd_folder(tmp_path / "sd")
    method = UltraVSR(pretrained=str(folder)).eval()
    assert method.prompt_encoder.mode == "clip"
    lq = _lq()
    with torch.no_grad():
        empty, prompted = method.restore(lq, prompt=[""]), method.restore(lq, prompt=["a cat runs on grass"])
    assert empty.shape == prompted.shape == (1, 3, 4, 32, 32)
    assert torch.isfinite(empty).all()


def test_folders_that_are_not_sd2_are_named(tmp_path: Path):
    folder = _tiny_sd_folder(tmp_path / "sd")
    shutil.rmtree(folder / "unet")
    with pytest.raises(PretrainedError, match="has no 'unet/' folder"):
        UltraVSR(pretrained=str(folder))
    v_folder = _tiny_sd_folder(tmp_path / "v", prediction_type="v_prediction")
    with pytest.raises(PretrainedError, match="v_prediction"):
        UltraVSR(pretrained=str(v_folder))


def test_table3_parameter_counts_of_the_real_preset():
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        text = sum(p.numel() for p in CLIPTextModel(CLIPTextConfig(**SD21_TEXT_ENCODER)).parameters())
    assert abs(text / 1e6 - 340.39) < 0.01  # SD 2.x's text encoder
    rows = {  # Table 3: (trainable, total) in M, and the configuration of each row
        "A": (4.4, 1804, {"rts": {"conv": False, "attention_unit": False}, "drs": {"schedule": "fixed"}}),
        "B": (4.4, 1906, {"rts": {"conv": False, "attention_unit": False}, "dem": {"kind": "clipiqa"}}),
        "C": (7.3, 1909, {"rts": {"attention_unit": False}, "dem": {"kind": "clipiqa"}}),
        "D": (10.5, 1912, {"dem": {"kind": "clipiqa"}}),
    }
    gaps = []
    for trainable_m, total_m, kwargs in rows.values():
        with bench._params_on_meta():  # what `vsr bench --preset real` builds: parameters on the meta device
            method = UltraVSR(preset="real", **kwargs)
        trainable = sum(p.numel() for p in method.parameters() if p.requires_grad) / 1e6
        dem = 0 if method.drs.schedule == "fixed" else method.estimator().parameter_count()
        total = (sum(p.numel() for p in method.parameters()) + text + dem) / 1e6
        assert abs(trainable - trainable_m) <= 0.05, (trainable, trainable_m)
        gaps.append(total_m - total)
    # Every row's total is ours plus one and the same component (the release's RAM/DAPE prompt tagger, not built here).
    assert max(gaps) - min(gaps) < 1.0 and abs(gaps[0] - 509.6) < 0.5
    real = bench.build_method("ultravsr.UltraVSR", "real", "cpu", materialize_params=False)
    assert real.unet.config.cross_attention_dim == 1024 and next(real.unet.parameters()).device.type == "meta"
