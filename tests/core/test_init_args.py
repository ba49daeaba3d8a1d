"""Init-argument records: what is written for each kind of value, and which records are rebuilt."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from torch import nn

from vsr_core.errors import CheckpointError, ConfigError
from vsr_core.init_args import build_init_args, check_init_args, encode_init_args
from vsr_core.options import OptionGroup


class Taker:
    """Stands for a method: one argument of each kind the rule distinguishes."""

    def __init__(
        self,
        size: int = 1,
        name: str | None = None,
        factory: Callable[..., Any] | None = None,
        module: nn.Module | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.size, self.name, self.factory, self.module, self.options = size, name, factory, module, options


def test_plain_values_modules_and_factories_are_recorded():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=2, layers_per_block=1)
    record, dropped = encode_init_args(
        {
            "_class_path": "x.Y",  # private keys are LightningCLI's, not init arguments
            "size": 3,
            "path": Path("/w/x"),
            "pair": (1, 2),
            "vae": vae,
            "optimizer": functools.partial(torch.optim.SGD, lr=0.1),
            "already": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}},
        }
    )
    assert dropped == ["optimizer"]
    assert record["size"] == 3 and record["path"] == "/w/x" and record["pair"] == [1, 2]
    assert record["already"] == {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}
    assert record["vae"]["class_path"] == "diffusers.AutoencoderKL"
    assert record["vae"]["init_args"]["latent_channels"] == 2 and "_class_name" not in record["vae"]["init_args"]


def test_a_module_without_a_record_of_its_arguments_is_an_error():
    with pytest.raises(ConfigError, match="init argument 'net'.*Linear"):
        encode_init_args({"net": nn.Linear(2, 2)})


def test_safe_records_are_built_and_kept():
    args = {
        "size": 2,
        "factory": {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 3}},
        "module": {"class_path": "vsr_core.latent.PixelUnshuffleCodec", "init_args": {"factor": 2}},
        "options": {"name": "os.system"},  # a plain string inside a dict of Any: stays a string
    }
    kwargs, records = build_init_args(Taker, args, "test", CheckpointError)
    assert kwargs["size"] == 2 and kwargs["options"] == {"name": "os.system"}
    assert kwargs["module"].spatial_factor == 2
    scheduler = kwargs["factory"](torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0))
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR) and scheduler.step_size == 3
    assert records == {"factory": args["factory"], "module": args["module"]}


@pytest.mark.parametrize(
    "args",
    [
        {"factory": {"class_path": "os.system", "init_args": {"command": "true"}}},
        {"factory": {"class_path": "torch.nn.Linear", "init_args": {}}},  # a module, but not vsr's or a plugin's
        {"module": {"class_path": "vsr_core.errors.VSRError"}},  # vsr_core, but not a module class
        {"module": {"class_path": "torch.optim.SGD", "extra": 1}},
        {"factory": "os.system"},  # jsonargparse would import it: refused
        {"options": {"inner": {"class_path": "os.system"}}},  # a record wherever it is
    ],
    ids=["os", "torch-module", "not-module", "extra-key", "string", "nested-record"],
)
def test_records_naming_other_code_are_refused(args):
    with pytest.raises(CheckpointError, match="init argument"):
        check_init_args(Taker, args, "test", CheckpointError)
    with pytest.raises(CheckpointError):
        build_init_args(Taker, args, "test", CheckpointError)


@dataclass(frozen=True)
class PlainGroup(OptionGroup):
    kind: Literal["a", "b"] = "a"
    path: str = "x"


@dataclass(frozen=True)
class HoldingGroup(OptionGroup):
    factory: Callable[..., Any] | None = None


class HoldingTaker:
    def __init__(self, plain: PlainGroup = PlainGroup(), holding: HoldingGroup = HoldingGroup()) -> None:
        self.plain, self.holding = plain, holding


def test_option_groups_are_judged_by_their_fields():
    """A group (vsr_core.options) is recorded as a dict of its fields: a string field is a plain value."""
    check_init_args(HoldingTaker, {"plain": {"kind": "b", "path": "torch.nn.Linear"}}, "test", CheckpointError)
    with pytest.raises(CheckpointError, match="holding"):
        check_init_args(HoldingTaker, {"holding": {"factory": "os.system"}}, "test", CheckpointError)


def test_plain_strings_for_plain_arguments_pass():
    check_init_args(Taker, {"name": "satb.SATBVR", "size": 1}, "test", CheckpointError)


@dataclass(frozen=True)
class Choices(OptionGroup):
    """An option group whose string fields look like dotted names."""

    kind: Literal["a.b", "c"] = "a.b"
    label: str = "x.y"
    backbone: nn.Module | None = None


class GroupTaker:
    """Stands for a method taking an option group (recorded as the plain dict of its fields)."""

    def __init__(self, choices: Choices = Choices(), maybe: Choices | None = None) -> None:
        self.choices, self.maybe = choices, maybe


def test_option_group_fields_are_judged_by_their_own_types():
    record = {"choices": {"kind": "a.b", "label": "os.system"}, "maybe": {"kind": "c", "label": "satb.SATBVR"}}
    check_init_args(GroupTaker, record, "test", CheckpointError)  # strings in str / Literal fields are plain values
    kwargs, _ = build_init_args(GroupTaker, record, "test", CheckpointError)
    assert kwargs == record
    # a field that takes objects still refuses a name jsonargparse would import
    with pytest.raises(CheckpointError, match=r"init argument 'choices'.backbone is the string 'os.system'"):
        check_init_args(GroupTaker, {"choices": {"backbone": "os.system"}}, "test", CheckpointError)
    with pytest.raises(CheckpointError, match="names 'os.system'"):
        check_init_args(GroupTaker, {"maybe": {"backbone": {"class_path": "os.system"}}}, "test", CheckpointError)
