"""PSSR by value: the speculative sampler (Eq. 5, 6, 13-14), the losses' gradients, the stages, bad input."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback

from pssr import PSSR
from pssr.frequency import frequency_update
from vsr_core.errors import CheckpointError, ConfigError, PretrainedError
from vsr_core.testing import SyntheticDataModule, tiny_trainer
from vsr_core.video_ops import upsample_frames


def _lq(b: int = 1, frames: int = 5, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, frames, size, size, generator=g) * 2 - 1


def _trained_like(method: PSSR, seed: int = 0) -> PSSR:
    """Move the zero-initialised heads (and LoRA B) off zero, so every path of the sampler matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in method.named_parameters():
            if name.startswith(("base_io.", "draft.transformer.proj_out")) or "lora_B" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return method.eval()


@pytest.mark.parametrize("base_timestep", [699, 1000])  # the release's reading, the paper's sigma_T = 1
def test_the_base_step_is_eq5(base_timestep):
    method = _trained_like(PSSR(preset="tiny", flow={"base_timestep": base_timestep}))
    lq = _lq()
    with torch.no_grad():
        state = method.prepare_window(lq)
        z = state.latents
        z_lq = method.codec.encode(upsample_frames(lq, 4))  # z_L: the upsampled LQ video, encoded
        torch.testing.assert_close(z, z_lq)
        sigma_t, sigma_next = base_timestep / 1000, state.timesteps[1] / 1000
        assert state.timesteps == [base_timestep, *([599, 499, 399] if base_timestep == 699 else [800, 599, 399])]
        v, _ = method.base_velocity(z_lq, torch.full((1,), float(base_timestep)), state.text)
        z_next = method.denoise_step(state, 0, z)
        # Eq. 5: z_{T-1} = z_L - (sigma_T - sigma_{T-1}) phi_base(z_L); x_{T-1} = E^-1(z_{T-1} - sigma_{T-1} phi_base)
        torch.testing.assert_close(z_next, z_lq - (sigma_t - sigma_next) * v, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(state.video, method.codec.decode(z_next - sigma_next * v), rtol=1e-5, atol=1e-5)
        assert v.abs().mean() > 1e-3  # a real velocity, not the zero head


def test_a_draft_step_is_eq6_with_the_frequency_update():
    method = _trained_like(PSSR(preset="tiny"))
    with torch.no_grad():
        state = method.prepare_window(_lq())
        z = state.latents
        z = method.denoise_step(state, 0, z)
        before = state.video.clone()
        phi = method.draft_velocity(z, state.z_lq, torch.full((1,), 599.0), state.text, state.features)
        z_next = method.denoise_step(state, 1, z)
        torch.testing.assert_close(z_next, z - (0.599 - 0.499) * phi, rtol=1e-5, atol=1e-6)  # Eq. 6, first line
        predicted = method.codec.decode(z_next - 0.499 * phi)  # x~_{t-1}, Eq. 6 second line / Sec. 3.5
        torch.testing.assert_close(
            state.video, frequency_update(before, predicted, 0.6, 0.2, 2, 2, 1e-6), rtol=1e-5, atol=1e-5
        )
        assert not torch.allclose(state.video, before)


def test_restore_is_prepare_steps_finish_and_the_fdu_modes():
    method = _trained_like(PSSR(preset="tiny"))
    lq = _lq(frames=9)
    with torch.no_grad():
        out = method.restore(lq)
        state = method.prepare_window(lq)
        z = state.latents
        base = None
        for i in range(4):
            z = method.denoise_step(state, i, z)
            base = state.video.clone() if i == 0 else base
        torch.testing.assert_close(out, method.finish_window(state, z))
        one = method.restore(lq, num_inference_steps=1)
        torch.testing.assert_close(one, base.clamp(-1, 1))  # T = 1: the base alone (x_{T-1} of Eq. 5)
        off = method.restore(lq, frequency_update="off")
        torch.testing.assert_close(off, method.codec.decode(state.x0).clamp(-1, 1))  # Table 3 "w/o FDU"
        final = method.restore(lq, frequency_update="final", alpha=1.0)  # the release: base + last draft's details
        expected = frequency_update(base, method.codec.decode(state.x0), 1.0, 0.2, 2, 2, 1e-6).clamp(-1, 1)
        torch.testing.assert_close(final, expected, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(out, off) and not torch.allclose(out, one)
        assert out.shape == (1, 3, 9, 32, 32)


def test_frequency_alpha_scales_reaches_the_sampler():
    """``frequency.alpha_scales="draft"`` with alpha 0 keeps x_t at every draft step: T = 4 returns the base (T = 1)."""
    method = _trained_like(PSSR(preset="tiny", frequency={"alpha_scales": "draft"}))
    printed = _trained_like(PSSR(preset="tiny"))
    printed.load_state_dict(method.state_dict())
    lq = _lq(frames=5)
    with torch.no_grad():
        base = method.restore(lq, num_inference_steps=1)
        torch.testing.assert_close(method.restore(lq, alpha=0.0), base, rtol=0, atol=1e-6)
        assert not torch.allclose(method.restore(lq, alpha=0.6), base)
        # Eq. 14 as printed: alpha 0 removes x_t's high band instead (it is not the base)
        assert not torch.allclose(printed.restore(lq, alpha=0.0), base, atol=1e-3)
        torch.testing.assert_close(method.restore(lq, alpha=1.0), printed.restore(lq, alpha=1.0), rtol=0, atol=1e-6)


def _batch(b: int = 2, frames: int = 5, size: int = 32, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    hq = torch.rand(b, 3, frames, size, size, generator=g) * 2 - 1
    lq = torch.nn.functional.avg_pool3d(hq, (1, 4, 4))
    return {"hq": hq, "lq": lq, "prompt": [""] * b}


def _grads(params) -> list[bool]:
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params]


def test_vsd_reaches_only_the_generator_and_the_fake_score_loss_only_the_fake_lora():
    method = PSSR(preset="tiny")
    method.ensure_training_modules()
    with torch.no_grad():  # a fake score that has learnt something (at B = 0 it equals the real one and g = 0)
        for name, p in method.transformer.named_parameters():
            if "lora_B.fake" in name:
                p.normal_(0, 0.05)
    _, z_hq, z_lq = method.encode_pair(_batch())
    text = method._text(None, 2, z_hq)
    negative = method.prompt_encoder.negative_embeddings(2, z_hq.device, text.dtype)
    _, z_hat = method._base_prediction(z_lq, text)
    g = torch.Generator().manual_seed(0)
    method.distribution_matching.generator_loss(z_hat, text, negative, generator=g).loss.backward()
    base, fake = method._base_parameters(), method._fake_parameters()
    frozen = [p for n, p in method.transformer.named_parameters() if "lora_" not in n]
    assert any(_grads(base)) and not any(_grads(fake)) and not any(_grads(frozen))
    assert not any(_grads(method.discriminator.parameters()))
    method.zero_grad(set_to_none=True)
    method.distribution_matching.fake_score_loss(z_hat, text, generator=g).backward()
    assert all(_grads([p for n, p in method.transformer.named_parameters() if "lora_B.fake" in n]))
    assert not any(_grads(base)) and not any(_grads(frozen))


def _record_pairs(method: PSSR, pairs: list) -> None:
    """Wrap ``method.encode_pair`` so every training step's ``(z_hq, z_lq)`` is appended to ``pairs``."""
    encode = method.encode_pair

    def recording(batch):
        hq, z_hq, z_lq = encode(batch)
        pairs.append((z_hq.clone(), z_lq.clone()))
        return hq, z_hq, z_lq

    method.encode_pair = recording


class _Record(Callback):
    """Keeps what the draft saw: the inputs of its patch embedding and the batch latents."""

    def __init__(self) -> None:
        self.inputs: list[torch.Tensor] = []
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.block_calls = {"draft": 0, "base": 0}

    def on_fit_start(self, trainer, method) -> None:
        method.draft.transformer.patch_embedding.register_forward_pre_hook(
            lambda m, a: self.inputs.append(a[0].detach().clone())
        )
        for block in method.draft.transformer.blocks:
            block.register_forward_pre_hook(
                lambda m, a: self.block_calls.__setitem__("draft", self.block_calls["draft"] + 1)
            )
        for block in method.transformer.blocks:
            block.register_forward_pre_hook(
                lambda m, a: self.block_calls.__setitem__("base", self.block_calls["base"] + 1)
            )
        _record_pairs(method, self.pairs)


def _fit(method: PSSR, tmp_path, steps: int = 1, callbacks=(), **data) -> Any:
    options = dict(num_clips=4, frames=5, size=32, scale=4, batch_size=2) | data
    trainer = tiny_trainer(tmp_path, max_steps=steps, limit_val_batches=0, callbacks=list(callbacks))
    trainer.fit(method, datamodule=SyntheticDataModule(**options))
    return trainer


def test_draft_training_prunes_and_feeds_the_lq_latent_not_zeros(tmp_path):
    """The release's two pitfalls: its train_draft.py never prunes (k_select = 1) and feeds zeros for z_L."""
    method = PSSR(preset="tiny", stage="draft", draft={"pruned": 1, "out_of": 3}, losses={"pixel": 0.0})
    assert method.draft.kept == [0, 2] and len(method.draft.transformer.blocks) == 2  # pruned: 2 of 3 blocks
    record = _Record()
    _fit(method, tmp_path, callbacks=[record])
    assert record.block_calls == {"draft": 2, "base": 3}  # one draft pass through its 2 blocks, one base pass
    (seen,), ((z_hq, z_lq),) = record.inputs, record.pairs
    c = z_lq.shape[1]
    assert seen.shape[1] == 2 * c
    torch.testing.assert_close(seen[:, c:], z_lq)  # the second half is z_L, as at inference
    assert seen[:, c:].abs().mean() > 0.1
    for z_t, hq, lq in zip(seen[:, :c], z_hq, z_lq):  # the first half lies on the line at a draft timestep (Sec. 3.4)
        assert any(torch.allclose(z_t, hq + (s / 0.699) * (lq - hq), atol=1e-5) for s in (0.599, 0.499, 0.399))


class _DraftCalls(Callback):
    """Keeps every draft call of a training step: ``(input [B, 2c, ...], timestep [B], velocity)``, and the pair."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_fit_start(self, trainer, method) -> None:
        method.draft.register_forward_hook(
            lambda m, a, out: self.calls.append((a[0].detach().clone(), a[1].detach().clone(), out.detach().clone()))
        )
        _record_pairs(method, self.pairs)


def test_draft_input_trajectory_feeds_the_samplers_own_states(tmp_path):
    """``draft.input: trajectory``: the base's Euler step from z_L, then each draft velocity's step (Eq. 3, 5, 6).

    Expected states are rebuilt from the recorded velocities with the sigmas written out: base at 0.699,
    draft at 0.599, 0.499, 0.399; each draft input is ``cat([z_t, z_L])`` and its target the velocity
    landing on z_H, ``(z_t - z_H) / sigma_t`` (the logged L2 is the sum of the three MSEs).
    """
    method = _trained_like(PSSR(preset="tiny", stage="draft", draft={"input": "trajectory"}, losses={"pixel": 0.0}))
    record = _DraftCalls()
    trainer = _fit(method, tmp_path, callbacks=[record])
    ((z_hq, z_lq),) = record.pairs
    assert len(record.calls) == 3
    c = z_lq.shape[1]
    with torch.no_grad():  # the base is frozen in the draft stage: its velocity now is the one used in the step
        text = method._text(None, z_lq.shape[0], z_lq)
        v_base, _ = method.base_velocity(z_lq, torch.full((z_lq.shape[0],), 699.0), text)
    assert v_base.abs().mean() > 1e-2 and all(call[2].abs().mean() > 1e-2 for call in record.calls)
    assert (record.calls[1][2] - v_base).abs().mean() > 1e-2  # the draft's velocity is not the base's
    z_t = z_lq - (0.699 - 0.599) * v_base
    sigmas = (0.599, 0.499, 0.399, None)
    expected_l2 = 0.0
    for k, (seen, timestep, velocity) in enumerate(record.calls):
        torch.testing.assert_close(timestep, torch.full_like(timestep, sigmas[k] * 1000))
        torch.testing.assert_close(seen[:, :c], z_t, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(seen[:, c:], z_lq)  # z_L, as at inference (not zeros, not z_t)
        expected_l2 += torch.mean((velocity - (z_t - z_hq) / sigmas[k]) ** 2).item()
        if sigmas[k + 1] is not None:
            z_t = z_t - (sigmas[k] - sigmas[k + 1]) * velocity
    # the states are off the LQ -> HQ line (they are the sampler's, not Eq. 4's interpolation)
    on_line = z_hq + (0.599 / 0.699) * (z_lq - z_hq)
    assert (record.calls[0][0][:, :c] - on_line).abs().mean() > 1e-3
    assert trainer.callback_metrics["train/l2"].item() == pytest.approx(expected_l2, rel=1e-4)


def test_draft_parameters_alone_train_in_the_draft_stage(tmp_path):
    method = PSSR(preset="tiny", stage="draft", pixel={"perceptual": "tiny"})
    frozen = {n: p.detach().clone() for n, p in method.named_parameters() if not n.startswith("draft.")}
    before = {n: p.detach().clone() for n, p in method.draft.named_parameters()}
    _fit(method, tmp_path)
    assert all(torch.equal(p, frozen[n]) for n, p in method.named_parameters() if n in frozen)
    assert any(not torch.equal(p, before[n]) for n, p in method.draft.named_parameters())
    assert set(method.parameter_groups()) == {"generator"}


class _DraftAtStart(Callback):
    def on_train_start(self, trainer, method) -> None:
        self.q = method.draft.transformer.blocks[0].attn1.to_q.weight.detach().clone()
        layer = method.transformer.blocks[method.draft.kept[0]].attn1.to_q
        scale = method.lora.alpha / method.lora.rank
        self.merged = (
            (layer.base_layer.weight + scale * layer.lora_B["base"].weight @ layer.lora_A["base"].weight)
            .detach()
            .clone()
        )


def test_the_stage_sequence_latent_pixel_draft_with_init_from(tmp_path):
    latent = PSSR(preset="tiny", learning_rate=1e-2)
    trainer = _fit(latent, tmp_path / "latent")
    trainer.save_checkpoint(tmp_path / "latent.ckpt")
    assert set(latent.parameter_groups()) == {"generator", "fake_score", "discriminator"}
    pixel = PSSR(
        preset="tiny", stage="pixel", pixel={"perceptual": "tiny"}, learning_rate=1e-2,
        init_from=str(tmp_path / "latent.ckpt"), init_from_exclude=("*.fake.*", "discriminator.*"),
    )  # fmt: skip
    trainer = _fit(pixel, tmp_path / "pixel")
    trainer.save_checkpoint(tmp_path / "pixel.ckpt")
    draft = PSSR(
        preset="tiny", stage="draft", pixel={"perceptual": "tiny"},
        init_from=str(tmp_path / "pixel.ckpt"), init_from_exclude=("draft.*",),
    )  # fmt: skip
    probe = _DraftAtStart()
    _fit(draft, tmp_path / "draft", callbacks=[probe])
    # the draft started from the pixel stage's base (its LoRA is not zero any more), merged
    torch.testing.assert_close(probe.q, probe.merged)
    pixel_lora = torch.load(tmp_path / "pixel.ckpt", weights_only=True)["state_dict"]
    key = f"transformer.blocks.{draft.draft.kept[0]}.attn1.to_q.lora_B.base.weight"
    assert pixel_lora[key].abs().sum() > 0 and torch.equal(draft.state_dict()[key], pixel_lora[key])


def test_a_draft_stage_checkpoint_keeps_the_frozen_base_adapter(tmp_path):
    method = PSSR(preset="tiny", stage="draft", losses={"pixel": 0.0})
    with torch.no_grad():
        for name, p in method.transformer.named_parameters():
            if "lora_B" in name:
                p.add_(1.0)
    trainer = _fit(method, tmp_path)
    trainer.save_checkpoint(tmp_path / "draft.ckpt")
    saved = torch.load(tmp_path / "draft.ckpt", weights_only=True)["state_dict"]
    assert any(".lora_B.base." in k for k in saved)  # frozen in this stage, but trained before: kept
    assert not any(k.startswith("transformer.") and "lora_" not in k for k in saved)  # the frozen Wan is not
    assert any(k.startswith("draft.") for k in saved)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"num_inference_steps": 0}, "num_inference_steps must be >= 1"),
        ({"num_inference_steps": 302}, r"num_inference_steps must be in \[1, 301\]"),
        ({"alpha": 1.5}, r"alpha .* must be in \[0, 1\]"),
        ({"alpha": -0.1}, r"alpha .* must be in \[0, 1\]"),
        ({"frequency_update": "sometimes"}, "frequency_update must be one of every_step, final, off"),
    ],
)
def test_bad_sampling_options_are_config_errors(kwargs, pattern):
    method = PSSR(preset="tiny").eval()
    with pytest.raises(ConfigError, match=pattern):
        method.restore(_lq(), **kwargs)


def test_bad_defaults_are_config_errors():
    with pytest.raises(ConfigError, match="alpha"):
        PSSR(preset="tiny", sampling={"alpha": 2.0})
    with pytest.raises(ConfigError, match="not a whole number of blocks"):
        PSSR(preset="tiny", draft={"pruned": 1, "out_of": 2})


def test_frames_that_are_not_4k_plus_1_are_padded_cropped_back_and_said_once(caplog):
    method = PSSR(preset="tiny").eval()
    with caplog.at_level(logging.INFO):
        out = method.restore(_lq(frames=6))
        again = method.restore(_lq(frames=7))
    assert out.shape[2] == 6 and again.shape[2] == 7
    said = [r for r in caplog.records if "padded to 9" in r.getMessage()]
    assert len(said) == 1 and "6 frames padded to 9" in said[0].getMessage()


def test_a_checkpoint_with_another_draft_size_is_refused():
    two = PSSR(preset="tiny", stage="draft", draft={"pruned": 1, "out_of": 3})
    one = PSSR(preset="tiny", stage="draft")
    with pytest.raises(CheckpointError, match="draft has 2 blocks, this configuration keeps 1"):
        one.load_state_dict(two.state_dict())


# ------------------------------------------------------------------ a Wan2.1 diffusers folder (tiny), the CLI


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    """A tiny Wan2.1-layout diffusers folder: transformer/, vae/, text_encoder/ + tokenizer/ (umT5)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vsr_core.latent import WanCodec
    from vsr_core.testing.tiny_text import WIDTH, write_text_model

    root = tmp_path_factory.mktemp("wan")
    torch.manual_seed(0)
    WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=WIDTH, freq_dim=16, ffn_dim=32, num_layers=3, rope_max_seq_len=64,
    ).save_pretrained(root / "transformer")  # fmt: skip
    AutoencoderKLWan(**WanCodec.presets["tiny"]).save_pretrained(root / "vae")
    write_text_model(root, "umt5")
    return root


def test_a_wan_folder_loads_with_umt5_prompts_and_guidance(wan_folder, tmp_path):
    method = PSSR(preset="tiny-wan", pretrained=str(wan_folder), text={"cache": str(tmp_path / "cache")}).eval()
    assert method.prompt_encoder.mode == "umt5" and method.codec.temporal_factor == 4
    lq = _lq(frames=5)
    with torch.no_grad():
        plain = method.restore(lq, prompt=["a cat"])
        other = method.restore(lq, prompt=["a dog runs"])
        guided = method.restore(lq, prompt=["a cat"], guidance_scale=3.0)
    assert plain.shape == (1, 3, 5, 32, 32)
    assert not torch.allclose(plain, other) and not torch.allclose(plain, guided)
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) >= 3  # the prompts (with the template), cached
    z = method.codec.encode(upsample_frames(lq, 4))
    assert z.shape[2] == 2  # 4k+1 frames -> k+1 latent frames through the causal Wan VAE


def test_a_folder_that_is_not_wan21_names_what_is_missing(wan_folder, tmp_path):
    import shutil

    with pytest.raises(PretrainedError, match="has no 'vae/' folder"):
        PSSR(preset="tiny-wan", pretrained=str(tmp_path))
    shutil.copytree(wan_folder / "vae", tmp_path / "vae")
    with pytest.raises(PretrainedError, match="has no 'transformer/' folder"):
        PSSR(preset="tiny-wan", pretrained=str(tmp_path))
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text('{"_class_name": "CogVideoXTransformer3DModel"}')
    (tmp_path / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    with pytest.raises(
        PretrainedError, match="holds a CogVideoXTransformer3DModel, not Wan2.1's WanTransformer3DModel"
    ):
        PSSR(preset="tiny-wan", pretrained=str(tmp_path))
    with pytest.raises(ConfigError, match="text.encoder=umt5 needs pretrained="):
        PSSR(preset="tiny", text={"encoder": "umt5"})


def _write_video(path, frames: int, size: int = 16) -> None:
    import av
    import numpy as np

    data = np.random.default_rng(0).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height = stream.width = size
        stream.pix_fmt = "yuv420p"
        for img in data:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_vsr_restore_with_a_checkpoint_and_with_its_export_folder(tmp_path, capsys):
    from vsr_core.commands import export as export_command
    from vsr_core.commands import restore as restore_command
    from vsr_core.data.video_io import probe_video

    method = PSSR(preset="tiny")
    trainer = _fit(method, tmp_path / "run")
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    _write_video(tmp_path / "clip.mp4", 40)  # two windows of 33 frames, overlapping
    assert export_command.main([str(tmp_path / "last.ckpt"), "-o", str(tmp_path / "export")]) == 0
    assert {p.name for p in (tmp_path / "export").iterdir()} >= {
        "base.safetensors",
        "draft.safetensors",
        "vsr_method.json",
    }
    for source, out in ((tmp_path / "last.ckpt", "from_ckpt"), (tmp_path / "export", "from_export")):
        args = [
            str(tmp_path / "clip.mp4"),
            "--ckpt",
            str(source),
            "-o",
            str(tmp_path / out),
            "--steps",
            "2",
            "--device",
            "cpu",
        ]
        assert restore_command.main(args) == 0
        info = probe_video(tmp_path / out / "clip.mp4")
        assert (info.frames, info.width, info.height) == (40, 64, 64)
    assert (
        restore_command.main(
            [
                str(tmp_path / "clip.mp4"),
                "--ckpt",
                str(tmp_path / "export"),
                "-o",
                str(tmp_path / "x"),
                "--steps",
                "400",
            ]
        )
        != 0
    )
    capsys.readouterr()
    common = [
        str(tmp_path / "clip.mp4"),
        "--ckpt",
        str(tmp_path / "export"),
        "--steps",
        "2",
        "--device",
        "cpu",
        "--sample",
    ]
    assert restore_command.main([*common, "alpha=1.5", "-o", str(tmp_path / "y")]) != 0  # alpha outside [0, 1]
    assert "alpha" in capsys.readouterr().err and not (tmp_path / "y" / "clip.mp4").exists()
    assert (
        restore_command.main([*common, "alpha=1.0", "--sample", "frequency_update=off", "-o", str(tmp_path / "z")])
        == 0
    )
    assert probe_video(tmp_path / "z" / "clip.mp4").frames == 40


def test_the_engine_fuses_windows_in_pixels_by_position_aware_averaging():
    from vsr_core.inference import EngineOptions, RestoreEngine, implements_latent_protocol

    method = _trained_like(PSSR(preset="tiny"))
    state = method.prepare_window(_lq(frames=5), noise=torch.randn(1, 48, 5, 8, 8))  # the protocol's keyword, unused
    # [B, c, t, h, w]: the tiny codec maps 4x4 pixels of each upsampled frame to 48 channels, frame by frame
    assert state.latents.shape == (1, 48, 5, 8, 8) and state.num_steps == 4
    # The output is the FDU's pixel state, not a decode of the final latents: PS-SR opts out of latent fusion.
    assert method.latent_layout is None and not implements_latent_protocol(method)
    assert (method.native_tile, method.native_tile_overlap) == (
        320,
        32,
    )  # the release's 1280 / 128 output pixels at x4
    video = _lq(frames=40, size=8, seed=3)[0]
    engine = RestoreEngine(method, EngineOptions(sampling={"num_inference_steps": 2}))
    assert not engine.latent
    out = engine.restore_tensor(video)
    first, second = engine.plan(40).windows
    assert (first.start, first.length, second.end) == (0, 33, 40) and second.start < first.end  # 33-frame windows
    with torch.no_grad():
        a = method.restore(video[None, :, first.start : first.end], num_inference_steps=2)[0]
        b = method.restore(video[None, :, second.start : second.end], num_inference_steps=2)[0]
    o = first.end - second.start  # shared frames: the release's linear blend (1 - k/(o-1), k/(o-1))
    assert o == first.overlap_after >= 8
    ramp = torch.arange(o, dtype=torch.float32) / (o - 1)
    expected = torch.cat(
        [
            a[:, : second.start],
            a[:, second.start :] * (1 - ramp)[:, None, None] + b[:, :o] * ramp[:, None, None],
            b[:, o:],
        ],
        dim=1,
    )
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["wavelet", "adain"])
def test_color_fix_is_the_core_fix_against_the_upsampled_input_after_clamping(kind):
    from vsr_core.inference import adain_color_fix, wavelet_color_fix

    fix = {"wavelet": wavelet_color_fix, "adain": adain_color_fix}[kind]
    method = _trained_like(PSSR(preset="tiny"))
    lq = _lq(frames=5)
    with torch.no_grad():
        plain = method.restore(lq, color_fix="none")
        fixed = method.restore(lq, color_fix=kind)
    expected = fix(plain, upsample_frames(lq, 4)).clamp(-1, 1)
    torch.testing.assert_close(fixed, expected)
    assert not torch.allclose(fixed, plain)
