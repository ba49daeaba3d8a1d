"""Ctrl-C and SIGTERM end a vsr command the same way: temporaries removed, one line, a shell exit code.

SIGTERM is what ``kill``, ``timeout``, ``docker stop`` and Slurm send. Inside
:func:`signals_as_interrupts` it raises :class:`Terminated`, a ``KeyboardInterrupt``, so every
``finally``/``with`` that cleans up after Ctrl-C (the atomic video writer, ``vsr export``'s partial
folder) does the same for SIGTERM. The command then prints one line and exits with
``128 + signal number``: 130 for Ctrl-C, 143 for SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Terminated", "exit_code", "last_signal", "message", "signals_as_interrupts"]

_received: list[int] = []


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM; unwinds like Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    _received.append(signal.SIGTERM)
    raise Terminated


def _on_sigint(signum, frame) -> None:
    _received.append(signal.SIGINT)
    raise KeyboardInterrupt


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within: SIGTERM raises :class:`Terminated`, Ctrl-C ``KeyboardInterrupt``; both are remembered.

    Handlers can only be set from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def last_signal() -> int | None:
    """The last SIGINT/SIGTERM received inside :func:`signals_as_interrupts` (None: none)."""
    return _received[-1] if _received else None


def exit_code(err: BaseException | None = None) -> int:
    """130 after Ctrl-C, 143 after SIGTERM (from ``err`` if it is one, else the last signal received)."""
    if isinstance(err, Terminated) or (not isinstance(err, KeyboardInterrupt) and last_signal() == signal.SIGTERM):
        return 128 + signal.SIGTERM
    return 128 + signal.SIGINT


def message(err: BaseException | None = None) -> str:
    """``terminated`` (SIGTERM) or ``interrupted`` (Ctrl-C), for the one line a command prints."""
    return "terminated" if exit_code(err) == 128 + signal.SIGTERM else "interrupted"
