"""SIGTERM unwinds like Ctrl-C inside `signals_as_interrupts`; exit codes 130 and 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from vsr_core import interrupts


def test_sigterm_raises_terminated_runs_cleanups_and_is_remembered():
    script = textwrap.dedent(
        """
        import os, signal, sys
        from vsr_core import interrupts
        cleaned = []
        try:
            with interrupts.signals_as_interrupts():
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    signal.pause()  # not reached: the handler raises
                finally:
                    cleaned.append(True)
        except KeyboardInterrupt as err:
            print(type(err).__name__, interrupts.exit_code(err), interrupts.message(err), cleaned)
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)  # the previous handler is back
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=os.environ)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["Terminated 143 terminated [True]", "True"]


def test_exit_codes():
    assert interrupts.exit_code(interrupts.Terminated()) == 128 + signal.SIGTERM == 143
    assert (
        interrupts.exit_code(KeyboardInterrupt()) == 130 and interrupts.message(KeyboardInterrupt()) == "interrupted"
    )
