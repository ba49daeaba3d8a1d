"""``DiffVSR``: the SD x4 upscaler inflated to video (Li et al., DiffVSR, ICCV 2025) as a :class:`VSRMethod`.

Training (Sec. 3.1, Eq. 1): the HQ clip is encoded to latents ``z`` (LR-sized: VAE factor 4 = scale 4), the LR clip
is noised at a level ``tau`` (``x_tau = alpha_tau x + sigma_tau eps'``, the upscaler's low-resolution schedule) and
concatenated to ``z_t = alpha_t z + sigma_t eps``; the inflated UNet predicts ``v_t = alpha_t eps - sigma_t z`` with
text and ``tau`` as conditions; the loss is ``||v_t - f(z_t, x_tau; c, t)||^2``. What trains is the stage's choice
(:mod:`diffvsr.stages`, Sec. 3.2).

Inference, one window (``restore`` = :meth:`DiffVSR.prepare_window` -> :meth:`DiffVSR.denoise_step` x N ->
:meth:`DiffVSR.finish_window`): noise the LR window at the sampling level (50), draw the initial latent noise, run
DDIM on the upscaler's grid with classifier-free guidance, decode with the (TE-3D)VAE. Long videos (Sec. 3.3, Eq. 2):
the engine's latent window protocol with :class:`~diffvsr.ilt_latent.ILTLatentFusion` (Eq. 2 at every DDIM step,
``make_latent_fusion``; default), or :class:`~diffvsr.ilt.ILTFusion` (the release's blend after each window's
solver, ``make_window_fusion``; ``ilt.fuse: after_denoising`` or ``vsr restore --fusion pixel``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.unets.unet_2d_blocks import (
    CrossAttnDownBlock2D,
    CrossAttnUpBlock2D,
    DownBlock2D,
    UNetMidBlock2DCrossAttn,
    UpBlock2D,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from lightning.pytorch.utilities import rank_zero_info

from diffvsr.codecs import VAEKind, build_codec
from diffvsr.ilt import ILTFusion
from diffvsr.ilt_latent import ILTLatentFusion, lr_noise_like
from diffvsr.options import DiffVSRSampling, ILTOptions, TemporalLayers, TextOptions, TrainingOptions
from diffvsr.presets import Preset, unet_config
from diffvsr.stages import apply_trainable, trainable_counts
from diffvsr.text import build_prompt_encoder
from diffvsr.unet import inflate_unet, temporal_parameter_names, video_unet_forward
from diffvsr.weights import load_release_unet
from vsr_core.diffusion import DDPMSchedule, LowResNoiser
from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.inference import COLOR_FIXES, sample_window
from vsr_core.method import VSRMethod
from vsr_core.pretrained import as_dtype, resolve_pretrained
from vsr_core.text import cfg_active, cfg_batch, cfg_split_combine
from vsr_core.video_ops import pad_spatial, padded_size, upsample_frames

__all__ = ["DiffVSR", "WindowState"]

BetaSchedule = Literal["linear", "scaled_linear"]


@dataclass
class WindowState:
    """Everything :meth:`DiffVSR.denoise_step` and :meth:`DiffVSR.finish_window` need for one window.

    Tensors: ``low_res`` ``[B', 3, T, h, w]`` (the noised LR window, doubled for guidance), ``noise_levels`` ``[B']``,
    ``text`` ``[B', L, D]`` (``B' = 2B`` with guidance: ``[negative; positive]``), ``latents`` / ``latent_noise``
    ``[B, c, T, h, w]`` (the initial sample and the noise it came from), ``lr_noise`` ``[B, 3, T, h, w]``,
    ``lq`` ``[B, 3, T, h, w]`` (the LR window; upsampled at decode as the colour reference: the engine keeps every
    tile's state alive at once, so a state holds the LR, not its ``scale²``-times larger upsampling).
    """

    sampler: SchedulerMixin
    timesteps: list[int]
    low_res: torch.Tensor
    noise_levels: torch.Tensor
    text: torch.Tensor
    guidance_scale: float
    guided: bool
    latents: torch.Tensor
    latent_noise: torch.Tensor
    lr_noise: torch.Tensor
    lq: torch.Tensor
    color_fix: str
    eta: float
    generator: torch.Generator | None
    output_size: tuple[int, int]

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)


def _seeded(build, seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class DiffVSR(VSRMethod):
    """DiffVSR: video super-resolution x4 with the SD x4 upscaler inflated to video, PLS, ILT
    (docs/methods/diffvsr.md).

    ``restore(lq [B,3,T,h,w], prompt)`` -> ``[B,3,T,4h,4w]`` in ``[-1, 1]`` for one window (any ``T``; 8 frames per
    window at full size, longer videos through ILT). Components: ``unet`` (inflated ``UNet2DConditionModel``),
    ``codec`` (TE-3DVAE by default), ``prompt_encoder``, ``schedule`` (v-prediction DDPM), ``noiser`` (LR noise level).

    Args:
        scale: upscaling factor; the codec's spatial factor must equal it (4 for the upscaler's VAEs).
        preset: ``tiny`` (CPU) or ``real`` (the SD x4 upscaler's sizes; random unless ``pretrained``).
        pretrained: a local ``stabilityai/stable-diffusion-x4-upscaler`` diffusers folder (``unet/``, ``vae/``,
            ``scheduler/``, ``low_res_scheduler/``, and ``text_encoder/`` + ``tokenizer/`` for ``text.encoder=clip``).
        release_unet: the authors' UNet3D checkpoint (``DiffVSR_UNet.pt``: ``preset=real`` with every temporal layer,
        and
            ``temporal_layers.group_norm=clip`` to compute what the release computes; ``configs/release.yaml``).
        vae: ``te-3dvae`` (default), ``3dvae``, ``2dvae`` (Table 5, v2), or the weight-free ``pixel-unshuffle`` (48
            channels, exact) or ``half-unshuffle`` (12 channels, the tiny CPU configuration's; :mod:`diffvsr.codecs`).
        vae_weights: the release's ``TE-3DVAE.pt``, or a folder with ``vae/`` (a ``diffvsr.TE3DVAE`` export); for
            ``2dvae`` another folder than ``pretrained``. ``None``: random (``te-3dvae``/``3dvae``) or
            ``pretrained/vae``.
        vae_decode_chunk: frames the temporal decoder sees at once (the release decodes chunks of 4).
        beta_schedule: betas of the diffusion schedule: ``linear`` (the release forces it on the upscaler's scheduler
            config, training and sampling) or ``scaled_linear`` (the upscaler's own config).
        temporal_layers, sampling, ilt, text, training: option groups (:mod:`diffvsr.options`).
        torch_dtype: dtype of the frozen codec weights.
    """

    fsdp_block_classes = (DownBlock2D, CrossAttnDownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D)
    # The release's tiles (inference_tile.py: 256 LR px, overlap 64); it tiles only frames above 400x400, the engine
    # every frame above one tile.
    native_tile: ClassVar[int | None] = 256
    native_tile_overlap: ClassVar[int] = 64
    tiny_init_args: ClassVar[dict[str, Any]] = {"preset": "tiny", "sampling": {"num_inference_steps": 2}}

    def __init__(
        self,
        scale: int = 4,
        preset: Preset = "tiny",
        pretrained: str | None = None,
        release_unet: str | None = None,
        vae: VAEKind = "te-3dvae",
        vae_weights: str | None = None,
        vae_decode_chunk: int = 4,
        beta_schedule: BetaSchedule = "linear",
        temporal_layers: TemporalLayers = TemporalLayers(),
        sampling: DiffVSRSampling = DiffVSRSampling(),
        ilt: ILTOptions = ILTOptions(),
        text: TextOptions = TextOptions(),
        training: TrainingOptions = TrainingOptions(),
        torch_dtype: str | None = None,
        learning_rate: float = 1e-4,
        **kwargs: Any,
    ) -> None:
        super().__init__(scale=scale, learning_rate=learning_rate, **kwargs)
        self.temporal_layers = TemporalLayers.coerce(temporal_layers)
        self.sampling = DiffVSRSampling.coerce(sampling)
        self.ilt = ILTOptions.coerce(ilt)
        self.text_options = TextOptions.coerce(text)
        self.training_options = TrainingOptions.coerce(training)
        if preset not in ("tiny", "real"):
            raise ConfigError(f"preset must be tiny or real, got {preset!r}")
        if beta_schedule not in ("linear", "scaled_linear"):
            raise ConfigError(f"beta_schedule must be linear or scaled_linear, got {beta_schedule!r}")

        # Schedules: the UNet's (v-prediction; the release forces linear betas) and the LR noise level's.
        overrides = {"beta_schedule": beta_schedule}
        if pretrained:
            resolve_pretrained(pretrained, "unet")  # one line naming a missing component, in the order they load
            self.schedule = DDPMSchedule.from_pretrained(pretrained, **overrides)
            low_res = resolve_pretrained(pretrained, "low_res_scheduler")
            self.noiser = LowResNoiser(max_noise_level=350, config=str(low_res))
        else:
            self.schedule = DDPMSchedule.preset("sd-x4-upscaler", **overrides)
            self.noiser = LowResNoiser(max_noise_level=350)
        if self.schedule.prediction_type != "v_prediction":
            raise PretrainedError(
                f"{pretrained}/scheduler is not a v-prediction schedule; DiffVSR needs the SD x4 upscaler's"
            )

        self.codec = build_codec(
            vae, preset, scale, pretrained=pretrained, vae_weights=vae_weights, decode_chunk=vae_decode_chunk
        )
        if torch_dtype:
            self.codec.to(as_dtype(torch_dtype))
        if self.codec.spatial_factor != scale:
            raise ConfigError(
                f"the {vae} codec downsamples by {self.codec.spatial_factor}, but scale is {scale}: "
                "the SD x4 upscaler "
                "design keeps latents at the LR size (vae factor = scale)"
            )

        self.unet = self._build_unet(preset, pretrained)
        inflate_unet(self.unet, self.temporal_layers)
        if release_unet:
            load_release_unet(self.unet, release_unet)
        apply_trainable(self.unet, self.training_options.trainable)
        self.prompt_encoder = build_prompt_encoder(self.text_options, pretrained, self.unet.config.cross_attention_dim)

        # Frozen weights that init arguments rebuild stay out of checkpoints: the codec's (files or a fixed seed),
        # the UNet's frozen weights when they come from files -- unless init_from replaced some (on_fit_start).
        self.mark_rebuildable(self.codec)
        if pretrained or release_unet:
            self.mark_rebuildable(self.unet)
        self._kept_frozen: set[str] = set()

    # ------------------------------------------------------------------ construction

    def _build_unet(self, preset: str, pretrained: str | None) -> UNet2DConditionModel:
        latent = self.codec.latent_channels
        if not pretrained:
            return _seeded(lambda: UNet2DConditionModel(**unet_config(preset, latent)))
        folder = resolve_pretrained(pretrained, "unet")
        unet = UNet2DConditionModel.from_pretrained(folder)
        cfg = unet.config
        if cfg.in_channels != latent + 3 or cfg.out_channels != latent or cfg.num_class_embeds is None:
            raise PretrainedError(
                f"{folder} is not an SD x4 upscaler UNet (in_channels {cfg.in_channels}, "
                f"out_channels {cfg.out_channels}, num_class_embeds {cfg.num_class_embeds}; "
                f"expected {latent + 3}, {latent} and a noise-level embedding)"
            )
        return unet

    # ------------------------------------------------------------------ size rules and long videos

    @property
    def temporal_window(self) -> int:  # type: ignore[override]
        return self.ilt.window

    @property
    def temporal_overlap(self) -> int:
        """Frames shared by consecutive windows (ILT's ``P``); read by engines that know per-method overlaps."""
        return self.ilt.overlap

    @property
    def spatial_multiple(self) -> int:  # type: ignore[override]
        # The UNet halves the latent (= LR) size once per down block but the last.
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def make_window_fusion(self) -> ILTFusion:
        """The release's ILT (Sec. 3.3: Eq. 2 once, after each window's solver) for the engine's pixel path."""
        return ILTFusion(weights_rule=self.ilt.weights, noise=self.ilt.noise)

    def make_latent_fusion(self) -> ILTLatentFusion:
        """ILT at every DDIM step (Sec. 3.3, Eq. 2) for the engine's latent window protocol (one per video).

        ``prepare_window`` asks it for each window's rescheduled initial noise while the video runs.
        """
        self._latent_fusion = ILTLatentFusion(weights_rule=self.ilt.weights, noise=self.ilt.noise)
        return self._latent_fusion

    @property
    def latent_layout(self) -> Any:
        """The codec's layout (latents at the LR size, one per frame); ``None`` with ``ilt.fuse: after_denoising``,
        which sends long videos through :meth:`make_window_fusion` instead."""
        return None if self.ilt.fuse == "after_denoising" else super().latent_layout

    def parameter_counts(self) -> dict[str, int]:
        """``{"image_unet", "temporal_layers", "codec"}`` parameter counts (all, trainable or not)."""
        temporal = temporal_parameter_names(self.unet)
        named = dict(self.unet.named_parameters())
        temporal_count = sum(named[n].numel() for n in temporal)
        return {
            "image_unet": sum(p.numel() for p in named.values()) - temporal_count,
            "temporal_layers": temporal_count,
            "codec": sum(p.numel() for p in self.codec.parameters()),
        }

    def _fingerprints(self, keys: set[str]) -> dict[str, tuple[float, float]]:
        state = self.state_dict(keep_vars=True)
        return {k: (state[k].double().sum().item(), state[k].double().abs().sum().item()) for k in keys if k in state}

    def rebuildable_state_keys(self) -> set[str]:
        """Frozen weights rebuilt from files, less those a stage's ``init_from`` replaced (they must be saved)."""
        return super().rebuildable_state_keys() - self._kept_frozen

    def on_fit_start(self) -> None:
        # init_from (applied by the core here) may bring frozen weights that pretrained= would not rebuild.
        frozen = super().rebuildable_state_keys() if self.init_from else set()
        before = self._fingerprints(frozen)
        super().on_fit_start()
        if before:
            after = self._fingerprints(frozen)
            self._kept_frozen = {k for k in before if after[k] != before[k]}
        counts, trainable = self.parameter_counts(), trainable_counts(self.unet)
        rank_zero_info(
            f"DiffVSR: image UNet {counts['image_unet'] / 1e6:.2f}M, "
            f"temporal layers {counts['temporal_layers'] / 1e6:.2f}M, "
            f"codec {counts['codec'] / 1e6:.2f}M; training {self.training_options.trainable} "
            f"({trainable['temporal'] / 1e6:.2f}M temporal + {trainable['spatial'] / 1e6:.2f}M spatial)"
        )

    # ------------------------------------------------------------------ training (Sec. 3.1, Eq. 1)

    def _text(self, prompts: list[str] | None, batch: int, like: torch.Tensor, suffix: str = "") -> torch.Tensor:
        return self.prompt_encoder(prompts, batch, like.device, like.dtype, suffix)

    def training_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{"v": ||v_t - f(z_t, x_tau; c, t)||^2}`` (Eq. 1): ``hq`` ``[B,3,T,H,W]``, ``lq`` ``[B,3,T,H/4,W/4]``."""
        hq, lq = batch["hq"], batch["lq"]
        b = hq.shape[0]
        with torch.no_grad():
            z0 = self.codec.encode(hq).float()
        if z0.shape[-2:] != lq.shape[-2:]:
            raise ConfigError(f"latents {list(z0.shape[-2:])} and LR frames {list(lq.shape[-2:])} differ in size")
        generator = self.step_generator(device=hq.device)
        if self.training_options.lr_noise == "uniform":
            levels = torch.randint(
                0, self.training_options.max_noise_level, (b,), generator=generator, device=hq.device
            )
        else:
            levels = torch.full((b,), self.sampling.noise_level, device=hq.device, dtype=torch.long)
        lr_noise = torch.randn(lq.shape, generator=generator, device=hq.device, dtype=lq.dtype)
        low_res, labels = self.noiser(lq, levels, noise=lr_noise)  # x_tau and the noise-level condition
        t = self.schedule.sample_t(b, generator=generator, device=hq.device)
        noise = torch.randn(z0.shape, generator=generator, device=hq.device, dtype=z0.dtype)
        z_t = self.schedule.add_noise(z0, noise, t)
        target = self.schedule.target(z0, noise, t)  # v_t = alpha_t eps - sigma_t z
        text = self._text(batch.get("prompt"), b, z0)
        v = video_unet_forward(self.unet, z_t, low_res, self.schedule.model_timestep(t), text, labels)
        return {"v": F.mse_loss(v.float(), target.float())}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.training_losses(batch)
        self.log_losses(losses, total=losses["v"])
        return losses["v"]

    # ------------------------------------------------------------------ inference: one window in three steps

    def draw_lr_noise(self, lq: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B, 3, T, h', w']`` noise for the LR window (padded to :attr:`spatial_multiple`), from ``generator``."""
        h, w = (padded_size(s, self.spatial_multiple) for s in lq.shape[-2:])
        device = generator.device if generator is not None else lq.device
        return torch.randn((*lq.shape[:3], h, w), generator=generator, device=device, dtype=lq.dtype).to(lq.device)

    @torch.no_grad()
    def prepare_window(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        noise_level: int | None = None,
        color_fix: str | None = None,
        eta: float | None = None,
        noise: torch.Tensor | None = None,
        lr_noise: torch.Tensor | None = None,
    ) -> WindowState:
        """Conditioning and initial latents of one LR window ``[B, 3, T, h, w]`` (``restore``'s options; module doc).

        ``noise`` ``[B, c, T, h', w']`` (the initial latent noise) / ``lr_noise`` ``[B, 3, T, h', w']`` replace the
        draws from ``generator``; ``h', w'`` are ``h, w`` padded to :attr:`spatial_multiple`. Without either, the LR
        noise is drawn first, then the latent noise (the release's order). With ``noise`` but no ``lr_noise`` (the
        engine's shared timeline noise), the LR noise is :func:`~diffvsr.ilt_latent.lr_noise_like` of it, so windows
        and tiles sharing a frame share its LR noise too; while the engine runs a video with this method's
        :meth:`make_latent_fusion`, ``noise`` is then rescheduled by it (Sec. 3.3).
        """
        given = {
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "noise_level": noise_level,
            "color_fix": color_fix,
            "eta": eta,
        }
        options = self.sampling.replace(**{k: v for k, v in given.items() if v is not None})
        b, _, t, h, w = lq.shape
        m = self.spatial_multiple
        padded = pad_spatial(lq, padded_size(h, m), padded_size(w, m))
        if lr_noise is None:
            lr_noise = self.draw_lr_noise(lq, generator) if noise is None else lr_noise_like(noise)
        fusion = getattr(self, "_latent_fusion", None)
        if noise is not None and fusion is not None and fusion.active:
            noise = fusion.initial_noise(noise, generator)
        levels = self.noiser.noise_levels(options.noise_level, b, lq.device)
        low_res, labels = self.noiser(padded, levels, noise=lr_noise.to(padded))
        latent_shape = (b, self.codec.latent_channels, t, *padded.shape[-2:])
        if noise is None:
            device = generator.device if generator is not None else lq.device
            noise = torch.randn(latent_shape, generator=generator, device=device).to(lq.device)
        elif tuple(noise.shape) != latent_shape:
            raise ValueError(f"noise {list(noise.shape)} does not fit the window's latents {list(latent_shape)}")
        noise = noise.to(device=lq.device, dtype=torch.float32)

        sampler = self.schedule.make_sampler("ddim", num_inference_steps=options.num_inference_steps)
        text = self._text(prompt, b, low_res, suffix=self.text_options.prompt_suffix)
        guided = cfg_active(options.guidance_scale) and self.prompt_encoder.mode != "none"
        if guided:  # one batched pass: [negative; positive]
            text = cfg_batch(self.prompt_encoder.negative_embeddings(b, low_res.device, low_res.dtype), text)
            low_res, labels = cfg_batch(low_res, low_res), cfg_batch(labels, labels)
        return WindowState(
            sampler=sampler,
            timesteps=[int(s) for s in sampler.timesteps],
            low_res=low_res,
            noise_levels=labels,
            text=text,
            guidance_scale=float(options.guidance_scale),
            guided=guided,
            latents=noise * sampler.init_noise_sigma,
            latent_noise=noise,
            lr_noise=lr_noise,
            lq=lq,
            color_fix=options.color_fix,
            eta=float(options.eta),
            generator=generator,
            output_size=(h * self.scale, w * self.scale),
        )

    @torch.no_grad()
    def denoise_step(
        self, state: WindowState, i: int, latents: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One DDIM step at ``state.timesteps[i]``: latents ``[B, c, T, h', w']`` -> the next ones (guided v).

        ``noise`` (like ``latents``): the step's noise when ``eta > 0`` (the engine's shared slice); else drawn from
        the generator.
        """
        t = state.timesteps[i]
        x = state.sampler.scale_model_input(latents, t)
        batch = state.text.shape[0]
        x = cfg_batch(x, x) if state.guided else x
        timestep = torch.full((batch,), t, device=x.device, dtype=torch.long)
        v = video_unet_forward(
            self.unet, x.to(self.unet.dtype), state.low_res, timestep, state.text, state.noise_levels
        )
        v = cfg_split_combine(v, state.guidance_scale) if state.guided else v
        extra = {"variance_noise": noise.float()} if noise is not None and state.eta > 0 else {}
        step = state.sampler.step(v.float(), t, latents.float(), eta=state.eta, generator=state.generator, **extra)
        return step.prev_sample.to(latents.dtype)

    @torch.no_grad()
    def finish_window(self, state: WindowState, latents: torch.Tensor) -> torch.Tensor:
        """Decode ``latents`` ``[B, c, T, h', w']`` to ``[B, 3, T, 4h, 4w]`` in ``[-1, 1]`` (cropped, colour-fixed)."""
        dtype = next((p.dtype for p in self.codec.parameters()), latents.dtype)
        video = self.codec.decode(latents.to(dtype)).float()
        height, width = state.output_size
        video = video[..., :height, :width]
        color_fix = COLOR_FIXES.get(state.color_fix)  # "none": no fix
        if color_fix is not None:
            video = color_fix(video, upsample_frames(state.lq, self.scale))
        return video.clamp(-1, 1)

    @torch.no_grad()
    def restore(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        noise_level: int | None = None,
        color_fix: Literal["none", "wavelet", "adain"] | None = None,
        eta: float | None = None,
    ) -> torch.Tensor:
        """Restore one window ``[B, 3, T, h, w]`` -> ``[B, 3, T, 4h, 4w]`` (``None`` options:
        :class:`DiffVSRSampling`).

        Args:
            num_inference_steps: DDIM steps (50).
            guidance_scale: classifier-free guidance (5; needs a text encoder, else one conditional pass).
            generator: the source of the LR noise and the initial latent noise (drawn on its device).
            noise_level: the LR noise level in ``[0, 350]`` (50).
            color_fix: ``none`` / ``wavelet`` / ``adain`` against the upsampled input.
            eta: DDIM eta (0).
        """
        return sample_window(
            self,
            lq,
            prompt,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
            noise_level=noise_level,
            color_fix=color_fix,
            eta=eta,
        )
