"""FSDP2 sharding and activation checkpointing (vsr_core.distributed), and EMA under DDP/FSDP2.

The two-process runs live in ``distributed_worker.py`` and run as a subprocess: Lightning starts
rank 1 by running the launching script again, which must not be pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from vsr_core.distributed import apply_activation_checkpointing, is_activation_checkpointed, shard_method
from vsr_core.errors import ConfigError

WORKER = Path(__file__).with_name("distributed_worker.py")


class Block(nn.Module):
    calls = 0

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        Block.calls += 1
        return x + scale * torch.tanh(self.fc(x))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 6)
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        for block in self.blocks:
            h = block(h, scale=0.5)
        return self.head(h)


class Method(nn.Module):
    """Shaped like a VSRMethod: a trainable backbone and a frozen codec, no forward of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Net()
        self.codec = nn.Linear(3, 3).requires_grad_(False)
        self.extras = nn.ModuleDict({"head": nn.Linear(2, 2)})


def _grads(net: nn.Module) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    net(torch.randn(5, 3)).pow(2).sum().backward()
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def test_activation_checkpointing_keeps_names_and_gradients_and_recomputes():
    torch.manual_seed(0)
    plain, wrapped = Net(), Net()
    wrapped.load_state_dict(plain.state_dict())
    names = [n for n, _ in plain.named_parameters()]

    assert apply_activation_checkpointing(wrapped, (Block,)) == 2
    assert apply_activation_checkpointing(wrapped, (Block,)) == 2  # idempotent: still one wrap each
    assert [n for n, _ in wrapped.named_parameters()] == names
    assert list(wrapped.state_dict()) == list(plain.state_dict())
    assert all(is_activation_checkpointed(b) for b in wrapped.blocks)
    assert not is_activation_checkpointed(plain.blocks[0])

    expected = _grads(plain)
    Block.calls = 0
    got = _grads(wrapped)
    assert Block.calls == 4  # 2 blocks x (forward + recomputation in backward)
    for name in names:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)

    Block.calls = 0
    with torch.no_grad():
        wrapped(torch.randn(2, 3))
    assert Block.calls == 2  # no recomputation without autograd

    # a checkpoint of the wrapped model loads into the plain one and back, strictly
    plain.load_state_dict(wrapped.state_dict())
    wrapped.load_state_dict(plain.state_dict())


def test_activation_checkpointing_errors_are_one_line():
    with pytest.raises(ConfigError, match="names no fsdp_block_classes"):
        apply_activation_checkpointing(Net(), ())
    with pytest.raises(ConfigError, match="found no Block inside") as err:
        apply_activation_checkpointing(nn.Linear(2, 2), (Block,))
    assert "\n" not in str(err.value)


@pytest.fixture
def single_rank_mesh(tmp_path: Path):
    """A 1-process gloo group and Lightning's 2-D (data_parallel x tensor_parallel) mesh on it."""
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1, 1), mesh_dim_names=("data_parallel", "tensor_parallel"))
    finally:
        dist.destroy_process_group()


def test_shard_method_shards_called_submodules_and_leaves_frozen_ones(single_rank_mesh):
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    torch.manual_seed(0)
    method = Method()
    reference = Method()
    reference.load_state_dict(method.state_dict())
    keys = list(method.state_dict())

    roots = shard_method(method, single_rank_mesh, (Block,), mixed_precision=True, activation_checkpointing=True)

    assert roots == ["backbone", "extras.head"]  # codec: frozen without blocks -> replicated
    assert all(isinstance(b, FSDPModule) and is_activation_checkpointed(b) for b in method.backbone.blocks)
    assert isinstance(method.backbone, FSDPModule) and not isinstance(method.codec, FSDPModule)
    assert all(isinstance(p, DTensor) for p in method.backbone.parameters())
    assert all(p.dtype == torch.float32 for p in method.parameters())  # CPU: no bf16 even if asked
    assert not isinstance(method.codec.weight, DTensor)
    assert list(method.state_dict()) == keys

    x = torch.randn(4, 3)
    method.backbone(x).sum().backward()
    reference.backbone(x).sum().backward()
    for (name, p), q in zip(method.backbone.named_parameters(), reference.backbone.parameters()):
        torch.testing.assert_close(p.grad.full_tensor(), q.grad, msg=name)


def test_shard_method_refuses_what_fsdp_cannot_gather(single_rank_mesh):
    owner = Method()
    owner.gain = nn.Parameter(torch.ones(1))
    with pytest.raises(ConfigError, match=r"owns directly \(gain\)"):
        shard_method(owner, single_rank_mesh, (Block,))
    with pytest.raises(ConfigError, match="found no Linear3d"):
        shard_method(Method(), single_rank_mesh, (type("Linear3d", (nn.Module,), {}),))


def test_shard_method_refuses_tensor_parallel_meshes():
    class Mesh:  # the part of DeviceMesh shard_method reads: a 1 x 2 data x tensor parallel mesh
        ndim, mesh_dim_names = 2, ("data_parallel", "tensor_parallel")

        def __getitem__(self, name):
            return type("Sub", (), {"size": lambda self: {"data_parallel": 1, "tensor_parallel": 2}[name]})()

        def size(self):
            return 2

    with pytest.raises(
        ConfigError, match="--trainer.strategy.data_parallel_size 2 --trainer.strategy.tensor_parallel_size 1"
    ):
        shard_method(Method(), Mesh(), (Block,))


# --------------------------------------------------------------------------- two CPU processes


def _run_worker(scenario: str, out: Path) -> tuple[dict, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE")}
    done = subprocess.run(
        [sys.executable, str(WORKER), scenario, str(out)], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return tuple(torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1))


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> tuple[dict, dict]:
    return _run_worker("fsdp", tmp_path_factory.mktemp("fsdp"))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[dict, dict]:
    return _run_worker("ddp", tmp_path_factory.mktemp("ddp"))


def _ema_of(values: list[torch.Tensor], decay: float) -> torch.Tensor:
    average = values[0]
    for value in values[1:]:
        average = decay * average + (1 - decay) * value
    return average


@pytest.mark.slow
def test_fsdp2_on_two_cpu_processes_shards_trains_and_averages(fsdp_run):
    rank0, rank1 = fsdp_run
    assert rank0["world_size"] == 2
    # trainable backbone sharded (uneven 9-row weights split 5/4), frozen codec replicated
    types = rank0["param_types"]
    assert {types[n] for n in types if n.startswith("backbone.")} == {"DTensor"}
    assert {types[n] for n in types if n.startswith("codec.")} == {"Parameter"}
    assert rank0["local_numel"]["backbone.proj_in.weight"] == 5 * 4
    assert rank1["local_numel"]["backbone.proj_in.weight"] == 4 * 4
    assert rank0["local_numel"]["codec.scale.weight"] == rank1["local_numel"]["codec.scale.weight"] == 16
    assert rank0["checkpointed_blocks"] == [True, True, True]
    # each rank sees the same batch every step: its loss falls
    for run in (rank0, rank1):
        losses = torch.tensor(run["losses"])
        assert torch.isfinite(losses).all() and losses[-1] < losses[0]
    # EMA shadows are DTensor shards, and their gathered values are the EMA of the weights
    assert set(rank0["shadow_types"].values()) == {"DTensor"}
    assert set(rank0["shadow"]) == {n for n in types if n.startswith("backbone.")}
    torch.testing.assert_close(rank0["recorded_shadows"][-1], _ema_of(rank0["recorded_params"], 0.5))
    for name, value in rank0["shadow"].items():
        assert torch.equal(value, rank1["shadow"][name])
        assert torch.equal(rank0["checkpoint_ema"][name], value)  # full tensors in the checkpoint


@pytest.mark.slow
def test_fsdp2_validation_uses_ema_weights_and_resume_restores_them(fsdp_run):
    rank0, _ = fsdp_run
    # validation ran after step 2 with the EMA weights swapped in, then training weights came back
    assert torch.equal(rank0["val_weights"][0], rank0["recorded_shadows"][2])
    assert torch.equal(rank0["after_validation"][0], rank0["recorded_params"][2])
    assert not torch.equal(rank0["recorded_shadows"][2], rank0["recorded_params"][2])
    # the resumed run starts from exactly the saved trained and EMA weights and keeps counting
    assert torch.equal(rank0["resumed_params"][0], rank0["recorded_params"][-1])
    assert torch.equal(rank0["resumed_shadows"][0], rank0["recorded_shadows"][-1])
    assert rank0["resumed_updates"] == 4


@pytest.mark.slow
def test_ema_under_ddp_matches_fsdp2(ddp_run, fsdp_run):
    rank0, rank1 = ddp_run
    assert set(rank0["param_types"].values()) == {"Parameter"}
    assert set(rank0["shadow_types"].values()) == {"Tensor"}  # every rank holds the full copy
    for name, value in rank0["shadow"].items():
        assert torch.equal(value, rank1["shadow"][name])
        assert torch.equal(rank0["checkpoint_ema"][name], value)
    torch.testing.assert_close(rank0["recorded_shadows"][-1], _ema_of(rank0["recorded_params"], 0.5))
    assert torch.equal(rank0["val_weights"][0], rank0["recorded_shadows"][2])
    # same seed, data and optimizer: DDP and FSDP2 train the same model
    torch.testing.assert_close(torch.tensor(rank0["losses"]), torch.tensor(fsdp_run[0]["losses"]))
    for name, value in rank0["shadow"].items():
        torch.testing.assert_close(value, fsdp_run[0]["shadow"][name])
