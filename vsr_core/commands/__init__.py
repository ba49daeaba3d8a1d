"""Commands of ``vsr`` beyond LightningCLI's fit/validate/test/predict.

Each entry maps a command name to ``"module:function"``; the function takes the remaining argv
and returns an exit code. Modules are imported only when their command runs, so ``vsr --help``
stays fast and a broken optional command cannot break training.
"""

EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "plugins": ("vsr_core.commands.plugins:main", "list installed method plugins and their classes"),
}
