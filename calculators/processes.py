"""Ending external engines cleanly: GULP's shell template and pw.x under mpirun run in process groups of their own,
so a timeout or Ctrl-C must end the whole group, not only the shell, and a Python killed outright must not leave
them running."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have Linux send ``sig`` to this process when its parent dies (a no-op elsewhere). As a Popen
    ``preexec_fn`` it reaches the engine: pw.x, or mpirun, which passes SIGTERM on to its ranks. An engine in a
    session of its own sees no Ctrl-C, and a Python killed by SIGTERM or SIGKILL runs no handler to end it."""
    try:
        ctypes.CDLL(None).prctl(1, sig)  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        pass


def kill_process_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s whole process group and reap it: the shell, the engine and any mpirun."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()
