"""Read the method classes of installed plugins from their source, without importing them.

``vsr plugins`` only needs each plugin's method class paths and the first line of their docstrings.
Importing a plugin imports its method's whole stack (Lightning, diffusers, ...: seconds), so this
module reads the plugin's modules with :mod:`ast` instead: it finds the names the entry-point module
exports (``__all__``, else its public names), follows ``from X import Y`` through the plugin's own
modules and any other pure-Python package that depends on vsr, and keeps the classes whose bases lead
to :class:`vsr_core.method.VSRMethod` and that implement its abstract methods.

Nothing here executes plugin code: modules are located with :func:`importlib.util.find_spec` for
top-level names (which does not import them) and ``PathFinder`` below them. When the source does not
give a clear answer (a base class it cannot follow, a module-level import of a package that is not
installed, a syntax error, no method class at all), the plugin is marked :attr:`ScannedPlugin.certain`
``False`` and the caller imports it to get the real answer (or its import error).
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

__all__ = ["ScannedMethod", "ScannedPlugin", "scan_plugins", "scan_plugin"]

ENTRY_POINT_GROUP = "vsr.plugins"
# Where VSRMethod lives, and the public alias that resolves to it lazily (vsr_core.__getattr__).
_ROOTS = {("vsr_core.method", "VSRMethod"), ("vsr_core", "VSRMethod")}
# Packages that never define VSRMethod subclasses (they do not depend on vsr): not read.
_FOREIGN_HINT = {
    "abc",
    "typing",
    "torch",
    "lightning",
    "pytorch_lightning",
    "diffusers",
    "transformers",
    "peft",
    "numpy",
    "jsonargparse",
    "dataclasses",
    "collections",
    "enum",
    "builtins",
    "kornia",
    "timm",
}
_MAX_FILES = 200  # a bound on how much source one listing reads
_NEEDS_VSR = re.compile(r"^\s*vsr\s*($|[\[<>=!~;(])", re.IGNORECASE)  # a requirement line naming the vsr distribution


@dataclass
class ScannedMethod:
    """A method class found in the source: its class path (``plugin.Class``) and first docstring line."""

    class_path: str
    doc_line: str


@dataclass
class ScannedPlugin:
    """One entry point of ``vsr.plugins`` as read from source; ``certain=False``: import it to know."""

    name: str
    module_name: str
    distribution: str
    version: str
    methods: list[ScannedMethod] = field(default_factory=list)
    certain: bool = True
    reason: str = ""


class _Unknown(Exception):
    """The source does not say (a base that cannot be followed, a module that cannot be read)."""


@dataclass
class _Module:
    name: str
    is_package: bool
    # name -> ("class", ClassDef) | ("from", (module, attr)) | ("import", module) | ("alias", expr) | ("value", None)
    # | ("dynamic", None) (made by a call at import time: only importing shows what it is)
    symbols: dict[str, tuple[str, object]]
    exports: list[str] | None
    lazy: bool  # defines a module-level __getattr__ (names it cannot show statically)
    imports: list[str]  # top-level packages imported at module level, outside try blocks


def _spec(name: str):
    parts = name.split(".")
    spec = sys.modules[parts[0]].__spec__ if parts[0] in sys.modules else importlib.util.find_spec(parts[0])
    for depth in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = importlib.machinery.PathFinder.find_spec(
            ".".join(parts[: depth + 1]), list(spec.submodule_search_locations)
        )
    return spec


class _Reader:
    """Parses modules on demand (each once) and resolves names to class definitions."""

    def __init__(self) -> None:
        self._modules: dict[str, _Module | None] = {}
        self._distributions: dict[str, bool] = {}
        self._root: tuple[frozenset[str], str] | None = None

    def module(self, name: str) -> _Module:
        if name not in self._modules:
            if len(self._modules) >= _MAX_FILES:
                raise _Unknown(f"more than {_MAX_FILES} modules to read")
            self._modules[name] = self._parse(name)
        parsed = self._modules[name]
        if parsed is None:
            raise _Unknown(f"cannot read module {name}")
        return parsed

    @staticmethod
    def _parse(name: str) -> _Module | None:
        try:
            spec = _spec(name)
        except (ImportError, ValueError):
            return None
        origin = getattr(spec, "origin", None)
        if spec is None or not origin or not origin.endswith(".py"):
            return None  # namespace package, extension module, frozen: not source we can read
        try:
            tree = ast.parse(Path(origin).read_text(encoding="utf-8"), filename=origin)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            return None
        is_package = spec.submodule_search_locations is not None
        package = name if is_package else name.rpartition(".")[0]
        symbols: dict[str, tuple[str, object]] = {}
        exports, lazy, imports = None, False, []
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                symbols[node.name] = ("class", node)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, package)
                if node.level == 0 and node.module:
                    imports.append(node.module.split(".")[0])
                for alias in node.names:
                    if alias.name != "*":
                        symbols[alias.asname or alias.name] = ("from", (source, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    imports.append(alias.name.split(".")[0])
                    if alias.asname:
                        symbols[alias.asname] = ("import", alias.name)
                    else:
                        top = alias.name.split(".")[0]
                        symbols[top] = ("import", top)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lazy = lazy or node.name == "__getattr__"
                symbols[node.name] = ("value", None)  # a function: not a class
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        if target.id == "__all__":
                            exports = _string_list(node.value)
                        symbols[target.id] = _assigned(node.value)
        return _Module(name, is_package, symbols, exports, lazy, imports)

    def depends_on_vsr(self, top: str) -> bool:
        """Whether top-level package ``top`` may hold VSRMethod subclasses (vsr itself, or a package needing vsr)."""
        if top == "vsr_core":
            return True
        if top in _FOREIGN_HINT or top in sys.stdlib_module_names:
            return False
        if top not in self._distributions:
            from importlib.metadata import packages_distributions, requires

            names = packages_distributions().get(top)
            if not names:
                self._distributions[top] = True  # not installed as a distribution (a path entry): read it
            else:
                self._distributions[top] = any(dist.lower() == "vsr" for dist in names) or any(
                    _NEEDS_VSR.match(req) for dist in names for req in (requires(dist) or [])
                )
        return self._distributions[top]

    def resolve(self, module_name: str, name: str, depth: int = 0) -> tuple[str, ast.ClassDef] | str | None:
        """``name`` in ``module_name``: ``(defining module, ClassDef)``, ``"root"`` (VSRMethod), ``None`` (not a class)."""
        if (module_name, name) in _ROOTS:
            return "root"
        if depth > 30:
            raise _Unknown(f"import chain too deep at {module_name}.{name}")
        if not self.depends_on_vsr(module_name.split(".")[0]):
            return None
        module = self.module(module_name)
        entry = module.symbols.get(name)
        if entry is None:
            if module.is_package and _spec(f"{module_name}.{name}") is not None:
                return None  # a submodule, not a class
            raise _Unknown(f"{module_name} does not show where {name} comes from")
        kind, value = entry
        if kind == "class":
            return module_name, value
        if kind in ("import", "value"):
            return None
        if kind == "alias":
            return self.base(module_name, value)
        if kind == "dynamic":
            raise _Unknown(f"{module_name}.{name} is made at import time")
        source, attr = value
        if source is None:
            raise _Unknown(f"relative import beyond the top of {module_name}")
        return self.resolve(source, attr, depth + 1)

    def base(self, module_name: str, expr: ast.expr) -> tuple[str, ast.ClassDef] | str | None:
        """What a base-class expression of a class in ``module_name`` names (as :meth:`resolve`)."""
        if isinstance(expr, ast.Name):
            if expr.id in ("object", "Generic", "ABC"):
                return None
            return self.resolve(module_name, expr.id)
        if isinstance(expr, ast.Attribute):
            dotted = _dotted(expr)
            if dotted is None:
                raise _Unknown(f"base {ast.unparse(expr)} in {module_name}")
            head, _, attr = dotted.rpartition(".")
            first = head.split(".")[0]
            entry = self.module(module_name).symbols.get(first)
            if entry is None:
                raise _Unknown(f"base {dotted} in {module_name}")
            kind, value = entry
            if kind == "import":
                target = value + head[len(first) :]
            elif kind == "from":
                source, name = value
                target = f"{source}.{name}" + head[len(first) :]
            else:
                raise _Unknown(f"base {dotted} in {module_name}")
            return self.resolve(target, attr)
        if isinstance(expr, ast.Subscript):  # Generic[T] and the like
            return self.base(module_name, expr.value)
        raise _Unknown(f"base {ast.unparse(expr)} in {module_name}")

    def method_info(self, module_name: str, node: ast.ClassDef, depth: int = 0) -> tuple[bool, set[str], str]:
        """``(is a VSRMethod subclass, abstract method names left, first docstring line)`` of a class."""
        if depth > 30:
            raise _Unknown(f"class hierarchy too deep at {node.name}")
        is_method, abstract, doc = False, set(), _doc_line(node)
        for expr in node.bases:
            target = self.base(module_name, expr)
            if target == "root":
                root_abstract, root_doc = self._root_info()
                is_method, abstract = True, abstract | root_abstract
                doc = doc or root_doc
            elif target is not None:
                sub_method, sub_abstract, sub_doc = self.method_info(*target, depth + 1)
                is_method = is_method or sub_method
                abstract |= sub_abstract
                doc = doc or sub_doc
        own, own_abstract = _defined_names(node)
        return is_method, (abstract - own) | own_abstract, doc

    def _root_info(self) -> tuple[frozenset[str], str]:
        """VSRMethod's abstract method names and first docstring line, read from vsr_core/method.py."""
        if self._root is None:
            entry = self.module("vsr_core.method").symbols.get("VSRMethod")
            if not entry or entry[0] != "class":
                raise _Unknown("vsr_core.method defines no VSRMethod class")
            self._root = frozenset(_defined_names(entry[1])[1]), _doc_line(entry[1])
        return self._root

    def parsed_modules(self) -> list[_Module]:
        """The modules read so far."""
        return [m for m in self._modules.values() if m is not None]


def _absolute(node: ast.ImportFrom, package: str) -> str | None:
    """The absolute module a ``from ... import`` names, from the package the importing module is in."""
    if node.level == 0:
        return node.module
    parts = package.split(".") if package else []
    if node.level > len(parts):
        return None  # beyond the top-level package
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


_LITERALS = (
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Set,
    ast.JoinedStr,
    ast.ListComp,
    ast.DictComp,
    ast.SetComp,
)


def _assigned(value: ast.expr) -> tuple[str, object]:
    """What a module-level assignment makes, as a symbol entry (see :class:`_Module`)."""
    if isinstance(value, _LITERALS) or (isinstance(value, ast.BinOp) and isinstance(value.left, _LITERALS)):
        return ("value", None)
    if isinstance(value, (ast.Name, ast.Attribute)):
        return ("alias", value)
    return ("dynamic", None)


def _string_list(value: ast.expr) -> list[str] | None:
    if isinstance(value, (ast.List, ast.Tuple)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts
    ):
        return [e.value for e in value.elts]
    return None


def _dotted(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        head = _dotted(expr.value)
        return f"{head}.{expr.attr}" if head else None
    return None


def _doc_line(node: ast.ClassDef) -> str:
    doc = (ast.get_docstring(node) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _is_abstract(node: ast.stmt) -> bool:
    decorators = getattr(node, "decorator_list", [])
    return any((_dotted(d) or "").rsplit(".", 1)[-1] == "abstractmethod" for d in decorators)


def _defined_names(node: ast.ClassDef) -> tuple[set[str], set[str]]:
    """Names a class body defines, and those of them that are abstract methods."""
    defined, abstract = set(), set()
    for stmt in node.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            (abstract if _is_abstract(stmt) else defined).add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            defined |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            defined.add(stmt.target.id)
    return defined, abstract


def scan_plugin(reader: _Reader, name: str, module_name: str, distribution: str, version: str) -> ScannedPlugin:
    """Read one entry point's module; ``certain=False`` (with the reason) when only importing it can tell."""
    plugin = ScannedPlugin(name, module_name, distribution, version)
    package = module_name.split(".")[0]
    try:
        module = reader.module(module_name)
        names = module.exports
        if names is None:
            names = [n for n in module.symbols if not n.startswith("_")]
        for export in names:
            target = reader.resolve(module_name, export)
            if not isinstance(target, tuple):
                continue
            defined_in, node = target
            if module.exports is None and defined_in.split(".")[0] != package:
                continue  # imported from elsewhere, not this plugin's (as vsr_core.plugins decides)
            is_method, abstract, doc = reader.method_info(defined_in, node)
            if not is_method or abstract:
                continue
            # The name vsr_core.plugins.class_path gives: the package's when the package exports it.
            try:
                exported_by_package = reader.resolve(package, node.name) == target
            except _Unknown:
                exported_by_package = False
            path = f"{package}.{node.name}" if exported_by_package else f"{defined_in}.{node.name}"
            if path not in [m.class_path for m in plugin.methods]:
                plugin.methods.append(ScannedMethod(path, doc))
        # A module-level import of a package that is not installed would make the import fail.
        own = [m for m in reader.parsed_modules() if m.name.split(".")[0] == package]
        for top in dict.fromkeys(t for m in own for t in m.imports):
            if _spec(top) is None:
                raise _Unknown(f"imports {top}, which is not installed")
        if not plugin.methods:
            raise _Unknown("no method class found in the source")
    except _Unknown as why:
        plugin.certain, plugin.reason, plugin.methods = False, str(why), []
    return plugin


def scan_plugins() -> list[ScannedPlugin]:
    """Every ``vsr.plugins`` entry point, read from source (first entry of each name wins, as on import)."""
    reader, seen, plugins = _Reader(), set(), []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        dist = ep.dist
        distribution = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        if ep.attr:  # "module:object" entry points name an object: only importing shows it
            plugins.append(
                ScannedPlugin(ep.name, ep.value, distribution, version, certain=False, reason="names an object")
            )
            continue
        plugins.append(scan_plugin(reader, ep.name, ep.module, distribution, version))
    return plugins
