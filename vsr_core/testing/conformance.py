"""A reusable pytest suite that checks a method honours the :class:`VSRMethod` contract.

A plugin's tests subclass :class:`MethodConformance` and say which class and tiny arguments to use::

    from vsr_core.testing import MethodConformance
    from mymethod import MyMethod

    class TestMyMethodConformance(MethodConformance):
        method_class = MyMethod
        init_args = {"scale": 4, "width": 8}
        config_file = "plugins/mymethod/configs/tiny.yaml"   # optional: also checked through the CLI

pytest then collects every ``test_*`` method below for that class. Each test builds the method from
``init_args``, so keep them tiny: the whole suite should run in seconds on a CPU.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from lightning.pytorch import Trainer

from vsr_core.checkpoint import load_method
from vsr_core.frames import frames_at_least
from vsr_core.method import VSRMethod
from vsr_core.testing.synthetic import SyntheticDataModule

__all__ = ["conformance_suite", "MethodConformance", "tiny_trainer"]


def tiny_trainer(root: Path, **overrides: Any) -> Trainer:
    """A CPU trainer with nothing but what a conformance test needs."""
    options: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        max_steps=2,
        default_root_dir=str(root),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
    )
    options.update(overrides)
    return Trainer(**options)


class MethodConformance:
    """Contract tests for one method class. Subclass and set the class attributes below."""

    method_class: ClassVar[type[VSRMethod]]
    #: init arguments of the method under test; ``None`` takes the class's ``tiny_init_args``.
    init_args: ClassVar[dict[str, Any] | None] = None
    config_file: ClassVar[str | None] = None
    lq_size: ClassVar[int] = 8
    min_frames: ClassVar[int] = 3
    batch_size: ClassVar[int] = 2
    restore_kwargs: ClassVar[dict[str, Any]] = {}

    # ------------------------------------------------------------------ helpers

    @classmethod
    def method_args(cls) -> dict[str, Any]:
        return dict(cls.method_class.tiny_init_args if cls.init_args is None else cls.init_args)

    def make_method(self) -> VSRMethod:
        torch.manual_seed(0)
        return self.method_class(**self.method_args())

    def make_datamodule(self, method: VSRMethod) -> SyntheticDataModule:
        frames = frames_at_least(self.min_frames, method.frames_rule)
        return SyntheticDataModule(
            num_clips=2 * self.batch_size,
            frames=frames,
            size=self.lq_size * method.scale,
            scale=method.scale,
            batch_size=self.batch_size,
        )

    def make_batch(self, method: VSRMethod) -> dict[str, Any]:
        dm = self.make_datamodule(method)
        return next(iter(dm.train_dataloader()))

    # ------------------------------------------------------------------ tests

    def test_is_a_concrete_vsr_method(self) -> None:
        assert issubclass(self.method_class, VSRMethod)
        method = self.make_method()
        assert method.scale >= 1
        multiple, remainder = method.frames_rule
        assert multiple >= 1 and 0 <= remainder
        assert (self.method_class.__doc__ or "").strip(), "a method class needs a docstring (shown by `vsr plugins`)"

    def test_restore_takes_the_sampling_vocabulary(self) -> None:
        from vsr_core.method import STANDARD_SAMPLING_ARGUMENTS

        arguments = self.method_class.sampling_arguments()
        missing = [name for name in STANDARD_SAMPLING_ARGUMENTS if name not in arguments]
        assert not missing, f"{self.method_class.__name__}.restore lacks the standard sampling arguments {missing}"
        method = self.make_method().eval()
        batch = self.make_batch(method)
        with torch.no_grad():
            first = method.restore(batch["lq"], generator=torch.Generator().manual_seed(3), **self.restore_kwargs)
            second = method.restore(batch["lq"], generator=torch.Generator().manual_seed(3), **self.restore_kwargs)
        torch.testing.assert_close(first, second, msg="restore with the same generator seed must repeat itself")

    def test_restore_shape_scale_and_range(self) -> None:
        method = self.make_method().eval()
        batch = self.make_batch(method)
        with torch.no_grad():
            out = method.restore(batch["lq"], prompt=batch["prompt"], **self.restore_kwargs)
        b, c, t, h, w = batch["lq"].shape
        assert out.shape == (b, c, t, h * method.scale, w * method.scale)
        assert torch.isfinite(out).all()
        assert out.min() >= -1.0 - 1e-4 and out.max() <= 1.0 + 1e-4

    def test_fit_steps_update_trainable_parameters(self, tmp_path: Path) -> None:
        method = self.make_method()
        before = {n: p.detach().clone() for n, p in method.named_parameters() if p.requires_grad}
        assert before, "the method has no trainable parameters"
        trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
        trainer.fit(method, datamodule=self.make_datamodule(method))
        assert trainer.global_step >= 2 or not method.automatic_optimization
        changed = [n for n, p in method.named_parameters() if n in before and not torch.equal(p.detach(), before[n])]
        assert changed, "two training steps changed no trainable parameter"
        for name, value in trainer.callback_metrics.items():
            if name.startswith("train/"):
                assert torch.isfinite(value), f"{name} is not finite"

    def test_validate_logs_metrics(self, tmp_path: Path) -> None:
        method = self.make_method()
        trainer = tiny_trainer(tmp_path)
        results = trainer.validate(method, datamodule=self.make_datamodule(method), verbose=False)
        assert "val/psnr" in results[0] and "val/ssim" in results[0]
        assert math.isfinite(results[0]["val/psnr"]) and -1.0 <= results[0]["val/ssim"] <= 1.0

    def test_checkpoint_round_trip(self, tmp_path: Path) -> None:
        method = self.make_method()
        dm = self.make_datamodule(method)
        trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
        trainer.fit(method, datamodule=dm)
        path = tmp_path / "method.ckpt"
        trainer.save_checkpoint(path)
        loaded = load_method(path)
        assert type(loaded) is type(method)
        batch = self.make_batch(method)
        method.eval()
        with torch.no_grad():
            torch.manual_seed(0)
            expected = method.restore(batch["lq"], prompt=batch["prompt"], **self.restore_kwargs)
            torch.manual_seed(0)
            actual = loaded.restore(batch["lq"], prompt=batch["prompt"], **self.restore_kwargs)
        torch.testing.assert_close(actual, expected)

    def test_export_round_trip(self, tmp_path: Path) -> None:
        """``export_method`` -> ``load_method(folder)`` restores exactly what the method restores."""
        from vsr_core.export import export_method

        method = self.make_method()
        with torch.no_grad():  # move every trainable weight off its initial value, so none may be dropped
            generator = torch.Generator().manual_seed(1)
            for parameter in method.parameters():
                if parameter.requires_grad and parameter.is_floating_point():
                    parameter.add_(torch.randn(parameter.shape, generator=generator).to(parameter) * 1e-2)
        export_method(method, tmp_path / "export")
        loaded = load_method(tmp_path / "export")
        assert type(loaded) is type(method) and not loaded.training
        batch = self.make_batch(method)
        method.eval()
        with torch.no_grad():
            torch.manual_seed(0)
            expected = method.restore(batch["lq"], prompt=batch["prompt"], **self.restore_kwargs)
            torch.manual_seed(0)
            actual = loaded.restore(batch["lq"], prompt=batch["prompt"], **self.restore_kwargs)
        torch.testing.assert_close(actual, expected)

    # ------------------------------------------------------------------ training machinery (one or several networks)

    def _fit(self, root: Path, method: VSRMethod, steps: int, **trainer_args: Any) -> Trainer:
        trainer = tiny_trainer(root, max_steps=steps, limit_val_batches=0, **trainer_args)
        trainer.fit(method, datamodule=self.make_datamodule(method))
        return trainer

    def _due_steps(self, method: VSRMethod, group: str, steps: int) -> int:
        schedule = method._stepper.schedules.get(group)
        return sum(1 for step in range(steps) if schedule is None or schedule.is_due(step))

    def _steps_covering_schedules(self, method: VSRMethod) -> int:
        schedules = method._stepper.schedules.values()
        return 2 + max((s.start + s.every for s in schedules), default=0)

    def test_every_parameter_group_trains(self, tmp_path: Path) -> None:
        method = self.make_method()
        method.ensure_training_modules()
        groups = {name: list(params) for name, params in method.parameter_groups().items()}
        names = {id(p): n for n, p in method.named_parameters()}
        before = {name: [p.detach().clone() for p in _params(group)] for name, group in groups.items()}
        self._fit(tmp_path, method, self._steps_covering_schedules(method))
        for name, group in groups.items():
            after = _params(group)
            assert any(not torch.equal(a.detach(), b) for a, b in zip(after, before[name])), (
                f"parameter group '{name}' did not change (e.g. {names.get(id(after[0]), '?')})"
            )

    def test_each_lr_scheduler_steps_once_per_update(self, tmp_path: Path) -> None:
        def halve(optimizer):
            return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)

        torch.manual_seed(0)
        method = self.method_class(**{**self.method_args(), "lr_scheduler": halve})
        steps = 2
        self._fit(tmp_path, method, steps)
        optimizers = method.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for (name, _), optimizer in zip(method.parameter_groups().items(), optimizers):
            base = optimizer.param_groups[0]["initial_lr"]
            expected = base * 0.5 ** self._due_steps(method, name, steps)
            assert optimizer.param_groups[0]["lr"] == pytest.approx(expected), f"the scheduler of '{name}'"

    def test_gradient_clipping_bounds_the_norm(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        norms: list[float] = []
        original = torch.optim.AdamW.step

        def step(optimizer, closure=None):
            def measured():
                out = closure() if closure is not None else None
                grads = [p.grad.norm() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
                if grads:
                    norms.append(torch.linalg.vector_norm(torch.stack(grads)).item())
                return out

            return original(optimizer, measured)

        monkeypatch.setattr(torch.optim.AdamW, "step", step)
        method = self.make_method()
        self._fit(tmp_path, method, 2, gradient_clip_val=1e-4)
        assert norms, "no optimizer step ran"
        assert max(norms) <= 1e-4 * (1 + 1e-3), f"gradient norms {norms} exceed --trainer.gradient_clip_val"

    def test_resume_is_exact(self, tmp_path: Path) -> None:
        """2 steps + resume 2 equals 4 straight, for every network (weights, optimizers, schedules)."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        def run(root: Path, ckpt: Path | None) -> VSRMethod:
            method = self.make_method()
            saver = ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=2, save_top_k=-1)
            trainer = tiny_trainer(
                root, max_steps=4, limit_val_batches=0, enable_checkpointing=True, callbacks=[saver]
            )
            # make_datamodule yields 2 batches per epoch: step 2 ends an epoch, so the loader resumes exactly
            trainer.fit(method, datamodule=self.make_datamodule(method), ckpt_path=ckpt)
            return method

        straight = run(tmp_path / "a", None)
        resumed = run(tmp_path / "b", tmp_path / "a" / "step=2.ckpt")
        for name, value in straight.state_dict().items():
            assert torch.equal(resumed.state_dict()[name], value), f"{name} differs after resume"

    def test_ema_averages_only_the_generator(self, tmp_path: Path) -> None:
        from vsr_core.callbacks import EMA

        ema = EMA(decay=0.5)
        method = self.make_method()
        self._fit(tmp_path, method, 1, callbacks=[ema])
        assert sorted(ema.shadow) == sorted(method.generator_parameter_names())
        trainable = {n for n, p in method.named_parameters() if p.requires_grad}
        for module in method.training_only_modules:
            assert not any(n.startswith(f"{module}.") for n in ema.shadow), f"EMA averages training-only {module}"
        assert set(ema.shadow) <= trainable

    def test_checkpoint_and_export_hold_no_training_only_or_rebuildable_weights(self, tmp_path: Path) -> None:
        import json

        from vsr_core.export import METHOD_FILE, export_method
        from vsr_core.torch_files import read_torch_file

        method = self.make_method()
        trainer = self._fit(tmp_path, method, 1)
        trainer.save_checkpoint(tmp_path / "run.ckpt")
        state = read_torch_file(tmp_path / "run.ckpt", what="checkpoint")["state_dict"]
        rebuildable = method.rebuildable_state_keys()
        assert not rebuildable & set(state), (
            f"frozen rebuildable weights in the checkpoint, e.g. {sorted(rebuildable & set(state))[:3]}"
        )
        loaded = load_method(tmp_path / "run.ckpt")
        for module in method.training_only_modules:
            assert getattr(loaded, module, None) is None, f"training-only {module} was built to restore"
        folder = export_method(loaded, tmp_path / "export")
        record = json.loads((folder / METHOD_FILE).read_text())
        exported = set(record.get("components", {})) | {p.name for p in folder.iterdir() if p.is_dir()}
        leaked = [
            m for m in method.training_only_modules if any(e == m or e.startswith(f"{m}_lora") for e in exported)
        ]
        assert not leaked, f"the export holds training-only modules {leaked}"

    def test_config_round_trip(self, tmp_path: Path) -> None:
        from vsr_core.cli import VSRCLI
        from vsr_core.plugins import class_path

        # run=False: LightningCLI parses without a subcommand, exactly what `vsr fit` would build.
        args = ["--config", str(self.config_file)] if self.config_file else ["--model", class_path(self.method_class)]
        init_args = self.method_args()
        for key, value in init_args.items():
            if isinstance(value, (bool, int, float, str)):
                args += [f"--model.init_args.{key}", str(value)]
        first = VSRCLI(args=args, run=False)
        dumped = first.parser.dump(first.config, skip_none=False)
        path = tmp_path / "config.yaml"
        path.write_text(dumped)
        second = VSRCLI(args=["--config", str(path)], run=False)
        assert type(second.model) is type(first.model)
        assert second.parser.dump(second.config, skip_none=False) == dumped
        for key, value in init_args.items():
            if isinstance(value, (bool, int, float, str)):
                assert second.model.hparams[key] == value


def _params(group: Any) -> list[torch.nn.Parameter]:
    items = list(group)
    if items and isinstance(items[0], dict):
        return [p for entry in items for p in entry["params"]]
    return items


def conformance_suite(method_class: type[VSRMethod], **attributes: Any) -> type[MethodConformance]:
    """A :class:`MethodConformance` subclass for ``method_class`` (pytest collects it as ``Test<Name>``).

    ``attributes`` override the suite's class attributes (``init_args``, ``restore_kwargs``, ...).
    The every-method smoke test builds one per installed method with its ``tiny_init_args``.
    """
    name = f"Test{method_class.__name__}Conformance"
    return type(name, (MethodConformance,), {"method_class": method_class, "__test__": True, **attributes})
