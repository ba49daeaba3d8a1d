"""A method's init arguments as files record them, and rebuilt from a file without running its code.

Checkpoints (``hyper_parameters``) and ``vsr_method.json`` (``init_args``) hold the arguments a method
was built with as plain values. An argument that is itself an object is recorded the way
jsonargparse (and so ``vsr fit``) writes it: ``{"class_path": "pkg.Class", "init_args": {...}}``.

Rebuilding (:func:`build_init_args`) follows one rule: a file may name a class only if building it
cannot run foreign code —

* ``torch.nn.Module`` subclasses (codecs, backbones, ...) defined in ``vsr_core`` or in an installed
  ``vsr.plugins`` package, built from their recorded ``init_args``;
* ``torch.optim`` optimizers and learning-rate schedulers, rebuilt as the factories the method
  takes (``functools.partial(cls, **init_args)``; nothing is constructed until training asks).

Any other ``class_path``, or a plain string given for an argument whose type admits objects
(jsonargparse would import such a string by name), is refused with one line naming the argument.
:func:`check_init_args` applies the same rule without building (``vsr fit --ckpt_path``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import functools
import importlib
import inspect
import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

import torch
from torch import nn

from vsr_core.errors import ConfigError, VSRError

__all__ = ["build_init_args", "check_init_args", "encode_init_args", "is_class_record"]

_RECORD_KEYS = {"class_path", "init_args", "dict_kwargs"}
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_PLAIN_TYPES = (str, bytes, int, float, bool, type(None), os.PathLike, dict, list, tuple, set, frozenset, enum.Enum)


def is_class_record(value: Any) -> bool:
    """Whether ``value`` is a jsonargparse object record ``{"class_path": ..., "init_args": ...}``."""
    return isinstance(value, Mapping) and "class_path" in value


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


class _NotRecordable(Exception):
    """A value that has no plain record (internal signal)."""


def _module_init_args(module: nn.Module) -> dict[str, Any]:
    """The arguments a module object was built with, where its class keeps them."""
    config = getattr(module, "config", None)
    if config is not None and hasattr(type(module), "from_config"):  # diffusers ConfigMixin
        return {k: v for k, v in dict(config).items() if not k.startswith("_")}
    hparams = getattr(module, "hparams", None)
    if isinstance(hparams, Mapping) and hparams:
        return {k: v for k, v in hparams.items() if not k.startswith("_")}
    raise _NotRecordable(type(module).__qualname__)


def _encode(value: Any, name: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v, name) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise _NotRecordable("a dict with non-string keys")
        return {k: _encode(v, name) for k, v in value.items()}
    if isinstance(value, nn.Module):
        from vsr_core.plugins import class_path

        return {"class_path": class_path(type(value)), "init_args": _encode(_module_init_args(value), name)}
    raise _NotRecordable(type(value).__qualname__)


def encode_init_args(hparams: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``(record, dropped)``: the JSON-serialisable record of a method's init arguments.

    Module-valued arguments become ``{"class_path", "init_args"}`` records. Callables that are not
    modules (optimizer and scheduler factories built in Python) have no record and are only needed to
    train: their names are returned in ``dropped``. Private keys (``_class_path``, ...) are skipped.

    Raises:
        ConfigError: an argument is an object whose own arguments cannot be recorded.
    """
    record: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in hparams.items():
        if key.startswith("_"):
            continue
        try:
            record[key] = _encode(value, key)
        except _NotRecordable as err:
            if callable(value) and not isinstance(value, nn.Module):
                dropped.append(key)
                continue
            raise ConfigError(
                f"init argument '{key}' ({err}) cannot be recorded: its class keeps no record of its own "
                "arguments; give it as class_path/init_args (as `vsr fit` does) or as plain values"
            ) from None
    return record, dropped


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _admits_objects(tp: Any) -> bool:
    """Whether a parameter typed ``tp`` takes objects that jsonargparse would import from a string."""
    if tp is Any or isinstance(tp, typing.TypeVar):
        return False
    origin = typing.get_origin(tp)
    if origin is Literal:
        return False
    if origin in (Union, types.UnionType):
        return any(_admits_objects(arg) for arg in typing.get_args(tp))
    if tp is collections.abc.Callable or origin is collections.abc.Callable or origin is type:
        return True
    if origin is not None:
        return any(_admits_objects(arg) for arg in typing.get_args(tp) if arg is not Ellipsis)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        # An option group (vsr_core.options) is recorded as a mapping of its fields: judge the fields.
        try:
            hints = typing.get_type_hints(tp)
        except Exception:  # noqa: BLE001 - unresolvable annotations: keep refusing strings
            return True
        return any(_admits_objects(hint) for hint in hints.values())
    if isinstance(tp, type):
        return not issubclass(tp, _PLAIN_TYPES)
    return False


def _parameter_types(cls: type) -> dict[str, Any]:
    """``{name: annotation}`` of the init arguments of ``cls``, following ``**kwargs`` up its bases.

    An annotation that cannot be evaluated maps to ``None`` (the value is then judged by its form).
    """
    types_: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters
        except (TypeError, ValueError):
            break
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - a forward reference that does not resolve
            hints = {}
        for name, parameter in parameters.items():
            if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                types_.setdefault(name, hints.get(name))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            break
    return types_


def _safe_class(path: str, where: str, error: type[VSRError]) -> type:
    """The class a record names, if vsr may build it (see the module docstring)."""
    from vsr_core.plugins import plugin_packages

    module_name, _, attr = path.rpartition(".")
    top = module_name.split(".")[0]
    refused = error(
        f"{where} names '{path}', which vsr does not build from a file (only torch modules of vsr_core or of "
        "an installed plugin, and torch.optim optimizers and schedulers)"
    )
    if not module_name or not attr.isidentifier():
        raise refused
    optim = module_name == "torch.optim" or module_name.startswith("torch.optim.")
    if not (optim or top == "vsr_core" or top in plugin_packages()):
        raise refused
    try:
        module = importlib.import_module(module_name)  # vsr_core, an installed plugin, or torch.optim only
    except ImportError as err:
        raise error(f"{where} names '{path}', which cannot be imported ({err})") from None
    cls = getattr(module, attr, None)
    if not isinstance(cls, type):
        raise refused
    if optim:
        schedulers = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if not issubclass(cls, (torch.optim.Optimizer, *schedulers)):
            raise refused
    elif not issubclass(cls, nn.Module):
        raise refused
    return cls


def _walk(value: Any, where: str, admits_objects: bool, build: bool, error: type[VSRError]) -> Any:
    if is_class_record(value):
        extra = sorted(set(value) - _RECORD_KEYS)
        if not isinstance(value["class_path"], str) or extra:
            raise error(f"{where} is not a class record (class_path, init_args): unexpected {extra or 'class_path'}")
        cls = _safe_class(value["class_path"], where, error)
        raw = {**(value.get("init_args") or {}), **(value.get("dict_kwargs") or {})}
        if not isinstance(raw, Mapping):
            raise error(f"{where}: the init_args of '{value['class_path']}' are not a mapping")
        types_ = _safe_parameter_types(cls)
        kwargs = {k: _walk_typed(v, f"{where}.{k}", types_.get(k), build, error) for k, v in raw.items()}
        if not build:
            return value
        if issubclass(cls, nn.Module):
            try:
                return cls(**kwargs)
            except VSRError:
                raise
            except (TypeError, ValueError) as err:
                raise error(f"{where}: '{value['class_path']}' cannot be built from its record ({err})") from None
        return functools.partial(cls, **kwargs)  # an optimizer / scheduler factory, as the method takes it
    if isinstance(value, Mapping):
        return {k: _walk(v, f"{where}.{k}", admits_objects, build, error) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, where, admits_objects, build, error) for v in value]
    if isinstance(value, str) and (admits_objects or (admits_objects is None and _DOTTED.fullmatch(value))):
        raise error(
            f"{where} is the string '{value}' for an argument that takes objects; vsr does not import names "
            "from files (a class is recorded as class_path/init_args)"
        )
    return value


def _safe_parameter_types(cls: type) -> dict[str, Any]:
    """:func:`_parameter_types`, or nothing known when the signature cannot be read."""
    try:
        return _parameter_types(cls)
    except (TypeError, ValueError):
        return {}


def _option_group_fields(tp: Any) -> dict[str, Any] | None:
    """``{field: annotation}`` when ``tp`` is an option group type (or ``Optional`` of one), else ``None``."""
    import dataclasses

    from vsr_core.options import OptionGroup

    candidates = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, OptionGroup) and dataclasses.is_dataclass(candidate):
            try:
                return typing.get_type_hints(candidate)
            except Exception:  # noqa: BLE001 - an annotation that does not resolve: judge values by form
                return {f.name: None for f in dataclasses.fields(candidate)}
    return None


def _walk_typed(value: Any, where: str, tp: Any, build: bool, error: type[VSRError]) -> Any:
    """:func:`_walk` for an argument annotated ``tp`` (``None``: unknown).

    An option group (:class:`vsr_core.options.OptionGroup`) is recorded as the plain dict of its
    fields (``OptionGroup.as_dict``): each field is judged by its own annotation, so a ``str`` or
    ``Literal`` field holding a dotted string is a plain value, as it is in the group.
    """
    fields = _option_group_fields(tp) if tp is not None else None
    if fields is not None and isinstance(value, Mapping) and not is_class_record(value):
        return {
            k: _walk(v, f"{where}.{k}", None if fields.get(k) is None else _admits_objects(fields[k]), build, error)
            for k, v in value.items()
        }
    return _walk(value, where, None if tp is None else _admits_objects(tp), build, error)


def _walk_args(cls: type, args: Mapping[str, Any], source: str, build: bool, error: type[VSRError]) -> dict[str, Any]:
    if not isinstance(args, Mapping):
        raise error(f"{source}: the recorded init arguments are not a mapping")
    types_ = _parameter_types(cls)
    out = {}
    for key, value in args.items():
        if not isinstance(key, str) or key.startswith("_"):
            continue
        out[key] = _walk_typed(value, f"{source}: init argument '{key}'", types_.get(key), build, error)
    return out


def check_init_args(cls: type, args: Mapping[str, Any], source: str, error: type[VSRError]) -> None:
    """Refuse recorded init arguments of ``cls`` that name classes vsr does not build (see the module docstring)."""
    _walk_args(cls, args, source, build=False, error=error)


def build_init_args(
    cls: type, args: Mapping[str, Any], source: str, error: type[VSRError]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(kwargs, records)``: the keyword arguments to build ``cls`` from recorded ``args``.

    ``records`` maps each argument that was rebuilt from a ``class_path`` record (directly or
    inside) to that record: put it back into ``method.hparams`` so the method is recorded the way it
    was read (re-saving or exporting it writes the same record).

    Raises:
        error: a record names a class vsr does not build, or a string stands for an object.
    """
    kwargs = _walk_args(cls, args, source, build=True, error=error)
    records = {key: args[key] for key in kwargs if _contains_record(args[key])}
    return kwargs, records


def _contains_record(value: Any) -> bool:
    if is_class_record(value):
        return True
    if isinstance(value, Mapping):
        return any(_contains_record(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_record(v) for v in value)
    return False
