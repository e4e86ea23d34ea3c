"""The worker pool and its supervision: hand out files, read each worker's pipe, replace crashed and hung workers.

Why this shape: each worker has its own pipe, and the main process knows which file each worker
holds (and `state`, shared memory, says which one it has started and when it last made
progress), so a crash or a hang becomes an error item for that file alone and a fresh worker
takes over the rest. --timeout counts from a file's last progress (a sampled frame decoded, a
chunk scored, or waiting on the main process for an ack), not from its start: a long file that
keeps moving is not cut off, a hung decoder still is. Crops that workers stream in go to a
CropTaker (the scan's CropBatcher, or extract-faces' store); while it holds too many the pool
stops reading pipes, which stalls the workers (at most worker.CHUNKS_IN_FLIGHT unscored chunks
each) instead of filling memory.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Protocol

import numpy as np

from dfscan.scanner import report as rp
from dfscan.scanner.options import ScanError
from dfscan.scanner.stage import FilePayload
from dfscan.scanner.worker import ACK, WorkerConfig, worker_process

PREFETCH = 2  # files handed to a worker at once: the one it works on and the next
MAX_STARTUP_FAILURES = 3


@dataclass
class Task:
    """A file to scan; `id` is its index in the scan's list of files."""

    id: int
    path: str
    kind: str
    fingerprint: dict | None = None  # size and mtime when handed to a worker, before it opens the file


@dataclass
class Worker:
    proc: Any
    conn: Connection
    state: Any  # shared [current task id or -1, time of its last progress]
    assigned: deque = field(default_factory=deque)
    completed: int = 0
    heard: float = 0.0  # when the main process last took a message from it (see _Supervisor._stalled)


def ack(w: Worker) -> None:
    """Tell a worker one of its chunks is scored (it may send another); a gone worker is ignored."""
    try:
        w.conn.send(ACK)
    except (OSError, ValueError):
        pass


def signal_name(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class CropTaker(Protocol):
    """Where the pool puts the crops workers stream in: the scan's CropBatcher, or extract-faces' store."""

    @property
    def full(self) -> bool: ...  # holding too many: stop reading pipes

    @property
    def busy(self) -> bool: ...  # results are due soon: poll the pipes briefly

    def add_crops(self, task: int, first: int, crops: np.ndarray, owner: Any) -> None: ...

    def drop(self, task: int) -> None: ...

    def collect(self, block: bool = False) -> None: ...

    def pump(self) -> None: ...

    def flush(self) -> None: ...


OnResult = Callable[[Task, FilePayload], None]
OnLost = Callable[[Task, str, str], None]  # (task, error code, message)


class Pool:
    """Worker processes with their own pipes; replaces any that crash or hang."""

    def __init__(self, n: int, cfg: WorkerConfig):
        self.ctx = mp.get_context("spawn")
        self.cfg = cfg
        self.workers: list[Worker] = []
        self.retired: list[Worker] = []  # told to exit early (nothing left for them); joined at close
        self.startup_failures = 0
        for _ in range(n):
            self.workers.append(self._start())

    def _start(self) -> Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        state = self.ctx.RawArray("d", [-1.0, 0.0])  # current task id, its last progress (time.time())
        proc = self.ctx.Process(target=worker_process, args=(child, state, self.cfg), daemon=True, name="dfscan-worker")
        proc.start()
        child.close()
        return Worker(proc, parent, state)

    def replace(self, w: Worker) -> None:
        if w.completed == 0 and w.state[0] < 0:
            self.startup_failures += 1
            if self.startup_failures >= MAX_STARTUP_FAILURES:
                raise ScanError(f"scan worker processes keep dying at start-up ({signal_name(w.proc.exitcode)}); "
                                "run `dfscan doctor`, or DFSCAN_DEBUG=1 to see their output")
        self._stop(w, kill=True)
        self.workers[self.workers.index(w)] = self._start()

    @staticmethod
    def _stop(w: Worker, kill: bool = False) -> None:
        if kill and w.proc.is_alive():
            w.proc.kill()
        w.proc.join(timeout=5)
        try:
            w.conn.close()
        except OSError:
            pass

    def retire(self, w: Worker) -> None:
        """Tell a worker to exit now, so its shutdown overlaps the others' work; it leaves the live list."""
        try:
            w.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.workers.remove(w)
        self.retired.append(w)

    def close(self, graceful: bool = True) -> None:
        for w in self.workers:
            if graceful and w.proc.is_alive():
                try:
                    w.conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
        deadline = time.time() + (5.0 if graceful else 0.0)
        for w in self.workers + self.retired:
            w.proc.join(timeout=max(0.0, deadline - time.time()))
            if w.proc.is_alive():
                w.proc.kill()
            self._stop(w)
        self.workers, self.retired = [], []

    def run(self, todo: deque[Task], batcher: CropTaker, on_result: OnResult, on_lost: OnLost,
            timeout: float | None) -> None:
        """Scan every task in `todo`: results to `on_result`, a crashed or hung worker's file to `on_lost`."""
        _Supervisor(self, todo, batcher, on_result, on_lost, timeout).run()


class _Supervisor:
    """The main loop of a pool's scan: assign, read pipes, feed the batcher, replace lost workers."""

    def __init__(self, pool: Pool, todo: deque[Task], batcher: CropTaker, on_result: OnResult, on_lost: OnLost,
                 timeout: float | None):
        self.pool, self.todo, self.batcher = pool, todo, batcher
        self.on_result, self.on_lost, self.timeout = on_result, on_lost, timeout or None

    def run(self) -> None:
        pool, batcher = self.pool, self.batcher
        while True:
            batcher.collect()
            self._assign()
            self._retire_idle()
            if not any(w.assigned for w in pool.workers) and not self.todo:
                batcher.flush()
                return
            if not batcher.full:
                self._read(0.01 if batcher.busy else 0.05)  # a short wait while a batch runs: its results come soon
            else:
                batcher.collect(block=True)  # too many crops waiting: let inference catch up before reading more
            self._supervise()
            batcher.pump()

    def _assign(self) -> None:
        for w in sorted(self.pool.workers, key=lambda w: len(w.assigned)):
            while self.todo and len(w.assigned) < PREFETCH and w.proc.is_alive():
                task = self.todo.popleft()
                task.fingerprint = rp.file_fingerprint(task.path)  # before the worker opens it
                try:
                    w.conn.send((task.id, task.path, task.kind))
                except (OSError, BrokenPipeError):
                    self.todo.appendleft(task)
                    break
                w.assigned.append(task)

    def _retire_idle(self) -> None:
        """With no file left to hand out, tell each idle worker to exit now rather than at the end.

        Its shutdown (detector and session closed, process gone: ~0.2 s) then overlaps the files
        the other workers are still on. A file a lost worker had not started goes back to `todo`
        and to the fresh worker that replaces it.
        """
        if self.todo:
            return
        for w in [w for w in self.pool.workers if not w.assigned]:
            self.pool.retire(w)

    def _read(self, wait_s: float) -> None:
        conns = {w.conn: w for w in self.pool.workers}
        sentinels = {w.proc.sentinel: w for w in self.pool.workers}
        for obj in wait(list(conns) + list(sentinels), timeout=wait_s):
            if obj in conns:
                w = conns[obj]
                try:
                    self._handle(w, w.conn.recv())
                except (EOFError, OSError):
                    pass  # its sentinel tells the rest

    def _drain(self, w: Worker) -> None:
        """Take every message the worker sent; EOF means it is gone."""
        try:
            while w.conn.poll():
                self._handle(w, w.conn.recv())
        except (EOFError, OSError):
            pass

    def _handle(self, w: Worker, msg: tuple) -> None:
        w.heard = time.time()
        kind = msg[0]
        if kind == "crops":
            assert w.assigned and w.assigned[0].id == msg[1], "worker sent crops of a file it does not hold"
            self.batcher.add_crops(msg[1], msg[2], msg[3], w)
        elif kind == "result":
            task = w.assigned.popleft()
            assert task.id == msg[1], "worker answered out of order"
            w.completed += 1
            self.on_result(task, msg[2])
        elif kind == "fatal":
            raise ScanError(f"a scan worker could not start: {msg[1]}")

    def _supervise(self) -> None:
        for w in list(self.pool.workers):
            if not w.proc.is_alive():
                self._drain(w)
                w.proc.join(timeout=1)
                self._lost(w, "worker_crashed", f"the decoder crashed on this file ({signal_name(w.proc.exitcode)})")
            elif self._stalled(w):
                w.proc.kill()
                w.proc.join(timeout=5)
                self._drain(w)
                self._lost(w, "timeout", f"gave up after {self.timeout:g} s (--timeout)")

    def _stalled(self, w: Worker) -> bool:
        """Its file made no progress for --timeout seconds, counting none of the time it waited on us.

        A worker sending a chunk of crops blocks until this process reads it, and this process may
        have been busy (inference, a blocking collect) meanwhile: its pipe is read first, and the
        last message heard counts as progress as much as the worker's own mark.
        """
        if not self.timeout or w.state[1] <= 0:
            return False
        self._drain(w)
        last = max(w.state[1], w.heard)
        return w.state[1] > 0 and time.time() - last > self.timeout

    def _lost(self, w: Worker, code: str, message: str) -> None:
        current = int(w.state[0])
        rest = [t for t in w.assigned if t.id != current]
        for t in w.assigned:
            if t.id == current:
                self.batcher.drop(t.id)  # its chunks still queued are scored and ignored
                self.on_lost(t, code, message)
        w.assigned.clear()
        self.todo.extendleft(reversed(rest))  # the files it had not started go to the front of the line
        self.pool.replace(w)
