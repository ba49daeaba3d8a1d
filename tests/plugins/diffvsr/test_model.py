"""DiffVSR by value: Eq. 1's v-prediction target with the LR noise level, the release's DDIM sampling with guidance,
prompts, stage freezing, pretrained folders and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from diffvsr import DiffVSR
from diffvsr.msta import MultiScaleTemporalAttention
from diffvsr.options import RELEASE_NEGATIVE_PROMPT, RELEASE_PROMPT_SUFFIX
from diffvsr.temporal_layers import TemporalModule
from vsr_core.errors import CheckpointError, ConfigError, PretrainedError
from vsr_core.nn import TemporalConvBlock
from vsr_core.testing import tiny_trainer

B, T, h = 2, 3, 8


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "hq": torch.rand(B, 3, T, 4 * h, 4 * h, generator=g) * 2 - 1,
        "lq": torch.rand(B, 3, T, h, h, generator=g) * 2 - 1,
        "prompt": ["", ""],
    }


def _linear_alphas_cumprod() -> torch.Tensor:
    # The release: the upscaler's scheduler config with beta_schedule forced to "linear".
    return DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear"
    ).alphas_cumprod


def _low_res_alphas_cumprod() -> torch.Tensor:
    return DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear"
    ).alphas_cumprod


def test_the_schedule_is_the_release_linear_one_with_v_prediction():
    method = DiffVSR(vae="pixel-unshuffle")
    torch.testing.assert_close(method.schedule.alphas_cumprod.float(), _linear_alphas_cumprod())
    assert method.schedule.prediction_type == "v_prediction"
    scaled = DiffVSR(vae="pixel-unshuffle", beta_schedule="scaled_linear")
    assert not torch.allclose(scaled.schedule.alphas_cumprod, method.schedule.alphas_cumprod)
    # The SD x4 upscaler's DDIM grid: leading spacing, steps_offset 1.
    sampler = method.schedule.make_sampler("ddim", num_inference_steps=50)
    assert sampler.timesteps.tolist() == list(range(981, 0, -20))


def test_training_loss_is_equation_1_with_the_lr_noise_level(monkeypatch):
    method = DiffVSR(vae="pixel-unshuffle")
    monkeypatch.setattr(method, "step_generator", lambda stream=0, device=None: torch.Generator().manual_seed(11))
    batch = _batch()
    loss = method.training_losses(batch)["v"]

    g = torch.Generator().manual_seed(11)  # the same draws, in the order the method makes them
    tau = torch.randint(0, 350, (B,), generator=g)
    lr_noise = torch.randn(batch["lq"].shape, generator=g)
    t = torch.randint(0, 1000, (B,), generator=g)
    eps = torch.randn(B, 48, T, h, h, generator=g)
    a_tau = _low_res_alphas_cumprod()[tau].view(B, 1, 1, 1, 1)
    x_tau = a_tau.sqrt() * batch["lq"] + (1 - a_tau).sqrt() * lr_noise
    z = method.codec.encode(batch["hq"])
    a = _linear_alphas_cumprod()[t].view(B, 1, 1, 1, 1)
    z_t = a.sqrt() * z + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * z  # v_t = alpha_t eps - sigma_t z
    frames = torch.cat([z_t, x_tau], dim=1).transpose(1, 2).reshape(B * T, 51, h, h)
    out = method.unet(
        frames, t.repeat_interleave(T), encoder_hidden_states=torch.zeros(B * T, 77, 16),
        class_labels=tau.repeat_interleave(T), num_frames=T,
    ).sample.reshape(B, T, 48, h, h).transpose(1, 2)  # fmt: skip
    torch.testing.assert_close(loss, F.mse_loss(out, v), rtol=1e-5, atol=1e-6)


def test_fixed_lr_noise_level_trains_at_the_sampling_level(monkeypatch):
    method = DiffVSR(vae="pixel-unshuffle", training={"lr_noise": "fixed"}, sampling={"noise_level": 70})
    seen = []
    original = method.noiser.forward
    monkeypatch.setattr(
        method.noiser, "forward", lambda image, level, **kw: seen.append(level) or original(image, level, **kw)
    )
    method.training_losses(_batch())
    assert seen[0].tolist() == [70, 70]


def test_restore_is_the_release_ddim_loop_with_guidance(tiny_upscaler):
    method = DiffVSR(pretrained=str(tiny_upscaler), vae="2dvae", text={"encoder": "clip"}).eval()
    assert method.prompt_encoder.negative_prompt == RELEASE_NEGATIVE_PROMPT
    lq = torch.rand(1, 3, T, h, h, generator=torch.Generator().manual_seed(4)) * 2 - 1
    out = method.restore(lq, ["a cat"], num_inference_steps=3, generator=torch.Generator().manual_seed(9))

    g = torch.Generator().manual_seed(9)
    lr_noise = torch.randn(lq.shape, generator=g)  # the LR noise first, then the latents (the release's order)
    z = torch.randn(1, 4, T, h, h, generator=g)
    low_res = DDPMScheduler.from_pretrained(tiny_upscaler / "low_res_scheduler")
    x_tau = low_res.add_noise(lq, lr_noise, torch.tensor([50]))
    config = dict(DDIMScheduler.load_config(tiny_upscaler / "scheduler"))
    config["beta_schedule"] = "linear"  # as the release's inference_tile.py
    ddim = DDIMScheduler.from_config(config)
    ddim.set_timesteps(3)
    encoder = method.prompt_encoder
    cond = encoder(["a cat"], 1, "cpu", torch.float32, suffix=RELEASE_PROMPT_SUFFIX)
    uncond = encoder.negative_embeddings(1, "cpu", torch.float32)
    unet = method.unet

    def v_of(latents, t, text):
        frames = torch.cat([latents, x_tau], dim=1).transpose(1, 2).reshape(T, 7, h, h)
        out = unet(
            frames,
            t.repeat(T),
            encoder_hidden_states=text.repeat(T, 1, 1),
            class_labels=torch.full((T,), 50),
            num_frames=T,
        )
        return out.sample.reshape(1, T, 4, h, h).transpose(1, 2)

    with torch.no_grad():
        for t in ddim.timesteps:
            v_u, v_c = v_of(z, t, uncond), v_of(z, t, cond)
            z = ddim.step(v_u + 5.0 * (v_c - v_u), t, z).prev_sample
        expected = method.codec.decode(z)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    one_pass = method.restore(
        lq, ["a cat"], num_inference_steps=3, guidance_scale=1.0, generator=torch.Generator().manual_seed(9)
    )
    assert (one_pass - out).abs().max() > 1e-4  # guidance changes the result


def test_prompts_get_the_suffix_and_guidance_the_negative_prompt(tiny_upscaler):
    # Words of the tiny tokenizer, so every token counts.
    method = DiffVSR(
        pretrained=str(tiny_upscaler), vae="2dvae",
        text={"encoder": "clip", "prompt_suffix": "high detail", "negative_prompt": "blurry"},
    )  # fmt: skip
    assert RELEASE_PROMPT_SUFFIX == "clear, high quality, high-resolution, 4K"
    assert (
        RELEASE_NEGATIVE_PROMPT == "low quality, blurry, low-resolution, noisy, unsharp, weird textures, worst quality"
    )
    state = method.prepare_window(torch.zeros(1, 3, T, h, h), ["a cat"], num_inference_steps=2)
    encode = method.prompt_encoder.encoder.encode
    assert state.guided and state.text.shape[0] == 2
    torch.testing.assert_close(state.text[0:1], encode(["blurry"], "cpu"))
    torch.testing.assert_close(state.text[1:2], encode(["a cat high detail"], "cpu"))
    assert not torch.allclose(state.text[1:2], encode(["a cat"], "cpu"))


def _count(method: DiffVSR, predicate) -> int:
    return sum(
        p.numel() for n, m in method.unet.named_modules() if predicate(n, m) for p in m.parameters(recurse=False)
    )


def test_stage_freezing_trains_exactly_the_chosen_parameters():
    temporal_types = (TemporalConvBlock, TemporalModule, MultiScaleTemporalAttention)

    def in_temporal(name: str, module) -> bool:
        prefixes = [n for n, m in module_index.items() if isinstance(m, temporal_types)]
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    counts = {}
    for mode in ("temporal", "temporal+resnets", "spatial", "all"):
        method = DiffVSR(vae="pixel-unshuffle", training={"trainable": mode})
        module_index = dict(method.unet.named_modules())
        total = sum(p.numel() for p in method.unet.parameters())
        temporal = _count(method, lambda n, m: in_temporal(n, m))
        resnets = _count(method, lambda n, m: (".resnets." in n or n.startswith("conv_in")) and not in_temporal(n, m))
        trainable = sum(p.numel() for p in method.unet.parameters() if p.requires_grad)
        expected = {
            "temporal": temporal,
            "temporal+resnets": temporal + resnets,
            "spatial": total - temporal,
            "all": total,
        }
        assert trainable == expected[mode], mode
        assert not any(p.requires_grad for p in method.codec.parameters())
        counts[mode] = trainable
    assert (
        counts["temporal"] < counts["temporal+resnets"] < counts["all"]
        and counts["spatial"] + counts["temporal"] == counts["all"]
    )
    from diffvsr.presets import unet_config

    image = sum(p.numel() for p in UNet2DConditionModel(**unet_config("tiny", 48)).parameters())  # diffusers' count
    assert counts["spatial"] == image and counts["temporal"] == 462_656


def test_pretrained_folder_loads_and_frozen_weights_stay_out_of_checkpoints(tiny_upscaler):
    method = DiffVSR(pretrained=str(tiny_upscaler), vae="2dvae", training={"trainable": "temporal"})
    saved = UNet2DConditionModel.from_pretrained(tiny_upscaler / "unet")
    own = method.unet.state_dict()
    assert all(torch.equal(own[k], v) for k, v in saved.state_dict().items())
    checkpoint = {"state_dict": method.state_dict()}
    method.on_save_checkpoint(checkpoint)
    kept = set(checkpoint["state_dict"])
    assert kept and all(".temporal." in k or ".msta." in k for k in kept)


def test_bad_input_fails_with_one_line(tiny_upscaler, tmp_path):
    method = DiffVSR(vae="pixel-unshuffle")
    lq = torch.zeros(1, 3, 2, h, h)
    with pytest.raises(ConfigError, match="num_inference_steps must be >= 1"):
        method.restore(lq, num_inference_steps=0)
    with pytest.raises(ConfigError, match="noise_level must be in"):
        method.restore(lq, noise_level=400)
    # pretrained= a folder that is not an SD x4 upscaler: the missing component is named.
    partial = tmp_path / "partial"
    shutil.copytree(tiny_upscaler, partial)
    shutil.rmtree(partial / "low_res_scheduler")
    with pytest.raises(PretrainedError, match="has no 'low_res_scheduler/' folder"):
        DiffVSR(pretrained=str(partial), vae="2dvae")
    shutil.rmtree(partial / "unet")
    with pytest.raises(PretrainedError, match="has no 'unet/' folder"):
        DiffVSR(pretrained=str(partial), vae="2dvae")
    sd = tmp_path / "sd"
    shutil.copytree(tiny_upscaler, sd)
    shutil.rmtree(sd / "unet")
    UNet2DConditionModel(block_out_channels=(32, 32), norm_num_groups=8, cross_attention_dim=16, layers_per_block=1,
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")).save_pretrained(sd / "unet")  # fmt: skip
    with pytest.raises(PretrainedError, match="is not an SD x4 upscaler UNet"):
        DiffVSR(pretrained=str(sd), vae="2dvae")
    with pytest.raises(ConfigError, match="downsamples by 4, but scale is 2"):
        DiffVSR(scale=2)
    with pytest.raises(ConfigError, match="text.encoder=clip reads the text encoder of pretrained="):
        DiffVSR(text={"encoder": "clip"})


def test_a_stage_started_from_another_method_names_both(tmp_path):
    from reference import ReferenceVSR
    from vsr_core.testing import SyntheticDataModule

    other = ReferenceVSR(channels=4, num_blocks=1)
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    data = SyntheticDataModule(num_clips=2, frames=2, size=32, scale=4, batch_size=1)
    trainer.fit(other, datamodule=data)
    trainer.save_checkpoint(tmp_path / "reference.ckpt")
    stage = DiffVSR(vae="pixel-unshuffle", init_from=str(tmp_path / "reference.ckpt"))
    with pytest.raises(
        CheckpointError, match=r"written by reference\.ReferenceVSR, this run trains diffvsr\.model\.DiffVSR"
    ):
        tiny_trainer(tmp_path / "b", max_steps=1, limit_val_batches=0).fit(stage, datamodule=data)


def test_frozen_weights_a_stage_brought_with_init_from_are_saved(tiny_upscaler, tmp_path):
    from vsr_core.testing import SyntheticDataModule

    data = SyntheticDataModule(num_clips=2, frames=2, size=32, scale=4, batch_size=1)
    # A stage that trains the image weights, then one that freezes them again while reading pretrained=.
    first = DiffVSR(pretrained=str(tiny_upscaler), vae="2dvae", training={"trainable": "all"})
    tiny_trainer(tmp_path / "a", max_steps=1, limit_val_batches=0).fit(first, datamodule=data)
    path = tmp_path / "all.ckpt"
    first.trainer.save_checkpoint(path)
    second = DiffVSR(
        pretrained=str(tiny_upscaler), vae="2dvae", training={"trainable": "temporal"}, init_from=str(path)
    )
    tiny_trainer(tmp_path / "b", max_steps=1, limit_val_batches=0).fit(second, datamodule=data)
    checkpoint = {"state_dict": second.state_dict()}
    second.on_save_checkpoint(checkpoint)
    # The trained image weights differ from pretrained=, so they are kept (and restored on load), not rebuilt.
    assert "unet.conv_in.weight" in checkpoint["state_dict"]
    torch.testing.assert_close(checkpoint["state_dict"]["unet.conv_in.weight"], first.unet.conv_in.weight)


@pytest.mark.parametrize("kind", ["wavelet", "adain"])
def test_color_fix_is_the_core_fix_of_the_decoded_video_against_the_upsampled_input(kind):
    from vsr_core.inference import adain_color_fix, wavelet_color_fix
    from vsr_core.video_ops import upsample_frames

    fix = {"wavelet": wavelet_color_fix, "adain": adain_color_fix}[kind]
    method = DiffVSR(vae="pixel-unshuffle").eval()
    lq = torch.rand(1, 3, 2, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        state = method.prepare_window(lq, num_inference_steps=2, color_fix=kind)
        latents = 0.5 * torch.randn(state.latents.shape, generator=torch.Generator().manual_seed(2))
        fixed = method.finish_window(state, latents)
        decoded = method.codec.decode(latents)[..., :32, :32]
    expected = fix(decoded, upsample_frames(lq, 4)).clamp(-1, 1)
    torch.testing.assert_close(fixed, expected)
    assert not torch.allclose(fixed, decoded.clamp(-1, 1))


def test_training_feeds_the_unet_what_sampling_feeds_it_at_the_same_timestep(monkeypatch):
    # The learning check's tiny configuration (configs/tiny.yaml): one training step and one DDIM step at the same
    # timestep, z_t and LR noise must call the UNet with identical tensors -- latents and LR channels in the same
    # order, the same x_tau and noise-level label, timestep and (empty) text -- so a model trained on Eq. 1 is
    # sampled on the inputs it was trained on.
    import yaml

    from diffvsr.options import DiffVSRSampling

    config = Path(__file__).parents[3] / "plugins/diffvsr/configs/tiny.yaml"
    options = dict(yaml.safe_load(config.read_text())["model"]["init_args"])
    options.pop("val_sampling")
    method = DiffVSR(**options).eval()
    steps = options["sampling"]["num_inference_steps"]
    grid = [int(s) for s in method.schedule.make_sampler("ddim", num_inference_steps=steps).timesteps]
    index = steps // 2
    monkeypatch.setattr(
        method.schedule, "sample_t", lambda b, generator=None, device=None: torch.full((b,), grid[index])
    )
    monkeypatch.setattr(method, "step_generator", lambda stream=0, device=None: torch.Generator().manual_seed(5))
    calls = []
    hook = method.unet.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append((args, kwargs)), with_kwargs=True
    )
    batch = _batch(3)
    with torch.no_grad():
        method.training_losses(batch)
    (frames, timestep), kw = calls.pop()
    c = method.codec.latent_channels
    z_t = frames[:, :c].reshape(B, T, c, h, h).transpose(1, 2)
    x_tau = frames[:, c:].reshape(B, T, 3, h, h).transpose(1, 2)
    # The LR noise the training step drew, recovered from x_tau with diffusers' low-res table (level 50: fixed).
    assert kw["class_labels"].tolist() == [DiffVSRSampling().noise_level] * (B * T)
    a = _low_res_alphas_cumprod()[50]
    lr_noise = (x_tau - a.sqrt() * batch["lq"]) / (1 - a).sqrt()

    state = method.prepare_window(batch["lq"], lr_noise=lr_noise, noise=torch.zeros_like(z_t))
    method.denoise_step(state, index, z_t)
    hook.remove()
    (frames_i, timestep_i), kw_i = calls.pop()
    torch.testing.assert_close(frames_i, frames, rtol=0, atol=1e-6)
    assert timestep_i.tolist() == timestep.tolist() == [grid[index]] * (B * T)
    assert torch.equal(kw_i["class_labels"], kw["class_labels"])
    torch.testing.assert_close(kw_i["encoder_hidden_states"], kw["encoder_hidden_states"], rtol=0, atol=0)
