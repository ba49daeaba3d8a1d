"""Commands of ``vsr`` beyond LightningCLI's fit/validate/test/predict.

Each entry maps a command name to ``"module:function"``; the function takes the remaining argv
and returns an exit code. Modules are imported only when their command runs, so ``vsr --help``
stays fast and a broken optional command cannot break training.
"""

EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "plugins": ("vsr_core.commands.plugins:main", "list installed method plugins and their classes"),
    "restore": (
        "vsr_core.commands.restore:main",
        "restore video files or frame folders of any length with a checkpoint",
    ),
    "evaluate": (
        "vsr_core.commands.evaluate:main",
        "score restored videos against ground truth (or no-reference only)",
    ),
    "degrade": ("vsr_core.commands.degrade:main", "write the LQ half of a paired set: degrade HR clips reproducibly"),
    "bench": ("vsr_core.commands.bench:main", "measure inference and training speed and memory of a method"),
    "export": ("vsr_core.commands.export:main", "write a checkpoint's trained parts as a diffusers-format folder"),
    "precompute": (
        "vsr_core.commands.precompute:main",
        "encode captions once into a text-embedding cache for training",
    ),
}
