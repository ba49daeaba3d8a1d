"""A tiny "pretrained" Stable Diffusion base for UltraVSR's tiny preset, trained on a CPU in a few minutes.

UltraVSR fine-tunes a *pretrained* SD 2.1 (Sec. 4.1.2): its VAE already reconstructs images and its UNet already
denoises latents. The tiny preset's random VAE and UNet know neither, and learning both from scratch through the
one-step path is what kept the learning check below bicubic. This script is the tiny analogue of SD's
pretraining, on the built-in training sample clips' HQ frames only (no LR input, no degradation, as SD never saw
SR pairs):

1. the VAE (the tiny preset's ``AutoencoderKL``) learns to reconstruct frames (MSE, a tiny KL term); its
   ``scaling_factor`` is then set to ``1 / std`` of its latents, the rule that gave SD its 0.18215;
2. the UNet (the tiny preset's ``UNet2DConditionModel``) learns the standard epsilon-prediction denoising loss on
   those scaled latents under SD 2.1-base's schedule, with the zero text embedding of ``text_encoder=none``.

It writes a diffusers folder (``vae/``, ``unet/``, ``scheduler/``) with ``save_pretrained``, which UltraVSR loads
through the same ``pretrained=`` path as a real SD 2.1 folder:

    python benchmarks/ultravsr_tiny_base.py --out runs/ultravsr-tiny-base
    vsr fit --config plugins/ultravsr/configs/tiny.yaml --model.init_args.pretrained runs/ultravsr-tiny-base
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # in-tree plugin, importable without installation

from ultravsr.presets import get_preset  # noqa: E402
from vsr_core.data import SampleClips, VideoDataModule  # noqa: E402
from vsr_core.diffusion import DDPMSchedule  # noqa: E402
from vsr_core.latent import AutoencoderKLCodec  # noqa: E402

__all__ = ["hq_frames", "pretrain_tiny_base"]

#: SD 2.1-base's scheduler (stabilityai/stable-diffusion-2-1-base/scheduler), as a DDPM scheduler.
SD21_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
}


def hq_frames(crop_size: int, clip_frames: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless batches of HQ training frames ``[batch_size * clip_frames, 3, crop, crop]`` in ``[-1, 1]``."""
    data = VideoDataModule(
        train=SampleClips("train"),
        val=SampleClips("val"),
        clip_frames=clip_frames,
        crop_size=crop_size,
        scale=4,
        degradation="simple",
        batch_size=batch_size,
        num_workers=0,
        persistent_workers=False,
        pin_memory=False,
        seed=seed,
    )
    data.setup("fit")
    while True:
        for batch in data.train_dataloader():
            hq = data.on_after_batch_transfer(batch, 0)["hq"]
            yield hq.transpose(1, 2).flatten(0, 1)


def pretrain_tiny_base(
    out: Path,
    vae_seconds: float = 150.0,
    unet_seconds: float = 60.0,
    learning_rate: float = 2e-3,
    seed: int = 0,
    log_every: int = 50,
    vae_config: dict | None = None,
) -> Path:
    """Train the tiny preset's VAE, then its UNet (wall-time budgets in seconds), and save both to ``out``.

    ``vae_config`` overrides entries of the tiny preset's VAE config (an experiment's knob, e.g. its levels).
    """
    spec = get_preset("tiny")
    torch.manual_seed(seed)
    frames = hq_frames(crop_size=64, clip_frames=4, batch_size=4, seed=seed)

    vae = AutoencoderKL(**AutoencoderKLCodec.preset_config(spec.vae_preset, {**spec.vae_config, **(vae_config or {})}))
    optimizer = torch.optim.Adam(vae.parameters(), lr=learning_rate)
    started, step = time.time(), 0
    while time.time() - started < vae_seconds:
        x = next(frames)
        posterior = vae.encode(x).latent_dist
        reconstruction = vae.decode(posterior.mode()).sample
        mse = F.mse_loss(reconstruction, x)
        loss = mse + 1e-6 * posterior.kl().mean()  # the KL keeps the posterior a distribution, barely weighted
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % log_every == 0:
            print(f"  base VAE step {step}: reconstruction PSNR {10 * torch.log10(4 / mse).item():.2f} dB", flush=True)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        latents = torch.cat([vae.encode(next(frames)).latent_dist.mode() for _ in range(8)])
    scaling = float(1.0 / latents.std())  # SD's rule: unit-variance latents for the diffusion model
    vae.register_to_config(scaling_factor=scaling)

    DDPMScheduler(**SD21_SCHEDULER).save_pretrained(out / "scheduler")
    schedule = DDPMSchedule.from_pretrained(str(out))
    unet = UNet2DConditionModel(**spec.unet)
    optimizer = torch.optim.Adam(unet.parameters(), lr=learning_rate)
    context = torch.zeros(1, spec.text_tokens, spec.unet["cross_attention_dim"])  # text_encoder=none's embedding
    started, step = time.time(), 0
    while time.time() - started < unet_seconds:
        with torch.no_grad():
            z0 = vae.encode(next(frames)).latent_dist.mode() * scaling
        t = schedule.sample_t(z0.shape[0])
        noise = torch.randn_like(z0)
        prediction = unet(
            schedule.add_noise(z0, noise, t), schedule.model_timestep(t), context.expand(len(z0), -1, -1)
        )
        loss = F.mse_loss(prediction.sample, schedule.target(z0, noise, t))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % log_every == 0:
            print(f"  base UNet step {step}: denoising loss {loss.item():.4f}", flush=True)

    vae.save_pretrained(out / "vae")
    unet.save_pretrained(out / "unet")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the diffusers folder to write")
    parser.add_argument("--vae-seconds", type=float, default=150.0)
    parser.add_argument("--unet-seconds", type=float, default=60.0)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pretrain_tiny_base(args.out, args.vae_seconds, args.unet_seconds, args.learning_rate, args.seed)
    print(f"wrote {args.out} (vae/, unet/, scheduler/): UltraVSR(pretrained='{args.out}')")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
