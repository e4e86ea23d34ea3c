"""Cross-file crop batching for one inference runner: submit full batches, collect scores, hold back when full.

Why: on a GPU a 1-face image and a 32-frame video should share one batch, so crops streamed in
by the workers are cut into batches of exactly `batch_size` across files. Each crop's score is
kept by its file and sequence number until the file's metadata and last score are in; each
chunk's owner (the worker that sent it) is acked once all its crops are scored, which is what
lets the worker send the next one. Nothing here knows about processes: the runner is anything
with `submit(batch, owners)`, `results(block)` and `in_flight` (dfscan.scanner.inferer.Inferer), so
the batching and its backpressure are tested without workers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np

MAX_IN_FLIGHT = 2  # batches handed to the runner and not yet collected, when there are full ones to give


class Runner(Protocol):
    """Scores batches somewhere else (a thread): what the batcher submits to and collects from."""

    in_flight: int

    def submit(self, batch: np.ndarray, owners: list) -> None: ...

    def results(self, block: bool = False) -> Iterator[tuple[list, np.ndarray]]: ...


@dataclass
class _Pending:
    """A file whose crops stream in: their scores so far (by sequence number) until its result and last score are in."""

    index: int
    scores: dict[int, float] = field(default_factory=dict)
    received: int = 0  # crops received
    waiting: int = 0  # crops received and not yet scored
    item: dict | None = None  # set when the file's result arrives
    subjects: list[dict] = field(default_factory=list)


@dataclass
class Chunk:
    """Crops of one file on their way to inference; their owner is acked once all are scored."""

    task: int
    first: int  # sequence number of crops[0] in its file
    crops: np.ndarray
    owner: Any
    left: int = -1  # crops not yet scored

    def __post_init__(self) -> None:
        self.left = len(self.crops)


Complete = Callable[[int, dict, list[dict], dict[int, float]], None]  # (task, item, subjects, score by crop number)


class CropBatcher:
    """Crops of many files in, batches of `batch_size` to the runner, each file completed once all its scores are in."""

    def __init__(self, runner: Runner, batch_size: int, complete: Complete, ack: Callable[[Any], None],
                 max_buffered: int | None = None):
        self.runner, self.batch_size, self.complete, self.ack = runner, int(batch_size), complete, ack
        self.pending: dict[int, _Pending] = {}
        self.chunks: deque[tuple[Chunk, int]] = deque()  # (chunk, offset of its first crop not yet submitted)
        self.queued = 0  # crops in `chunks`
        self.buffered = 0  # crops received and not yet scored (queued + in the runner)
        self.max_buffered = max_buffered if max_buffered is not None else max(4 * self.batch_size, 128)

    @property
    def full(self) -> bool:
        """Holding this many unscored crops: stop reading from workers until inference catches up."""
        return self.buffered >= self.max_buffered

    @property
    def busy(self) -> bool:
        return self.runner.in_flight > 0

    def add_crops(self, task: int, first: int, crops: np.ndarray, owner: Any) -> None:
        """A chunk of a file's crops, `first` being the sequence number of crops[0]; chunks arrive in order."""
        p = self.pending.setdefault(task, _Pending(task))
        if first != p.received:
            raise RuntimeError(f"a worker sent crops {first}.. after {p.received} of them")
        p.received += len(crops)
        p.waiting += len(crops)
        self.chunks.append((Chunk(task, first, crops, owner), 0))
        self.queued += len(crops)
        self.buffered += len(crops)

    def file_done(self, task: int, crops: int, item: dict, subjects: list[dict]) -> None:
        """The file's metadata (`crops` made in all): completed now if every score is in, else when the last one is."""
        p = self.pending.pop(task, None) or _Pending(task)
        if p.received != crops:
            raise RuntimeError(f"a worker made {crops} crops but sent {p.received}")
        p.item, p.subjects = item, subjects
        if p.waiting == 0:
            self.complete(task, item, subjects, p.scores)
        else:
            self.pending[task] = p

    def drop(self, task: int) -> None:
        """The file ended otherwise (error, no face, scored in its worker): its chunks still queued are scored and ignored."""
        self.pending.pop(task, None)

    def submit(self) -> None:
        """Up to batch_size crops from the front of the line, across files, to the runner."""
        parts, owners, need = [], [], self.batch_size
        while self.chunks and need > 0:
            chunk, at = self.chunks.popleft()
            n = min(need, len(chunk.crops) - at)
            if at + n < len(chunk.crops):
                self.chunks.appendleft((chunk, at + n))
            parts.append(chunk.crops[at:at + n])
            owners.append((chunk, at, n))
            need -= n
        batch = np.ascontiguousarray(np.concatenate(parts)) if len(parts) > 1 else np.ascontiguousarray(parts[0])
        self.queued -= len(batch)
        self.runner.submit(batch, owners)

    def collect(self, block: bool = False) -> None:
        """Scores of finished batches into their files; acks chunks scored in full; completes files."""
        for owners, scores in self.runner.results(block=block):
            self.buffered -= len(scores)
            done = 0
            for chunk, at, n in owners:
                part = np.clip(scores[done:done + n], 0.0, 1.0).tolist()
                done += n
                chunk.left -= n
                if chunk.left == 0:
                    self.ack(chunk.owner)
                p = self.pending.get(chunk.task)
                if p is None:  # its file ended in an error meanwhile
                    continue
                p.scores.update(zip(range(chunk.first + at, chunk.first + at + n), part))
                p.waiting -= n
                if p.item is not None and p.waiting == 0:
                    del self.pending[chunk.task]
                    self.complete(p.index, p.item, p.subjects, p.scores)

    def pump(self) -> None:
        """Keep the runner fed: full batches, or whatever is there when it would idle."""
        while self.queued >= self.batch_size and self.runner.in_flight < MAX_IN_FLIGHT:
            self.submit()
        if self.chunks and self.runner.in_flight == 0:
            self.submit()

    def flush(self) -> None:
        """No more crops will come: submit what is left and wait for every score."""
        while self.chunks:
            self.submit()
        while self.runner.in_flight:
            self.collect(block=True)
