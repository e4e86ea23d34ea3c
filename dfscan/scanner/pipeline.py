"""The scan: collect inputs, load the model and backend, run the worker pool, write the report.

The parts, each in its own module:
- dfscan.scanner.stage: the per-file stage (decode → detect → track → crop), crops streamed out as made.
- dfscan.scanner.worker: a worker process, one detector (and on the CPU one scorer) for its life.
- dfscan.scanner.pool: the worker processes and their supervision (a crash or a hang becomes that
  file's error item; --timeout counts from a file's last progress).
- dfscan.scanner.batcher and dfscan.scanner.inferer: on a GPU (or with infer_in_workers=False) crops are
  batched across files to the backend's batch size and scored in a thread of the main process.
- dfscan.scanner.items: a file's payload and scores become its report item.
- dfscan.scanner.resources: where the cores go (in-worker scoring on the CPU, main-process batching on a GPU).

Only face crops (uint8, model input size) or their scores cross process boundaries, never full
frames, and they stream: memory does not grow with a file's length or --fps.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

from dfscan.core.errors import InputError
from dfscan.scanner import report as rp
from dfscan.scanner.batcher import CropBatcher
from dfscan.scanner.bookkeeping import ScanBook, resume_sources
from dfscan.scanner.faults import FaultPlan
from dfscan.scanner.inferer import Inferer
from dfscan.scanner.interrupt import CtrlC
from dfscan.scanner.items import LocalItems, file_item, ordered, scored_item
from dfscan.scanner.options import ProgressFn, ScanError, ScanOptions, ScanProgress
from dfscan.scanner.outputs import check_outputs_apart
from dfscan.scanner.pool import Pool, Task, ack
from dfscan.scanner.resources import ResourcePlan, fit_cpu_threads, resource_plan
from dfscan.scanner.stage import CropSink, FilePayload, StageConfig, error_payload, process_file
from dfscan.scanner.worker import CHUNKS_IN_FLIGHT, ScorerSpec, WorkerConfig
from dfscan.train.checkpoint_info import CheckpointInfo

__all__ = [
    "CHUNKS_IN_FLIGHT", "CropSink", "FaultPlan", "FilePayload", "ProgressFn", "ResourcePlan", "ScanError", "ScanOptions",
    "ScanProgress", "StageConfig", "error_payload", "file_item", "model_info", "ordered", "process_file",
    "resolve_model", "resource_plan", "scan", "scan_to_report", "scored_item",
]

# Crops per run of a worker's one-thread CPU session. bench/scan.py on 2 cores: 28 ms/face at 1,
# 34 at 4, 40 at 8, 50 at 16 (a single image's activations stay in cache).
WORKER_BATCH = 1


def scan(paths: Sequence[str | Path], options: ScanOptions | None = None, progress: ProgressFn | None = None) -> dict:
    """Scan files and folders; return a `dfscan.report/1` dict (the caller writes it; see scan_to_report).

    Items stream to `<report>.stream.jsonl` as they finish when `options.report` is set, under
    the report's lock (a second scan of the same report is refused). On Ctrl-C the finished
    items are returned with `summary.interrupted` true.
    """
    return _scan(paths, options or ScanOptions(), progress, write=False)


def scan_to_report(paths: Sequence[str | Path], options: ScanOptions, fmt: str | None = None,
                   progress: ProgressFn | None = None) -> dict:
    """Scan and write the final report to `options.report` (json | jsonl | csv), and return it.

    The write happens before the report's lock is released (no other scan can slip in between
    the stream's last item and the report) and a second Ctrl-C cannot cut it short. A write
    that fails is an OutputError naming the stream, which --resume finishes from.
    """
    if options.report is None:
        raise InputError("scan_to_report needs options.report")
    return _scan(paths, options, progress, write=True, fmt=fmt)


def _scan(paths: Sequence[str | Path], options: ScanOptions, progress: ProgressFn | None, write: bool,
          fmt: str | None = None, scan_files: Callable[..., dict] | None = None,
          collect: Callable[[list], tuple[list, list]] | None = None) -> dict:
    """Check the output, collect the inputs, then scan them with the report locked (and with `write`
    write it to options.report, in `fmt` or the one its name implies).

    A report that is one of the inputs is refused before its name's format is looked at: that is
    the mistake worth naming (`--report clip.mp4`).

    `scan_files` and `collect` replace _scan_files and media.collect_inputs for another way of
    running the same stages (dfscan.scanner.ray_scan): the lock, Ctrl-C and the write stay here.
    """
    from dfscan.scanner.media import collect_inputs

    options.check()
    if options.report is not None:
        rp.check_output_path(options.report)  # a bad --report fails now, not after the scan
    started = time.time()
    created = rp.now_iso()

    files, skipped = collect(list(paths)) if collect is not None else collect_inputs(list(paths))
    skipped_list = [{"path": str(p), "reason": str(r)} for p, r in skipped]
    if not files:
        named = ", ".join(str(p) for p in list(paths)[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        raise InputError(f"no video or image files to scan in {named}"
                         + (f" ({len(skipped)} other files skipped)" if skipped else ""))
    if options.report is not None:  # the report, its stream and its lock are never one of the inputs
        check_outputs_apart([options.report, rp.stream_path_for(options.report), rp.lock_path_for(options.report)],
                            [*files, options.weights])
    # (path, format) the report is written to, or None: returned only (every caller that writes has a report)
    write_to = (options.report, rp.format_for(options.report, fmt)) if write and options.report is not None else None
    lock = rp.ReportLock(options.report) if options.report is not None else contextlib.nullcontext()
    with lock, CtrlC() as ctrl_c:
        result = (scan_files or _scan_files)(files, skipped, skipped_list, options, progress, started, created)
        if write_to is not None:
            report, write_as = write_to
            ctrl_c.hold()
            try:
                rp.write_report(result, report, write_as)
            except rp.OutputError as exc:
                stream = rp.stream_path_for(report)
                if options.stream and stream.is_file():
                    raise rp.OutputError(f"{exc}; the finished items are kept in {stream}: make room and rerun with --resume") from None
                raise
    return result


def prepare_note(options: ScanOptions, model: dict) -> str:
    """What the first seconds of a scan are spent on, so the bar does not sit at 0/? unexplained."""
    from dfscan.engines.onnx_cache import cached_onnx_path

    onnx = cached_onnx_path(model["sha256"])
    if options.backend in ("auto", "onnxruntime") and not onnx.is_file():
        return f"preparing the model (one-time ONNX export, cached in {onnx.parent.parent})"
    return "loading the model"


def model_block(checkpoint: CheckpointInfo) -> dict:
    """The report's `model` block (name, sha256, backbone, threshold, the model card's caveat)."""
    model = {"name": checkpoint.path.name, "sha256": checkpoint.sha256,
             "backbone": str(checkpoint.config.get("backbone", "unknown")), "threshold": checkpoint.threshold}
    if checkpoint.caveat:  # the model card's one-line warning (starter / research-only models)
        model["caveat"] = checkpoint.caveat
    rates = validation_rates(checkpoint)
    if rates is not None:
        model["validation"] = rates
    return model


def validation_rates(checkpoint: CheckpointInfo) -> dict | None:
    """What a verdict at the model's threshold meant on its validation set: the share of reals
    called fake and of fakes caught, as `ship` measured them (provenance.rates_at_threshold).

    None when the checkpoint does not carry them, or carries them for another threshold: a
    summary must not quote rates the verdicts were not made at.
    """
    import json
    import math

    try:
        rates = json.loads(checkpoint.metadata.get("provenance") or "{}").get("rates_at_threshold")
        fpr, tpr, at = float(rates["fpr"]), rates.get("tpr"), float(rates["threshold"])
        tpr = None if tpr is None else float(tpr)
        reals, fakes, on = int(rates["reals"]), int(rates["fakes"]), str(rates["on"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    in_range = all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (fpr, 0.0 if tpr is None else tpr))
    if not in_range or abs(at - checkpoint.threshold) > 1e-4:
        return None
    return {"fpr": fpr, "tpr": tpr, "reals": reals, "fakes": fakes, "on": on}


def model_info(weights: Path) -> tuple[dict, dict]:
    """The report's `model` block and the model config, from the checkpoint's metadata (no weights loaded)."""
    checkpoint = CheckpointInfo.read(weights)
    return model_block(checkpoint), checkpoint.config


def resolve_model(options: ScanOptions) -> tuple[CheckpointInfo, dict, float, dict]:
    """The checkpoint (read and hashed once), the report's model block, the threshold and the report's settings.

    Every way of scanning (local, Ray) takes them from here: --resume compares model and settings.
    """
    if options.weights is None:
        from dfscan.scanner.assets import default_weights

        weights = default_weights()
    else:
        weights = Path(options.weights)
    checkpoint = CheckpointInfo.read(weights)
    model = model_block(checkpoint)
    threshold = float(options.threshold) if options.threshold is not None else model["threshold"]
    if threshold != model["threshold"]:
        model.pop("validation", None)  # measured at the model's threshold, not at this one
    model["threshold"] = threshold
    settings = {"frames": options.frames, "fps": options.fps, "keyframes": options.keyframes, "crops": options.crops,
                "face_model": options.face_model, "tile_every": options.tile_every,
                "detect_every": options.detect_every, "strategy": options.strategy,
                "threshold": threshold}
    return checkpoint, model, threshold, settings


def stage_config(options: ScanOptions, checkpoint: CheckpointInfo, chunk: int) -> StageConfig:
    """The per-file stage's settings for this scan and model."""
    return StageConfig.of(options, checkpoint.input_size, chunk)


def kind_of(path: Path, crops: bool) -> str:
    from dfscan.scanner.media import IMAGE_EXTS

    if path.suffix.lower() in IMAGE_EXTS:
        return "crop" if crops else "image"
    return "video"


def _scan_files(files: list[Path], skipped: list, skipped_list: list[dict], options: ScanOptions,
                progress: ProgressFn | None, started: float, created: str) -> dict:
    """The scan proper: model, backend, workers, stream, summary."""
    checkpoint, model, threshold, settings = resolve_model(options)
    weights = checkpoint.path
    stream_path, prior = resume_sources(options, model, settings)

    from dfscan.engines.select import select_backend

    t_prepare = time.time()
    if progress is not None:
        progress(ScanProgress(total=len(files), done=0, faces=0, elapsed=0.0, note=prepare_note(options, model)))
    backend, _ = select_backend(weights, options.backend, options.engine, checkpoint=checkpoint)
    t_prepare = time.time() - t_prepare
    plan = resource_plan(options, sum(os.path.abspath(f) not in prior for f in files), backend.device,
                         backend=backend.name)
    if plan.note:  # --workers was lowered: say so before the scan starts (the summary records the count run)
        print(plan.note, file=sys.stderr, flush=True)
    scorer = None
    if plan.in_workers:
        assert plan.threads is not None  # a plan scoring in the workers always sets their threads
        scorer = ScorerSpec(backend.name, str(weights), str(getattr(backend, "onnx_path", "")) or None, plan.threads,
                            options.batch_size or WORKER_BATCH, dict(checkpoint.config))
    elif plan.threads is not None:
        backend = fit_cpu_threads(backend, weights, plan.threads, options.batch_size)
    batch_size = int(options.batch_size or getattr(backend, "batch_size", 32) or 32)
    header = rp.make_header(model=model, backend={"name": backend.name, "device": backend.device, "precision": backend.precision},
                            settings=settings, created=created, skipped=skipped_list)
    if plan.in_workers:
        backend.close()  # the workers score with their own sessions: free this one's memory now

    book = ScanBook(files, prior, stream_path, header, append=options.resume, progress=progress, started=started,
                    prepare=t_prepare)
    todo: deque[Task] = deque(Task(i, str(f), kind_of(Path(f), options.crops)) for i, f in book.pending)

    interrupted = False
    pool: Pool | None = None
    try:
        book.report_progress(None)
        if todo:
            stage = stage_config(options, checkpoint, scorer.batch_size if scorer else batch_size)
            pool = Pool(plan.workers, WorkerConfig(stage, scorer, options.faults))
            _run(pool, todo, backend, batch_size, options, threshold, book.stats, book.finish)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if pool is not None:
            pool.close(graceful=not interrupted)
        book.close()
        try:
            backend.close()
        except Exception:
            pass

    items = book.items()
    summary = book.summary(items, skipped=len(skipped), interrupted=interrupted)
    summary["workers"], summary["infer_threads"] = plan.workers, plan.threads
    summary["infer_in_workers"] = plan.in_workers
    return rp.build_report(header, items, summary)


def _run(pool: Pool, todo: deque[Task], backend: Any, batch_size: int, options: ScanOptions, threshold: float,
         stats: dict, finish: Callable[[int, dict], None]) -> None:
    """Tie the parts: the pool's results become items, its crops go through the batcher to the inference thread."""
    inferer = Inferer(backend, stats)
    try:
        items = LocalItems(threshold, options.strategy, stats, finish)
        items.batcher = CropBatcher(inferer, batch_size, items.complete, ack)
        pool.run(todo, items.batcher, items.result, items.lost, options.timeout)
    finally:
        inferer.close()
