"""Method-specific sampling options from the command line: ``vsr restore --sample KEY=VALUE``.

The options a method takes are the keyword arguments of its ``restore``
(:meth:`~vsr_core.method.VSRMethod.sampling_arguments`); each value is parsed by the parameter's
annotation (``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, ``X | None``). The step count
and the noise source have their own flags (``--steps``, ``--seed``). :func:`describe_sampling` is
what ``vsr restore --help-method NAME`` prints: every option with its type, default and the
description from ``restore``'s docstring.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Any, Literal

from vsr_core.errors import ConfigError

__all__ = ["describe_sampling", "parse_sample_options", "sampling_parameters"]

#: Sampling arguments with a dedicated ``vsr restore`` flag.
FLAGGED = {"num_inference_steps": "--steps", "generator": "--seed"}

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def sampling_parameters(method: Any) -> dict[str, inspect.Parameter]:
    """The keyword arguments of ``method.restore`` besides ``lq`` and ``prompt`` (a method or its class)."""
    cls = method if isinstance(method, type) else type(method)
    arguments = getattr(cls, "sampling_arguments", None)
    if callable(arguments):
        return dict(arguments())
    params = inspect.signature(cls.restore).parameters
    return {
        name: p
        for name, p in params.items()
        if name not in ("self", "lq", "prompt") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _annotations(cls: type) -> dict[str, Any]:
    """Resolved annotations of ``restore``; an argument a subclass leaves unannotated keeps its base's."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        restore = vars(klass).get("restore")
        if restore is None:
            continue
        try:
            hints.update(typing.get_type_hints(restore))
        except Exception:  # an annotation that cannot be resolved: fall back to its text
            hints.update(getattr(restore, "__annotations__", {}))
    return hints


def _parts(annotation: Any) -> tuple[list[Any], bool]:
    """The non-None alternatives of an annotation and whether ``None`` is allowed."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        return [a for a in args if a is not type(None)], type(None) in args
    return [annotation], annotation is None or annotation is type(None)


def _type_text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "any"
    alternatives, optional = _parts(annotation)
    texts = []
    for a in alternatives:
        if typing.get_origin(a) is Literal:
            texts.append("|".join(str(v) for v in typing.get_args(a)))
        else:
            texts.append(getattr(a, "__name__", str(a)))
    return " | ".join(texts) + (" | none" if optional else "")


def _parse_one(text: str, annotation: Any) -> Any:
    if typing.get_origin(annotation) is Literal:
        for value in typing.get_args(annotation):
            if str(value).lower() == text.lower():
                return value
        raise ValueError
    if annotation is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError
    if annotation is int:
        return int(text)
    if annotation is float:
        return float(text)
    if annotation is str or annotation is inspect.Parameter.empty or isinstance(annotation, str):
        return text
    import yaml  # lists, tuples, dicts: written as YAML/JSON

    return yaml.safe_load(text)


def parse_value(key: str, text: str, annotation: Any) -> Any:
    """Parse ``text`` as a value of ``annotation``; one-line :class:`ConfigError` when it is not one."""
    alternatives, optional = _parts(annotation)
    if optional and text.lower() in ("none", "null"):
        return None
    for alternative in alternatives:
        try:
            return _parse_one(text, alternative)
        except (ValueError, TypeError):
            continue
        except Exception:  # a YAML error
            continue
    raise ConfigError(f"--sample {key}={text}: expected {_type_text(annotation)}")


def parse_sample_options(method: Any, options: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (or ``{key: value}``) -> ``{key: value}`` for ``method``'s ``restore`` options.

    Strings are parsed by the parameter's annotation; other values of a dict are kept as given.

    Raises:
        ConfigError: a pair without ``=``, a key the method does not take (the known ones are
            listed), a key with its own flag, or a value of the wrong type.
    """
    cls = method if isinstance(method, type) else type(method)
    params = sampling_parameters(cls)
    hints = _annotations(cls)
    known = sorted(k for k in params if k not in FLAGGED)
    if isinstance(options, dict):
        items = list(options.items())
    else:
        items = []
        for pair in options or []:
            key, sep, text = pair.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--sample expects KEY=VALUE, got {pair!r}")
            items.append((key, text.strip()))
    parsed: dict[str, Any] = {}
    for key, value in items:
        key = key.strip().replace("-", "_")
        if key in FLAGGED:
            raise ConfigError(f"--sample {key}: use {FLAGGED[key]} instead")
        if key not in params:
            listed = ", ".join(known) if known else "none"
            raise ConfigError(f"--sample {key}: {cls.__name__} has no such sampling option; it takes: {listed}")
        annotation = hints.get(key, params[key].annotation)
        parsed[key] = parse_value(key, value, annotation) if isinstance(value, str) else value
    return parsed


def _docstring_args(function: Any) -> dict[str, str]:
    """``{name: description}`` from the ``Args:`` section of a Google-style docstring."""
    lines = (inspect.getdoc(function) or "").splitlines()
    start = next((k for k, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:")), None)
    found: dict[str, str] = {}
    if start is None:
        return found
    base = len(lines[start]) - len(lines[start].lstrip())
    names: list[str] = []
    indent = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth <= base:
            break  # the section ended
        indent = depth if indent is None else indent
        match = re.match(r"([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)(?:\s*\([^)]*\))?:\s*(.*)", line.strip())
        if depth == indent and match:
            names = [n.strip() for n in match.group(1).split(",")]
            for name in names:
                found[name] = match.group(2).strip()
        elif names and depth > indent:
            for name in names:
                found[name] = f"{found[name]} {line.strip()}"
    return found


def describe_sampling(method: Any) -> str:
    """What ``vsr restore --help-method NAME`` prints: each sampling option, its type, default and description."""
    cls = method if isinstance(method, type) else type(method)
    params = sampling_parameters(cls)
    hints = _annotations(cls)
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # the base's descriptions of the shared arguments, then the method's own
        if "restore" in vars(klass):
            docs.update(_docstring_args(vars(klass)["restore"]))
    lines = [f"{cls.__module__.split('.')[0]}.{cls.__name__} sampling options (vsr restore --sample KEY=VALUE):"]
    for name, p in params.items():
        default = "method default" if p.default is None else ("required" if p.default is p.empty else repr(p.default))
        flag = f" [set with {FLAGGED[name]}]" if name in FLAGGED else ""
        lines.append(f"  {name}: {_type_text(hints.get(name, p.annotation))} (default: {default}){flag}")
        if docs.get(name):
            lines.append(f"      {docs[name]}")
    if len(lines) == 1:
        lines.append("  (none)")
    return "\n".join(lines)
