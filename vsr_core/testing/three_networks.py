"""``ThreeNetworkMethod``: a method that trains three networks at once, for tests and as a template.

The shape of PS-SR, UltraVSR and DiffVSR's TE-3DVAE training, in miniature: a generator (what
restores), a *fake score* that learns to denoise the generator's outputs (the VSD/DMD critic), and
a discriminator. Each network has its own optimizer, stepped with ``self.optimize`` in the order
fake score -> discriminator -> generator; the fake score and the discriminator are training-only
modules (built before fit, not exported, not needed to restore). Copy it to start a method with
several networks.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.testing.boring import BoringMethod

__all__ = ["ThreeNetworkMethod"]


def _conv_net(channels_in: int, width: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(channels_in, width, 3, padding=1), nn.SiLU(), nn.Conv3d(width, channels_out, 3, padding=1)
    )


class ThreeNetworkMethod(BoringMethod):
    """Generator + fake score + discriminator under manual optimization; ``restore`` as BoringMethod.

    Losses per batch (``x = G(lq)`` ``[B,3,T,H,W]``, ``n ~ N(0, 1)``, ``x_n = x + sigma n``):

    * fake score ``S``: ``mse(S(x_n.detach()), x.detach())`` (learns the generator's distribution);
    * discriminator ``D``: hinge ``relu(1 - D(hq)) + relu(1 + D(x.detach()))`` (means);
    * generator: ``l1(x, hq) - adversarial_weight * mean D(x) + distill_weight * mse(S(x_n), hq)``.

    Args:
        scale, width: as :class:`BoringMethod` (the generator).
        critic_width: channels of the fake score and the discriminator.
        sigma: noise level of the fake score's input.
        adversarial_weight, distill_weight: weights of the generator's two critic terms.
        **kwargs: the core's arguments (optimizer, lr_scheduler, group_schedules, ...).
    """

    generator_groups: ClassVar[tuple[str, ...]] = ("generator",)
    training_only_modules: ClassVar[tuple[str, ...]] = ("fake_score", "discriminator")
    tiny_init_args: ClassVar[dict[str, Any]] = {"scale": 2, "width": 4, "critic_width": 4}

    def __init__(
        self,
        scale: int = 2,
        width: int = 4,
        critic_width: int = 4,
        sigma: float = 0.5,
        adversarial_weight: float = 0.1,
        distill_weight: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(scale=scale, width=width, **kwargs)
        self.automatic_optimization = False
        self.critic_width = critic_width
        self.sigma = sigma
        self.adversarial_weight = adversarial_weight
        self.distill_weight = distill_weight
        self.fake_score: nn.Module | None = None
        self.discriminator: nn.Module | None = None

    def build_training_modules(self) -> None:
        # Seeded apart from the run's global RNG, so building them never shifts the generator's init.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            self.fake_score = _conv_net(3, self.critic_width, 3)
            self.discriminator = _conv_net(3, self.critic_width, 1)
        self.fake_score.to(self.device)
        self.discriminator.to(self.device)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        self.ensure_training_modules()
        return {
            "generator": list(self.net.parameters()),
            "fake_score": list(self.fake_score.parameters()),
            "discriminator": list(self.discriminator.parameters()),
        }

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        hq = batch["hq"]
        noise = torch.randn(hq.shape, generator=self.step_generator(), device=hq.device)
        x = self.restore(batch["lq"])
        x_noisy = x + self.sigma * noise

        losses = {
            "fake_score": self.optimize(
                "fake_score", lambda: F.mse_loss(self.fake_score(x_noisy.detach()), x.detach())
            ),
            "discriminator": self.optimize(
                "discriminator",
                lambda: F.relu(1 - self.discriminator(hq)).mean() + F.relu(1 + self.discriminator(x.detach())).mean(),
            ),
        }

        def generator_loss() -> torch.Tensor:
            adversarial = -self.discriminator(x).mean()
            distill = F.mse_loss(self.fake_score(x_noisy), hq)
            return F.l1_loss(x, hq) + self.adversarial_weight * adversarial + self.distill_weight * distill

        losses["generator"] = self.optimize("generator", generator_loss)
        self.log_losses({name: value for name, value in losses.items() if value is not None})
