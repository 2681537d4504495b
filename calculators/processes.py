"""Ending external engines cleanly: GULP's shell template and pw.x under mpirun run in process groups of their own,
so a timeout or Ctrl-C must end the whole group, not only the shell."""
from __future__ import annotations

import os
import signal
import subprocess


def kill_process_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s whole process group and reap it: the shell, the engine and any mpirun."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()
