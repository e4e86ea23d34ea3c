"""Injected faults for tests of the crash and hang handling: passed in by tests, never read from the environment.

Why it exists: the worker pool's fault handling (a SIGSEGV becomes `worker_crashed`, a file that
stops making progress becomes `timeout`) can only be trusted if it is tested on real processes,
so a test hands a FaultPlan to ScanOptions.faults and the worker (or Ray actor) acts it out
when it starts the named file. A scan without a plan never calls into this module.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

SLOW_FRAME_S = 0.4  # a "slow" file takes this long per sampled frame
ACTIONS = ("crash", "crash_once", "hang", "slow")


@dataclass(frozen=True)
class FaultPlan:
    """File name → what the worker does when it starts that file.

    crash: SIGSEGV at the start; crash_once: the same, only on the file's first attempt (Ray
    retries it); hang: sleep forever; slow: SLOW_FRAME_S per sampled frame.
    """

    actions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> "FaultPlan":
        """'crash:a.jpg,hang:b.jpg' → FaultPlan; an unknown action is a mistake in the test."""
        actions: dict[str, str] = {}
        for part in filter(None, spec.split(",")):
            action, _, name = part.partition(":")
            if action not in ACTIONS:
                raise ValueError(f"unknown fault {action!r}: choose one of {', '.join(ACTIONS)}")
            actions[name] = action
        return cls(actions)

    def frame_delay(self, path: str) -> float:
        """Seconds each sampled frame of `path` is held back (the heartbeat's delay)."""
        return SLOW_FRAME_S if self.actions.get(Path(path).name) == "slow" else 0.0

    def before_file(self, path: str, attempt: int = 0) -> None:
        """Act out a crash or a hang as the worker starts `path` (`attempt`: earlier starts that died)."""
        action = self.actions.get(Path(path).name)
        if action == "crash" or (action == "crash_once" and attempt == 0):
            os.kill(os.getpid(), signal.SIGSEGV)
        elif action == "hang":
            while True:
                time.sleep(3600)
