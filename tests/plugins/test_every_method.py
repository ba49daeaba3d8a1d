"""timm-style smoke test: every installed method's tiny configuration, the same way.

For each class of each installed ``vsr.plugins`` entry point (found at collection time, so a newly
registered plugin is covered the day it is installed, with no edit here), pytest collects the
whole conformance kit: fit two steps, validate, restore (shape, range, sampling vocabulary,
reproducibility), checkpoint round trip, config round trip through the CLI. Each method builds
from its ``tiny_init_args``.
"""

from __future__ import annotations

from vsr_core.plugins import available_methods, discover_plugins
from vsr_core.testing import conformance_suite

#: The in-tree plugins and one method class of each.
IN_TREE = {
    "reference": "reference.ReferenceVSR",
    "satb": "satb.SATBVR",
    "pssr": "pssr.PSSR",
    "diffvsr": "diffvsr.DiffVSR",
    "ultravsr": "ultravsr.UltraVSR",
}


def test_in_tree_plugins_are_registered_like_a_third_party():
    plugins = discover_plugins()
    for name in IN_TREE:
        assert plugins[name].error is None and plugins[name].distribution == "vsr", name
    assert set(IN_TREE.values()) <= set(available_methods())


for _path, _cls in sorted(available_methods().items()):
    _suite = conformance_suite(_cls)
    _suite.__name__ = _suite.__qualname__ = f"Test_{_path.replace('.', '_')}"
    globals()[_suite.__name__] = _suite
del _path, _cls, _suite
