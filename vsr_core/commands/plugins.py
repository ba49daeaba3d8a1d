"""``vsr plugins``: list the installed method plugins, their classes and any import errors.

The listing reads the plugins' source (:mod:`vsr_core.commands.plugin_scan`) instead of importing
them, so it takes a fraction of a second instead of the seconds Lightning and diffusers take to
import. A plugin whose source does not give a clear answer is imported (and an import failure
shown); ``--import`` imports every plugin, which is what ``vsr fit`` does, to check that they load.
"""

from __future__ import annotations

import argparse
import inspect

from vsr_core.commands.plugin_scan import ScannedMethod, ScannedPlugin, scan_plugins

__all__ = ["first_doc_line", "imported_listing", "main"]


def first_doc_line(obj: object) -> str:
    """The first line of ``obj``'s docstring (inherited ones included), or ``""``."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def imported_listing(names: set[str] | None = None) -> dict[str, tuple[list[ScannedMethod], str | None]]:
    """Import the plugins (all, or those named) the way ``vsr fit`` does: ``{name: (methods, import error)}``."""
    from vsr_core.plugins import class_path, discover_plugins

    listing = {}
    for info in discover_plugins().values():
        if names is None or info.name in names:
            methods = [ScannedMethod(class_path(cls), first_doc_line(cls)) for cls in info.methods]
            listing[info.name] = (methods, info.error)
    return listing


def _rows(plugins: list[ScannedPlugin], force_import: bool) -> list[tuple[str, str, str, str]]:
    uncertain = {p.name for p in plugins if force_import or not p.certain}
    imported = imported_listing(uncertain) if uncertain else {}
    rows = []
    for plugin in plugins:
        dist = f"{plugin.distribution} {plugin.version}"
        methods, error = (
            imported.get(plugin.name, (plugin.methods, None)) if plugin.name in uncertain else (plugin.methods, None)
        )
        if error is not None:
            rows.append((plugin.name, dist, "[red]import failed[/red]", error))
        elif not methods:
            rows.append((plugin.name, dist, "-", f"module '{plugin.module_name}' defines no VSRMethod subclass"))
        for method in [] if error is not None else methods:
            rows.append((plugin.name, dist, method.class_path, method.doc_line))
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vsr plugins", description="List installed vsr method plugins.")
    parser.add_argument(
        "--import",
        dest="force_import",
        action="store_true",
        help="import every plugin (as `vsr fit` does) instead of reading its source: slower, shows import errors",
    )
    args = parser.parse_args(argv)
    plugins = sorted(scan_plugins(), key=lambda p: p.name)

    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    if not plugins:
        console.print("No vsr plugins installed (entry-point group 'vsr.plugins').")
        return 0
    table = Table(title="vsr plugins (entry-point group 'vsr.plugins')")
    for column in ("plugin", "distribution", "method class", "description"):
        table.add_column(column, overflow="fold")
    for row in _rows(plugins, args.force_import):
        table.add_row(*row)
    console.print(table)
    return 0
