"""Ctrl-C during a scan: the first press stops it and keeps the finished items; later ones cannot lose the report."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


class CtrlC:
    """SIGINT during a scan: the first Ctrl-C stops it (KeyboardInterrupt; the finished items are
    kept), later ones only say to wait, so that a second press cannot lose the report being
    written. After `hold()` (the report is being written) every press only says to wait."""

    def __init__(self) -> None:
        self.pressed = self.holding = False
        self.previous: Any = None
        self.installed = False

    def __enter__(self) -> "CtrlC":
        if threading.current_thread() is threading.main_thread():  # only there can a handler be set
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
            self.installed = True
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.pressed or self.holding:
            os.write(2, b"\nfinishing: writing the report of the finished files, please wait (Ctrl-\\ quits without it)\n")
            return
        self.pressed = True
        raise KeyboardInterrupt

    def hold(self) -> None:
        self.holding = True

    def __exit__(self, *exc: Any) -> None:
        if self.installed:  # None: the previous handler was not set from Python
            signal.signal(signal.SIGINT, self.previous if self.previous is not None else signal.SIG_DFL)
