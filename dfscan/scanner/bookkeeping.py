"""What every way of scanning (local pool, Ray) keeps once the model is known: which files --resume
keeps, the stream of finished items, progress, and the summary. One place, so both report alike."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from dfscan.scanner import report as rp
from dfscan.scanner.options import ScanProgress

STAGES = ("prepare", "decode", "detect", "crop", "infer")


def resume_sources(options: Any, model: dict, settings: dict) -> tuple[Path | None, dict[str, dict]]:
    """The stream path for this report (None without one) and, with --resume, the items to keep by path."""
    stream_path = rp.stream_path_for(options.report) if options.report is not None and options.stream else None
    prior: dict[str, dict] = {}
    if options.resume:
        sources = [options.report] + ([stream_path] if stream_path else [])
        prior = rp.resumable_items(sources, model_sha256=model["sha256"], settings=settings)
    return stream_path, prior


class ScanBook:
    """Results in input order, the stream, stage timings and progress for one scan.

    `pending` lists (index, path) of the files --resume did not keep; `finish(index, item)` records
    each of them once; `stats` gains stage seconds and faces from whoever scans them.
    """

    def __init__(self, files: list, prior: dict[str, dict], stream_path: Path | None, header: dict, *,
                 append: bool, progress: Callable[[ScanProgress], None] | None, started: float, prepare: float,
                 key: Callable[[Any], str] = os.path.abspath):
        self.total, self.progress, self.started = len(files), progress, started
        self.results: list[dict | None] = [None] * len(files)
        self.pending: list[tuple[int, Any]] = []
        for i, f in enumerate(files):
            kept = prior.get(key(f))
            if kept is not None:
                self.results[i] = kept
            else:
                self.pending.append((i, f))
        self.resumed = len(files) - len(self.pending)
        if append:  # before the stream is opened: its header line is the earlier run's
            rp.check_resumed_backend(prior, header["backend"])
        self.stream = rp.ReportStream(stream_path, header, append=append) if stream_path else None
        self.stats: dict[str, float] = {"faces": 0, "done": self.resumed, **{k: 0.0 for k in STAGES}, "prepare": prepare}

    def report_progress(self, item: dict | None) -> None:
        if self.progress is not None:
            self.progress(ScanProgress(total=self.total, done=int(self.stats["done"]), faces=int(self.stats["faces"]),
                                       elapsed=time.time() - self.started, item=item, resumed=self.resumed))

    def finish(self, index: int, item: dict) -> None:
        self.results[index] = item
        self.stats["done"] += 1
        if self.stream is not None:
            self.stream.write_item(item)
        self.report_progress(item)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()

    def summary(self, items: list[dict], *, skipped: int, interrupted: bool) -> dict:
        return rp.summarize(items, seconds=time.time() - self.started, faces=int(self.stats["faces"]),
                            files_scanned=int(self.stats["done"]) - self.resumed, resumed=self.resumed,
                            skipped=skipped, interrupted=interrupted, stages={k: self.stats[k] for k in STAGES})

    def items(self) -> list[dict]:
        return [r for r in self.results if r is not None]
