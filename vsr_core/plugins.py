"""Plugin discovery through the ``vsr.plugins`` entry-point group.

A plugin is any installed distribution that declares::

    [project.entry-points."vsr.plugins"]
    mymethod = "mymethod"

and whose module defines one or more :class:`~vsr_core.method.VSRMethod` subclasses. Importing the
plugins registers their classes with Python, which is all LightningCLI needs to accept
``--model mymethod.MyMethod`` or the short ``--model MyMethod``. A plugin that fails to import is
reported by name with its error; the other plugins keep working.

Classes named by files (a checkpoint's method record, an export's ``vsr_method.json``) are resolved
only against the methods of installed plugins (:func:`installed_method`): nothing is imported
because a file names it.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points

from vsr_core.errors import CheckpointError, PluginError, VSRError
from vsr_core.method import VSRMethod

__all__ = [
    "available_methods",
    "class_path",
    "class_path_forms",
    "discover_plugins",
    "ENTRY_POINT_GROUP",
    "installed_method",
    "load_plugins",
    "method_class",
    "plugin_packages",
    "PluginInfo",
    "resolve_method",
]

ENTRY_POINT_GROUP = "vsr.plugins"


@dataclass
class PluginInfo:
    """One entry point of the ``vsr.plugins`` group, imported (or with the error that stopped it)."""

    name: str
    module_name: str
    distribution: str
    version: str
    methods: list[type[VSRMethod]] = field(default_factory=list)
    error: str | None = None


def _method_classes(module) -> list[type[VSRMethod]]:
    """Concrete VSRMethod subclasses a plugin module exposes (its public names)."""
    exported = getattr(module, "__all__", None)
    names = exported if exported is not None else [n for n in dir(module) if not n.startswith("_")]
    package = module.__name__.split(".")[0]
    found = []
    for name in names:
        obj = getattr(module, name, None)
        if not (inspect.isclass(obj) and issubclass(obj, VSRMethod)) or inspect.isabstract(obj) or obj in found:
            continue
        # Without __all__, a class imported from another plugin (e.g. a base class) is not this plugin's.
        if exported is None and obj.__module__.split(".")[0] != package:
            continue
        found.append(obj)
    return found


@cache
def discover_plugins() -> dict[str, PluginInfo]:
    """Import every ``vsr.plugins`` entry point once; failures are recorded, not raised."""
    plugins: dict[str, PluginInfo] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        info = PluginInfo(
            name=ep.name,
            module_name=ep.value,
            distribution=dist.metadata["Name"] if dist is not None else "?",
            version=dist.version if dist is not None else "?",
        )
        try:
            module = ep.load()
        except Exception as err:  # a broken plugin must not take the others down
            info.error = f"{type(err).__name__}: {err}".splitlines()[0]
        else:
            info.methods = _method_classes(module)
        plugins.setdefault(ep.name, info)
    return plugins


def load_plugins(warn: bool = True) -> dict[str, PluginInfo]:
    """Discover plugins and print one warning line per plugin that failed to import."""
    plugins = discover_plugins()
    if warn:
        for info in plugins.values():
            if info.error is not None:
                print(
                    f"warning: plugin '{info.name}' ({info.module_name}) failed to import: {info.error}",
                    file=sys.stderr,
                )
    return plugins


def class_path(cls: type) -> str:
    """The import path LightningCLI uses for a class, e.g. ``satb.SATBVR`` when the package exports it.

    This is the one name vsr writes for a class (checkpoint records, ``vsr_method.json``, listings);
    readers also accept the long form ``module.QualName`` (:func:`class_path_forms`).
    """
    module = cls.__module__
    top = module.split(".")[0]
    package = sys.modules.get(top)
    if package is not None and getattr(package, cls.__name__, None) is cls:
        return f"{top}.{cls.__name__}"
    return f"{module}.{cls.__qualname__}"


def class_path_forms(cls: type) -> set[str]:
    """Every name a record may use for ``cls``: :func:`class_path` and ``module.QualName`` (older files)."""
    return {class_path(cls), f"{cls.__module__}.{cls.__qualname__}"}


def available_methods() -> dict[str, type[VSRMethod]]:
    """``{"plugin.ClassName": class}`` for every method of every plugin that imported."""
    return {class_path(cls): cls for info in discover_plugins().values() for cls in info.methods}


def resolve_method(name: str) -> str:
    """Turn ``satb.SATBVR``, ``SATBVR`` or ``satb.model.SATBVR`` into the class path to instantiate.

    Raises:
        PluginError: the name matches no installed method (lists them, with a "did you mean"), or
            names a plugin whose import failed (with its error).
    """
    methods = available_methods()
    if name in methods:
        return name
    by_short: dict[str, list[str]] = {}
    for path, cls in methods.items():
        by_short.setdefault(cls.__name__, []).append(path)
        if f"{cls.__module__}.{cls.__qualname__}" == name:
            return path
    if name in by_short:
        if len(by_short[name]) > 1:
            raise PluginError(f"method name '{name}' is ambiguous: use one of {', '.join(sorted(by_short[name]))}")
        return by_short[name][0]
    plugin_name = name.split(".")[0]
    for info in discover_plugins().values():
        if info.error is not None and plugin_name in (info.name, info.module_name.split(".")[0]):
            raise PluginError(f"plugin '{info.name}' is installed but failed to import: {info.error}")
    if "." in name:
        # a class outside the plugin system (e.g. a test module): let LightningCLI import it
        module_name, _, attr = name.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
        obj = getattr(module, attr, None) if module is not None else None
        if inspect.isclass(obj) and issubclass(obj, VSRMethod):
            return name
    candidates = sorted(methods) + sorted(by_short)
    guess = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    hint = f" Did you mean '{guess[0]}'?" if guess else ""
    listing = ", ".join(sorted(methods)) or "none (install a plugin package)"
    raise PluginError(f"unknown method '{name}'.{hint} Installed methods: {listing} (see `vsr plugins`).")


def plugin_packages() -> set[str]:
    """Top-level package names of the plugins that imported (``{"reference", "satb", ...}``)."""
    return {info.module_name.split(".")[0] for info in discover_plugins().values() if info.error is None}


def installed_method(
    path: str, source: str = "the checkpoint", error: type[VSRError] = CheckpointError
) -> type[VSRMethod]:
    """The installed plugin method that a file names ``path`` (either form of :func:`class_path_forms`).

    Nothing is imported: ``path`` is looked up among the classes of the ``vsr.plugins`` entry points,
    so a file cannot make vsr import a module by naming it. ``source`` says what named the class.

    Raises:
        error: ``path`` is no installed method (names the plugin to install, or its import error).
    """
    if not isinstance(path, str) or not path:
        raise error(f"{source} names no method class")
    for cls in [*available_methods().values(), *_core_test_methods(path)]:
        if path in class_path_forms(cls):
            return cls
    plugin = path.split(".")[0]
    for info in discover_plugins().values():
        if info.error is not None and plugin in (info.name, info.module_name.split(".")[0]):
            raise error(f"{source} was written by '{path}', but plugin '{info.name}' failed to import: {info.error}")
    listing = ", ".join(sorted(available_methods())) or "none"
    raise error(
        f"{source} was written by method '{path}' from plugin '{plugin}', which is not installed "
        f"(installed methods: {listing}); install it (see `vsr plugins`)"
    )


def _core_test_methods(path: str) -> list[type[VSRMethod]]:
    """The test methods of ``vsr_core.testing`` (BoringMethod, ThreeNetworkMethod) when ``path`` names one.

    They are vsr's own code, imported from one fixed module name, so files written by them load
    like a plugin's without letting a file choose what is imported.
    """
    if not path.startswith("vsr_core.testing."):
        return []
    import vsr_core.testing as testing

    return [
        obj
        for name in testing.__all__
        if isinstance(obj := getattr(testing, name), type) and issubclass(obj, VSRMethod)
    ]


def method_class(name: str) -> type[VSRMethod]:
    """The method class for a name the user typed (``--model`` style, see :func:`resolve_method`)."""
    path = resolve_method(name)
    methods = available_methods()
    if path in methods:
        return methods[path]
    module_name, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)  # resolve_method checked it is a VSRMethod
