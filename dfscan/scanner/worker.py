"""What runs inside a scan worker process: one detector (and on the CPU one scorer) for its life, files in, crops out.

Why a process per worker: decoding and face detection are CPU-bound and sometimes crash or hang
on hostile files, so they run apart from the main process (spawn context: forking a process that
holds torch, ONNX Runtime or MediaPipe threads is not safe). Each worker talks to the main
process over its own pipe (dfscan.scanner.pool), so a worker that dies can only garble its own pipe.

Messages on the pipe — main → worker: (task_id, path, kind), ACK, or None (stop);
worker → main: ("ready", pid), ("crops", task_id, first, crops), ("result", task_id, payload),
("fatal", message).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

import numpy as np

from dfscan.scanner import report as rp
from dfscan.scanner.faults import FaultPlan
from dfscan.scanner.stage import (
    CropSink,
    FilePayload,
    StageConfig,
    close_detector,
    error_payload,
    heartbeat,
    open_detector,
    process_file,
    setup_process,
)

CHUNKS_IN_FLIGHT = 2  # chunks of crops a worker may have sent and not yet had scored (see _Link)
ACK = ("ack",)  # main → worker: one chunk of its crops has been scored


@dataclass
class ScorerSpec:
    """A CPU backend for a worker to build and score its own crops with (see pipeline: resource_plan)."""

    name: str  # "onnxruntime" | "torch"
    weights: str
    onnx_path: str | None  # the main process's exported file: the worker then never imports torch
    threads: int
    batch_size: int
    config: dict  # the checkpoint's model config


@dataclass
class WorkerConfig:
    """Everything a worker is started with (pickled once into the spawned process)."""

    stage: StageConfig
    scorer: ScorerSpec | None = None  # None: crops go to the main process to be batched
    faults: FaultPlan | None = None  # tests only: crash or hang on named files


def make_scorer(spec: ScorerSpec) -> Any:
    """The worker's own CPU backend (one thread by default: the worker pool is the parallelism).

    ONNX Runtime gets the main process's exported file and config, so the worker never imports
    torch (1.6 s of start-up per worker on this machine, longer than a 10 s clip takes).
    """
    if spec.name == "onnxruntime":
        from dfscan.engines.onnxruntime import OnnxRuntimeBackend
        from dfscan.train.config import ModelConfig

        return OnnxRuntimeBackend(spec.weights, batch_size=spec.batch_size, threads=spec.threads,
                                  onnx_path=spec.onnx_path, config=ModelConfig.from_dict(spec.config))
    import torch

    from dfscan.engines.torch import TorchBackend

    torch.set_num_threads(spec.threads)
    return TorchBackend(spec.weights, device="cpu", fp16=False, batch_size=spec.batch_size)


class _ScoreInWorker:
    """A CPU backend in the worker scores each chunk as it comes: only the numbers are kept and sent back."""

    def __init__(self, scorer: Any, beat: Callable[[], None]):
        self.scorer, self.beat = scorer, beat
        self.parts: list[np.ndarray] = []
        self.seconds = 0.0

    def __call__(self, first: int, crops: np.ndarray) -> None:
        t = time.perf_counter()
        scores = np.asarray(self.scorer.predict(crops), dtype=np.float32).reshape(-1)
        self.seconds += time.perf_counter() - t
        if len(scores) != len(crops):
            raise RuntimeError(f"the backend returned {len(scores)} scores for {len(crops)} crops")
        self.parts.append(scores)
        self.beat()

    def into(self, payload: FilePayload) -> None:
        """The file's scores, indexed by crop sequence number, and the time they took."""
        payload["scores"] = np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)
        payload["timings"]["infer"] = self.seconds


class _Link:
    """The worker's end of its pipe: tasks and acks come in on it, crops and results go out.

    At most CHUNKS_IN_FLIGHT chunks of crops are sent and not yet scored: a fast decoder then
    waits for inference instead of filling memory. Tasks that arrive meanwhile (pool.PREFETCH)
    are kept for later.
    """

    def __init__(self, conn: Connection, state: Any):
        self.conn, self.state = conn, state
        self.tasks: deque = deque()
        self.unacked = 0

    def next_task(self) -> tuple | None:
        while not self.tasks:
            self._take(self.conn.recv())
        return self.tasks.popleft()

    def send_crops(self, task_id: int, first: int, crops: np.ndarray) -> None:
        while self.unacked >= CHUNKS_IN_FLIGHT:
            if self.conn.poll(1.0):
                self._take(self.conn.recv())
            self.state[1] = time.time()  # waiting on inference is not this file stalling (--timeout)
        self.conn.send(("crops", task_id, first, crops))
        self.unacked += 1

    def _take(self, msg: Any) -> None:
        if msg == ACK:
            self.unacked -= 1
        else:
            self.tasks.append(msg)


def worker_main(conn: Connection, state: Any, cfg: WorkerConfig) -> None:
    """A worker: one detector for its life; files in, crops (in chunks, as made) and metadata out, over its own pipe.

    `state` is shared with the main process: [current task id or -1, time of its last progress].
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides what Ctrl-C means
    setup_process()
    faults = cfg.faults
    detector = scorer = None
    try:
        detector = open_detector(cfg.stage)
        if cfg.scorer is not None:
            scorer = make_scorer(cfg.scorer)
        conn.send(("ready", os.getpid()))
        link = _Link(conn, state)
        while True:
            task = link.next_task()
            if task is None:
                break
            task_id, path, kind = task
            state[0], state[1] = float(task_id), time.time()
            if faults is not None:
                faults.before_file(path)
            beat = heartbeat(state, faults.frame_delay(path) if faults is not None else 0.0)
            in_worker = _ScoreInWorker(scorer, beat) if scorer is not None else None
            deliver = in_worker if in_worker is not None else functools.partial(link.send_crops, task_id)
            try:
                payload = process_file(path, kind, detector, cfg.stage, CropSink(cfg.stage.chunk, deliver), beat)
                if in_worker is not None:
                    in_worker.into(payload)
            except Exception as exc:  # every failure of one file becomes that file's error item
                payload = error_payload(exc)
            state[0], state[1] = -1.0, 0.0
            conn.send(("result", task_id, payload))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    except Exception as exc:  # the detector could not start: tell the main process why
        try:
            conn.send(("fatal", rp.one_line(f"{type(exc).__name__}: {exc}")))
        except Exception:
            pass
    finally:
        if scorer is not None:
            scorer.close()
        close_detector(detector)


def worker_process(conn: Connection, state: Any, cfg: WorkerConfig) -> None:
    """The spawned process: worker_main, then an exit without the interpreter's teardown.

    By then the detector and scorer are closed and every message is in the pipe; unloading
    MediaPipe, ONNX Runtime and numpy module by module took 0.2 s that each scan waited for
    at its end (pool.close joins its workers).
    """
    worker_main(conn, state, cfg)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or missing stream: nothing of ours is waiting in it
            pass
    os._exit(0)
