"""Stopping cleanly: SIGINT and SIGTERM end training at the next step boundary, with a
checkpoint (the trainer's loop asks :class:`StopSignals` after every step)."""
from __future__ import annotations

import signal
import threading
from typing import Optional

__all__ = ["StopSignals", "ignore_stop_signals"]


def ignore_stop_signals(worker_id: int) -> None:
    """Data-loader workers leave SIGINT/SIGTERM to the main process, which stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class StopSignals:
    """While active, SIGINT and SIGTERM only set ``received`` (the loop saves a checkpoint
    at the next step boundary and stops); a second SIGINT interrupts at once. Only in the
    main thread (signal handlers cannot be set elsewhere); previous handlers come back on exit."""

    def __init__(self) -> None:
        self.received: Optional[str] = None
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._old[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):  # pragma: no cover
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
