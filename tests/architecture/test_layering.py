"""The layering the architecture promises, checked on the source (AST), not by convention.

* In-tree plugins import only what the core exports: ``vsr_core`` itself or one of its direct
  modules/packages (``vsr_core.latent``, ``vsr_core.options``, ...), and only names in that module's
  ``__all__`` — exactly what a third-party plugin can rely on.
* The core never imports a plugin, and nothing below the command line imports ``vsr_core.commands``
  or ``vsr_core.cli``.
* Every public core module declares ``__all__``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "vsr_core"
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file())
PLUGIN_NAMES = {p.name for p in PLUGINS}
TOP_LEVEL = {"cli.py", "__main__.py"}  # the command line may import its commands


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, names, line)`` for every import in ``path`` (``names`` empty for ``import x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((a.name, [], node.lineno) for a in node.names)
    return found


def is_public_core_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "vsr_core" and len(parts) <= 2


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugins_import_only_exported_core_names(plugin: Path):
    problems = []
    for path in sorted(plugin.rglob("*.py")):
        for module, names, line in imports_of(path):
            if not module.startswith("vsr_core"):
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if not is_public_core_module(module):
                problems.append(f"{where} imports the internal module {module}")
                continue
            exported = set(getattr(importlib.import_module(module), "__all__", ()))
            for name in names:
                if name not in exported:
                    problems.append(f"{where} imports {module}.{name}, which {module}.__all__ does not export")
    assert not problems, "\n".join(problems)


def test_core_never_imports_plugins_or_commands():
    problems = []
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE)
        # commands/, the CLI and the testing kit (which round-trips configs through the CLI) sit on top
        below_commands = rel.parts[0] not in ("commands", "testing") and rel.name not in TOP_LEVEL
        for module, _, line in imports_of(path):
            top = module.split(".")[0]
            if top in PLUGIN_NAMES:
                problems.append(f"vsr_core/{rel}:{line} imports the plugin {module}")
            if below_commands and (module.startswith("vsr_core.commands") or module == "vsr_core.cli"):
                problems.append(f"vsr_core/{rel}:{line} imports {module} from below the command line")
    assert not problems, "\n".join(problems)


def test_every_public_core_module_declares_all():
    missing = []
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE)
        if (
            rel.parts[0] == "commands"
            or rel.name in TOP_LEVEL
            or rel.name.startswith("_")
            and rel.name != "__init__.py"
        ):
            continue
        tree = ast.parse(path.read_text())
        declares = any(
            isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)
            for n in tree.body
        )
        if not declares:
            missing.append(f"vsr_core/{rel}")
    assert not missing, "modules without __all__: " + ", ".join(missing)


def test_top_level_names_resolve_to_their_defining_modules():
    import vsr_core

    for name in vsr_core.__all__:
        module = importlib.import_module(vsr_core._EXPORTS[name])
        assert getattr(vsr_core, name) is getattr(module, name), name
        assert name in module.__all__, f"{name} is re-exported but not in {module.__name__}.__all__"
