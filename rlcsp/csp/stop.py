"""Clean stops: SIGINT/SIGTERM or a stop file end a search after its current step."""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable


class StopRequest:
    """SIGINT/SIGTERM or a stop file ask the loop to finish the current step and exit cleanly."""

    def __init__(self, stop_file: Path | None = None, extra: Callable[[], str | None] | None = None):
        self.stop_file = stop_file
        self.extra = extra
        self.signal: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: rely on the stop file
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __call__(self) -> str | None:
        if self.signal:
            return f"signal {self.signal}"
        if self.stop_file is not None and self.stop_file.exists():
            return f"stop file {self.stop_file}"
        return self.extra() if self.extra is not None else None
