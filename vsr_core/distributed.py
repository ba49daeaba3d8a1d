"""FSDP2 sharding and activation checkpointing of a method's transformer/UNet blocks.

`VSRMethod.configure_model` calls :func:`shard_method` under Lightning's
``ModelParallelStrategy`` (which hands the module a ``device_mesh``) and
:func:`apply_activation_checkpointing` otherwise, both with the classes a method names in
``fsdp_block_classes``.

Activation checkpointing here replaces the ``forward`` of each block *instance* with one that
runs the class's forward under :func:`torch.utils.checkpoint.checkpoint`. Unlike
``checkpoint_wrapper`` it inserts no wrapper module, so parameter names, ``state_dict`` keys,
optimizer state and EMA shadows keep the exact names of the unwrapped model, and checkpoints
written with and without it are interchangeable.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.utils.checkpoint import checkpoint

from vsr_core.errors import ConfigError

__all__ = [
    "apply_activation_checkpointing",
    "copy_full_into",
    "full_tensor",
    "is_activation_checkpointed",
    "local_part_of",
    "local_tensor",
    "shard_method",
]


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The part of ``tensor`` this rank stores: the local shard of a DTensor, else the tensor itself.

    Under ``no_grad``, ``DTensor.to_local`` returns the local tensor itself (not a copy), so in-place
    ops on the result change the DTensor.
    """
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: gathers a DTensor from every rank (a collective), else returns it."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def local_part_of(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The slice of the full tensor ``full`` that this rank holds for ``like``'s layout (no communication)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(like, DTensor):
        return full
    # src_data_rank=None: every rank has the full tensor and cuts its own shard.
    return distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None).to_local()


@torch.no_grad()
def copy_full_into(target: torch.Tensor, full: torch.Tensor) -> None:
    """Write the full tensor ``full`` into ``target`` (a plain tensor, or this rank's shard of a DTensor)."""
    local_tensor(target).copy_(local_part_of(full.to(device=target.device, dtype=target.dtype), target))


def _checkpointed_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    # Bound to a block instance as its `forward`. `type(self).forward` is the class's own forward,
    # untouched by the instance attribute. Without autograd there is nothing to save memory on.
    forward = type(self).forward
    if not torch.is_grad_enabled():
        return forward(self, *args, **kwargs)
    return checkpoint(forward, self, *args, use_reentrant=False, **kwargs)


def is_activation_checkpointed(module: nn.Module) -> bool:
    """Whether :func:`apply_activation_checkpointing` has wrapped this module's forward."""
    forward = module.__dict__.get("forward")
    return isinstance(forward, types.MethodType) and forward.__func__ is _checkpointed_forward


def _blocks(module: nn.Module, block_classes: Sequence[type[nn.Module]]) -> list[nn.Module]:
    """Instances of ``block_classes`` in ``module``, descendants before their ancestors."""
    classes = tuple(block_classes)
    found = [m for m in module.modules() if m is not module and isinstance(m, classes)]
    # modules() is pre-order, so reversing puts every block after all blocks nested in it:
    # the order in which FSDP2 must shard nested units.
    return found[::-1]


def _class_names(block_classes: Sequence[type[nn.Module]]) -> str:
    return ", ".join(cls.__name__ for cls in block_classes)


def apply_activation_checkpointing(module: nn.Module, block_classes: Sequence[type[nn.Module]]) -> int:
    """Recompute the activations of every ``block_classes`` instance in backward.

    Parameter names and ``state_dict`` keys stay unchanged. Applying it twice is harmless.

    Returns:
        The number of blocks wrapped.

    Raises:
        ConfigError: ``block_classes`` is empty or no instance of them is in ``module``.
    """
    if not block_classes:
        raise ConfigError(
            f"gradient checkpointing needs block classes, but {type(module).__name__} names no fsdp_block_classes"
        )
    blocks = _blocks(module, block_classes)
    if not blocks:
        raise ConfigError(
            f"gradient checkpointing found no {_class_names(block_classes)} inside {type(module).__name__}"
        )
    for block in blocks:
        if not is_activation_checkpointed(block):
            # Assigning a bound method stores it in the instance __dict__, shadowing the class forward.
            block.forward = types.MethodType(_checkpointed_forward, block)
    return len(blocks)


def _data_parallel_mesh(device_mesh: DeviceMesh) -> DeviceMesh:
    """The mesh dimension FSDP2 shards over; refuses meshes with an unused tensor-parallel part."""
    names = device_mesh.mesh_dim_names or ()
    if device_mesh.ndim == 1:
        return device_mesh
    if "data_parallel" not in names:
        raise ConfigError(f"cannot shard over a {device_mesh.ndim}-D device mesh without a 'data_parallel' dimension")
    others = {name: device_mesh[name].size() for name in names if name != "data_parallel"}
    if any(size > 1 for size in others.values()):
        world = device_mesh.size()
        raise ConfigError(
            f"vsr methods shard with FSDP2 only, but the device mesh has {others}; use "
            f"--trainer.strategy.data_parallel_size {world} --trainer.strategy.tensor_parallel_size 1"
        )
    return device_mesh["data_parallel"]


def _top_level_modules(module: nn.Module) -> list[nn.Module]:
    """The submodules a method calls directly; containers without ``forward`` are looked through."""
    found = []
    for child in module.children():
        if type(child).forward is nn.Module.forward:  # ModuleList / ModuleDict: never called themselves
            found.extend(_top_level_modules(child))
        else:
            found.append(child)
    return found


def shard_method(
    module: nn.Module,
    device_mesh: DeviceMesh,
    block_classes: Sequence[type[nn.Module]],
    mixed_precision: bool = True,
    activation_checkpointing: bool = False,
    reshard_after_forward: bool = True,
    forward_methods: Sequence[str] = ("encode", "decode"),
) -> list[str]:
    """Shard a method's models with FSDP2 (``fully_shard``), in place.

    What becomes an FSDP unit:

    1. every instance of ``block_classes``: gathered only for its own forward/backward, which
       bounds peak memory to about one block's full weights;
    2. every top-level submodule of ``module`` (looking through ``ModuleList``/``ModuleDict``)
       that holds blocks or trainable parameters: the root of its blocks, owning its remaining
       parameters. FSDP2 gathers a unit's parameters around ``forward``, so the method must call
       such a submodule through ``forward`` (or one of ``forward_methods``, e.g. a VAE's
       ``encode``/``decode``) and not reach into its layers directly.

    ``module`` itself is not sharded: Lightning calls ``training_step``, never ``forward``.
    Frozen submodules without blocks (VAE, text encoder) stay replicated on every rank; list
    their block classes to shard them too.

    Args:
        module: the method (a LightningModule) or any ``nn.Module``.
        device_mesh: Lightning's ``ModelParallelStrategy`` mesh (``data_parallel`` x
            ``tensor_parallel``, the latter of size 1) or a 1-D mesh.
        block_classes: the transformer/UNet block classes.
        mixed_precision: on CUDA, gather parameters in bf16 and reduce gradients in fp32 (the
            sharded master weights stay fp32). Ignored on other devices: CPU runs fp32.
        activation_checkpointing: also recompute the blocks' activations in backward.
        reshard_after_forward: free gathered weights after forward and gather them again in
            backward: less memory for one more all-gather per unit.
        forward_methods: methods of top-level submodules that FSDP treats like ``forward``.

    Returns:
        The names of the top-level submodules sharded as roots (blocks not included).

    Raises:
        ConfigError: block classes absent from the module, trainable parameters owned by
            ``module`` itself, or a mesh with tensor parallelism.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    mesh = _data_parallel_mesh(device_mesh)
    top_level = _top_level_modules(module)
    inside = {id(p) for child in top_level for p in child.parameters()}
    outside = [name for name, p in module.named_parameters() if p.requires_grad and id(p) not in inside]
    if outside:
        raise ConfigError(
            f"FSDP cannot shard trainable parameters that {type(module).__name__} owns directly ({', '.join(outside)}); "
            "move them into a submodule that is called through forward()"
        )
    blocks = _blocks(module, block_classes) if block_classes else []
    if block_classes and not blocks:
        raise ConfigError(f"FSDP found no {_class_names(block_classes)} inside {type(module).__name__} to shard")
    if activation_checkpointing:
        apply_activation_checkpointing(module, block_classes)
    param_dtype = torch.bfloat16 if mixed_precision and mesh.device_type == "cuda" else None
    # Inputs keep their dtype: timesteps and rotary tables lose precision in bf16, and the
    # bf16-mixed autocast already picks the dtype of every matmul.
    policy = MixedPrecisionPolicy(
        param_dtype=param_dtype,
        reduce_dtype=torch.float32 if param_dtype is not None else None,
        cast_forward_inputs=False,
    )
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    block_ids = {id(block) for block in blocks}
    names = {id(m): name for name, m in module.named_modules()}
    roots = []
    for child in top_level:
        if id(child) in block_ids:
            continue
        has_blocks = any(id(m) in block_ids for m in child.modules())
        if not has_blocks and not any(p.requires_grad for p in child.parameters()):
            continue
        fully_shard(child, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
        for method in forward_methods:
            if callable(getattr(child, method, None)):
                register_fsdp_forward_method(child, method)
        roots.append(names[id(child)])
    return roots
