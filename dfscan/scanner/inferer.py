"""The inference thread of a scan that batches in the main process (GPU backends, or --no-infer-in-workers).

Why a thread: without it the main process stops taking results while a batch runs; finished
workers then block on their pipes and the cores sit idle (bench/scan.py measured 3.7x the
decode-only time that way against 2.x with the thread). ONNX Runtime and torch release the
GIL while they compute.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterator

import numpy as np


class Inferer:
    """Runs the backend in a thread of its own; batches in through submit, scores out through results."""

    def __init__(self, backend: Any, stats: dict):
        self.backend, self.stats = backend, stats
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()
        self.in_flight = 0  # batches submitted and not yet collected
        self.thread = threading.Thread(target=self._loop, name="dfscan-infer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.inbox.get()
            if job is None:
                return
            batch, owners = job
            try:
                t = time.perf_counter()
                scores = np.asarray(self.backend.predict(batch), dtype=np.float32).reshape(-1)
                self.stats["infer"] += time.perf_counter() - t
                if len(scores) != len(batch):
                    raise RuntimeError(f"the backend returned {len(scores)} scores for {len(batch)} crops")
                self.outbox.put((owners, scores, None))
            except BaseException as exc:  # handed to the main thread, which raises it
                self.outbox.put((owners, None, exc))

    def submit(self, batch: np.ndarray, owners: list) -> None:
        self.in_flight += 1
        self.inbox.put((batch, owners))

    def results(self, block: bool = False) -> Iterator[tuple[list, np.ndarray]]:
        """Finished batches: (owners, scores); re-raises an exception of the backend here."""
        while self.in_flight:
            try:
                owners, scores, exc = self.outbox.get(block=block)
            except queue.Empty:
                return
            self.in_flight -= 1
            if exc is not None:
                raise exc
            yield owners, scores

    def close(self) -> None:
        self.inbox.put(None)
        self.thread.join(timeout=60)
