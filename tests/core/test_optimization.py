"""Several optimizers through ``VSRMethod.optimize``: Lightning's automatic-path behaviour, by value.

The three-network test method (vsr_core.testing.ThreeNetworkMethod) trains a generator, a fake
score and a discriminator with one optimizer each.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vsr_core.callbacks import EMA
from vsr_core.cli import main
from vsr_core.errors import CheckpointError, ConfigError
from vsr_core.testing import SyntheticDataModule, ThreeNetworkMethod, conformance_suite, tiny_trainer


def data(num_clips: int = 16) -> SyntheticDataModule:
    return SyntheticDataModule(num_clips=num_clips, frames=3, size=16, scale=2, batch_size=2)


def step_lr(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)


class GradNormAtStep:
    """Records, for every AdamW step, the global gradient norm the update used (after clipping)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.norms: list[float] = []
        original = torch.optim.AdamW.step

        def step(optimizer, closure=None):
            def measured():
                out = closure() if closure is not None else None
                grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
                self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
                return out

            return original(optimizer, measured)

        monkeypatch.setattr(torch.optim.AdamW, "step", step)


def test_one_global_step_per_cycle_schedulers_step_and_clipping_bounds_the_norm(tmp_path, monkeypatch):
    recorder = GradNormAtStep(monkeypatch)
    torch.manual_seed(0)
    method = ThreeNetworkMethod(learning_rate=1e-2, lr_scheduler=step_lr)
    trainer = tiny_trainer(
        tmp_path, max_steps=3, limit_val_batches=0, accumulate_grad_batches=2, gradient_clip_val=0.01
    )
    trainer.fit(method, datamodule=data())
    # 3 update cycles of 2 batches each: global step 3, whatever the number of optimizers
    assert trainer.global_step == 3
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 6
    # each group's StepLR stepped once per cycle: 0.01 * 0.5**3
    assert [opt.param_groups[0]["lr"] for opt in method.optimizers()] == [pytest.approx(0.00125)] * 3
    # 3 optimizers x 3 cycles; every update used a gradient of norm <= the clip value
    assert len(recorder.norms) == 9
    assert max(recorder.norms) <= 0.01 * (1 + 1e-5)
    # the trainer's settings are back where the user put them
    assert trainer.accumulate_grad_batches == 2 and trainer.gradient_clip_val == 0.01


def test_accumulation_sums_half_gradients_of_each_batch(tmp_path):
    """One cycle of 2 batches is one SGD step on the mean of both batches' gradients (by value)."""

    def sgd(params):
        return torch.optim.SGD(params, lr=0.1)

    # Critic terms off: the generator loss is l1(G(lq), hq), whose gradient is computed by hand below.
    args = {"optimizer": sgd, "adversarial_weight": 0.0, "distill_weight": 0.0}
    torch.manual_seed(0)
    method = ThreeNetworkMethod(**args)
    with torch.no_grad():  # a non-zero head, so every generator parameter gets a gradient
        method.net[2].weight.normal_(std=0.1)
    start = {k: v.clone() for k, v in method.net.state_dict().items()}
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0, accumulate_grad_batches=2)
    trainer.fit(method, datamodule=data(4))
    assert trainer.global_step == 1
    trained = method.net.state_dict()

    ref = ThreeNetworkMethod(**args)
    ref.net.load_state_dict(start)
    grads = [torch.zeros_like(p) for p in ref.net.parameters()]
    for batch in list(data(4).train_dataloader())[:2]:
        loss = torch.nn.functional.l1_loss(ref.restore(batch["lq"]), batch["hq"])
        for total, grad in zip(grads, torch.autograd.grad(loss / 2, list(ref.net.parameters()))):
            total += grad
    for (name, before), grad in zip(start.items(), grads):
        torch.testing.assert_close(trained[name], before - 0.1 * grad, msg=name)


def test_group_schedule_skips_updates(tmp_path):
    torch.manual_seed(0)
    method = ThreeNetworkMethod(group_schedules={"discriminator": {"every": 2, "start": 1}})
    calls = []
    original = method.optimize

    def optimize(group, loss):
        out = original(group, loss)
        calls.append((method._step_at_batch_start, group, out is not None))
        return out

    method.optimize = optimize
    trainer = tiny_trainer(tmp_path, max_steps=4, limit_val_batches=0)
    trainer.fit(method, datamodule=data())
    discriminator = [(step, ran) for step, group, ran in calls if group == "discriminator"]
    assert discriminator == [(0, False), (1, True), (2, False), (3, True)]
    assert all(ran for _, group, ran in calls if group != "discriminator")


def test_unknown_group_in_a_schedule_is_one_line(tmp_path):
    method = ThreeNetworkMethod(group_schedules={"critic": {"every": 2}})
    with pytest.raises(
        ConfigError, match=r"group_schedules names \['critic'\].*\['generator', 'fake_score', 'discriminator'\]"
    ):
        tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(method, datamodule=data())


def test_several_groups_need_manual_optimization():
    class Automatic(ThreeNetworkMethod):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.automatic_optimization = True

    with pytest.raises(ConfigError, match="3 parameter groups.*automatic_optimization = False"):
        Automatic().configure_optimizers()


def test_ema_averages_only_the_generator(tmp_path):
    ema = EMA(decay=0.5)
    method = ThreeNetworkMethod()
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0, callbacks=[ema]).fit(method, datamodule=data())
    assert set(ema.shadow) == {f"net.{name}" for name, _ in method.net.named_parameters()}


def test_training_only_modules_are_checkpointed_but_not_needed_to_restore(tmp_path):
    from vsr_core.checkpoint import load_method
    from vsr_core.export import export_method

    torch.manual_seed(0)
    method = ThreeNetworkMethod()
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(method, datamodule=data())
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    state = torch.load(tmp_path / "run.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("discriminator.") for k in state) and any(k.startswith("fake_score.") for k in state)

    loaded = load_method(tmp_path / "run.ckpt")  # to restore: the critics are never built
    assert loaded.fake_score is None and loaded.discriminator is None
    for name, value in method.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[name], value)

    record = export_method(loaded, tmp_path / "export") / "vsr_method.json"
    assert set(__import__("json").loads(record.read_text())["components"]) == {"net"}


def test_resume_with_three_optimizers_is_exact(tmp_path):
    """3 steps + resume 3 equals 6 straight: weights of all networks, optimizer states, schedulers."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(root: Path, ckpt: Path | None = None) -> ThreeNetworkMethod:
        torch.manual_seed(0)
        method = ThreeNetworkMethod(learning_rate=1e-2, lr_scheduler=step_lr)
        saver = ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=3, save_top_k=-1)
        trainer = tiny_trainer(
            root,
            max_steps=6,
            limit_val_batches=0,
            accumulate_grad_batches=2,
            gradient_clip_val=1.0,
            enable_checkpointing=True,
            callbacks=[saver],
        )
        # 12 clips in batches of 2: step 3 (6 batches) ends an epoch; the synthetic loader is not
        # resumable mid-epoch (VideoDataModule is, see the CLI test below)
        trainer.fit(method, datamodule=data(12), ckpt_path=ckpt)
        assert trainer.global_step == 6
        return method

    straight = run(tmp_path / "a")
    resumed = run(tmp_path / "b", ckpt=tmp_path / "a" / "step=3.ckpt")
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_fit_cli_with_clipping_accumulation_and_a_scheduler_per_group(tmp_path, capsys):
    """The documented command line: `vsr fit` of a three-network method, then an exact resume."""

    def fit(root: Path, steps: int, *extra: str) -> int:
        return main(
            [
                "fit",
                "--model",
                "vsr_core.testing.ThreeNetworkMethod",
                "--model.lr_scheduler",
                "torch.optim.lr_scheduler.StepLR",
                "--model.lr_scheduler.step_size",
                "2",
                "--trainer.gradient_clip_val",
                "1",
                "--trainer.accumulate_grad_batches",
                "2",
                "--trainer.max_steps",
                str(steps),
                "--trainer.limit_val_batches",
                "0",
                "--trainer.logger.init_args.save_dir",
                str(root),
                "--trainer.enable_progress_bar",
                "false",
                "--data.init_args.num_workers",
                "0",
                "--data.init_args.clip_frames",
                "3",
                "--data.init_args.crop_size",
                "16",
                "--samples.save_files",
                "false",
                *extra,
            ]
        )

    assert fit(tmp_path / "a", 6) == 0
    assert fit(tmp_path / "b", 3) == 0
    half = next((tmp_path / "b").rglob("last.ckpt"))
    assert fit(tmp_path / "c", 6, "--ckpt_path", str(half)) == 0  # resumes in the run it came from (b)
    straight = torch.load(next((tmp_path / "a").rglob("last.ckpt")), weights_only=True)
    resumed = torch.load(half, weights_only=True)
    assert straight["global_step"] == resumed["global_step"] == 6
    for key, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    # StepLR(step_size=2) per group, stepped once per cycle: 6 steps -> lr * 0.1**3
    for scheduler in resumed["lr_schedulers"]:
        assert scheduler["_last_lr"] == [pytest.approx(1e-4 * 0.1**3)]


# ---------------------------------------------------------------------- init_from (weights-only start)


def saved(tmp_path: Path, method: ThreeNetworkMethod, name: str = "src.ckpt") -> Path:
    trainer = tiny_trainer(tmp_path / name, max_steps=1, limit_val_batches=0)
    trainer.fit(method, datamodule=data(4))
    trainer.save_checkpoint(tmp_path / name)
    return tmp_path / name


def test_init_from_copies_the_selected_weights_only(tmp_path):
    torch.manual_seed(1)
    source = saved(tmp_path, ThreeNetworkMethod(learning_rate=0.1))
    src_state = torch.load(source, weights_only=True)["state_dict"]
    torch.manual_seed(2)
    method = ThreeNetworkMethod(learning_rate=0.0, init_from=str(source), init_from_exclude=("discriminator.*",))
    method.ensure_training_modules()
    own_disc = {k: v.clone() for k, v in method.discriminator.state_dict().items()}
    tiny_trainer(tmp_path / "run", max_steps=1, limit_val_batches=0).fit(method, datamodule=data(4))
    state = method.state_dict()
    for key, value in src_state.items():
        if key.startswith("discriminator."):
            assert torch.equal(state[key], own_disc[key.removeprefix("discriminator.")]), key  # excluded: untouched
        else:
            assert torch.equal(state[key], value), key  # loaded (lr 0: one step changes nothing)


def test_init_from_another_method_names_both_classes(tmp_path):
    from vsr_core.testing import BoringMethod

    class Other(BoringMethod):
        """Another method."""

    trainer = tiny_trainer(tmp_path / "o", max_steps=1, limit_val_batches=0)
    trainer.fit(Other(scale=2), datamodule=data(4))
    trainer.save_checkpoint(tmp_path / "other.ckpt")
    method = ThreeNetworkMethod(init_from=str(tmp_path / "other.ckpt"))
    with pytest.raises(CheckpointError, match=r"written by .*Other, this run trains .*ThreeNetworkMethod"):
        tiny_trainer(tmp_path / "run", max_steps=1, limit_val_batches=0).fit(method, datamodule=data(4))


def test_init_from_with_other_sizes_names_the_keys(tmp_path):
    from vsr_core.init_from import load_init_weights

    source = saved(tmp_path, ThreeNetworkMethod(critic_width=8))
    method = ThreeNetworkMethod(critic_width=4, init_from=str(source))
    with pytest.raises(
        CheckpointError, match=r"6 weights have other shapes, e\.g\. discriminator\.0\.bias \(8,\) in the file"
    ):
        tiny_trainer(tmp_path / "run", max_steps=1, limit_val_batches=0).fit(method, datamodule=data(4))
    # selecting the generator only: the critics' sizes do not matter
    other = ThreeNetworkMethod(critic_width=4)
    other.ensure_training_modules()
    loaded = load_init_weights(other, source, include=("net.*",))
    assert loaded == sorted(k for k in other.state_dict() if k.startswith("net."))
    # strict: a selection that names weights the file lacks is refused, with the first ones named
    with pytest.raises(
        CheckpointError, match=r"does not fit ThreeNetworkMethod: 8 not in the model \(e\.g\. discriminator\.0\.bias, "
    ):
        load_init_weights(
            ThreeNetworkMethod(critic_width=4), source, include=("net.*", "discriminator.*", "fake_score.*")
        )


def test_init_from_is_not_read_on_resume(tmp_path):
    """A resumed run takes everything from --ckpt_path: the init_from file is not even read (it may be gone)."""
    torch.manual_seed(3)
    resume_from = saved(tmp_path, ThreeNetworkMethod(learning_rate=0.1), "resume.ckpt")
    method = ThreeNetworkMethod(init_from=str(tmp_path / "deleted.ckpt"))
    trainer = tiny_trainer(tmp_path / "run", max_steps=1, limit_val_batches=0)
    trainer.fit(method, datamodule=data(4), ckpt_path=resume_from)  # no CheckpointError for the missing file
    resumed = torch.load(resume_from, weights_only=True)["state_dict"]
    for key, value in resumed.items():
        assert torch.equal(method.state_dict()[key], value), key


def test_init_from_missing_file_is_one_line(tmp_path):
    method = ThreeNetworkMethod(init_from=str(tmp_path / "nope.ckpt"))
    with pytest.raises(CheckpointError, match="--model.init_from '.*nope.ckpt' does not exist"):
        tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(method, datamodule=data(4))


# ---------------------------------------------------------------------- two CPU processes

WORKER = Path(__file__).with_name("several_networks_worker.py")


def _run_worker(scenario: str, out: Path) -> tuple[dict, dict]:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE")}
    done = subprocess.run(
        [sys.executable, str(WORKER), scenario, str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return tuple(torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))


@pytest.mark.slow
def test_three_optimizers_under_ddp_resume_exactly_and_agree_across_ranks(tmp_path):
    rank0, rank1 = _run_worker("ddp", tmp_path)
    assert rank0["world_size"] == 2 and rank0["global_step"] == 6
    for key, value in rank0["straight"].items():
        assert torch.equal(rank1["straight"][key], value), f"ranks disagree on {key}"  # gradients were averaged
        assert torch.equal(rank0["resumed"][key], value), f"resume is not exact for {key}"
    assert (
        rank0["ema_names"] == rank0["generator_names"] == sorted(k for k in rank0["straight"] if k.startswith("net."))
    )
    assert rank0["lrs"] == [pytest.approx(1e-2 * 0.5**6)] * 3


@pytest.mark.slow
def test_three_optimizers_train_under_fsdp2(tmp_path):
    rank0, rank1 = _run_worker("fsdp", tmp_path)
    assert rank0["world_size"] == 2 and rank0["global_step"] == 3
    assert {rank0["param_types"][n] for n in rank0["param_types"]} == {"DTensor"}  # every network sharded
    for group in ("net.", "fake_score.", "discriminator."):
        changed = [
            n for n, v in rank0["trained"].items() if n.startswith(group) and not torch.equal(v, rank0["start"][n])
        ]
        assert changed, f"no parameter of {group} trained"
    for name, value in rank0["trained"].items():
        assert torch.equal(value, rank1["trained"][name]), name
    assert rank0["ema_names"] == sorted(n for n in rank0["trained"] if n.startswith("net."))


# The whole conformance kit, three optimizers included (every group trains, schedulers, clipping,
# exact resume, EMA on the generator only, nothing training-only in checkpoints' restore path or exports).
TestThreeNetworkConformance = conformance_suite(ThreeNetworkMethod)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--model.group_schedules", '{"critic": {"every": 2}}'], r"group_schedules names \['critic'\]"),
        (["--model.optimizer_overrides", '{"critic": {"lr": 0.1}}'], r"optimizer_overrides names \['critic'\]"),
        (["--model.init_from", "nowhere.ckpt"], r"--model.init_from 'nowhere.ckpt' does not exist"),
    ],
)
def test_bad_group_and_init_options_are_one_line_through_the_cli(tmp_path, capsys, monkeypatch, option, message):
    import re

    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "fit",
            "--model",
            "vsr_core.testing.ThreeNetworkMethod",
            "--trainer.max_steps",
            "1",
            "--trainer.limit_val_batches",
            "0",
            "--trainer.enable_progress_bar",
            "false",
            "--data.init_args.num_workers",
            "0",
            "--data.init_args.clip_frames",
            "3",
            "--data.init_args.crop_size",
            "16",
            *option,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ") and re.search(message, err[-1]), err[-1]
    assert not any("Traceback" in line for line in err)
