"""``vsr plugins``: list the installed method plugins, their classes and any import errors."""

from __future__ import annotations

import argparse
import inspect

from rich.console import Console
from rich.table import Table

from vsr_core.plugins import class_path, discover_plugins


def first_doc_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vsr plugins", description="List installed vsr method plugins.")
    parser.parse_args(argv)
    plugins = discover_plugins()
    console = Console(soft_wrap=True)
    if not plugins:
        console.print("No vsr plugins installed (entry-point group 'vsr.plugins').")
        return 0
    table = Table(title="vsr plugins (entry-point group 'vsr.plugins')")
    for column in ("plugin", "distribution", "method class", "description"):
        table.add_column(column, overflow="fold")
    for info in sorted(plugins.values(), key=lambda i: i.name):
        dist = f"{info.distribution} {info.version}"
        if info.error is not None:
            table.add_row(info.name, dist, "[red]import failed[/red]", info.error)
            continue
        if not info.methods:
            table.add_row(info.name, dist, "-", f"module '{info.module_name}' defines no VSRMethod subclass")
        for cls in info.methods:
            table.add_row(info.name, dist, class_path(cls), first_doc_line(cls))
    console.print(table)
    return 0
