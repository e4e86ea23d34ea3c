"""`dfscan scan --ray`: the local scan's stages, scheduled on a Ray cluster by Ray Data.

Why this shape:
- One implementation. The CPU stage calls stage.process_file (decode → detect → track →
  crop, crops streamed through a CropSink) and stage.error_payload (the per-file MediaError
  codes); inference loads its backend with dfscan.engines.select.select_backend; the driver builds
  items with items.file_item / items.scored_item and runs inside pipeline._scan (report
  lock, Ctrl-C, --resume, the JSONL stream, the final write). Ray only schedules.
- Stages map to Ray Data operators:
    files ──map_batches(_CropStage, actors, num_cpus=1, batch_size=1)──▶ one row per crop
      (fid, seq, crop) plus one metadata row per file (seq = -1, the payload as JSON)
    ──map_batches(_InferStage, actors, num_gpus=1/actors_per_gpu or num_cpus=1, batch_size=B)──▶
      (fid, seq, score) rows: Ray Data bundles crop rows of different files into full batches,
      as the local main process does
    ──iter_batches on the driver──▶ items, streamed as each file's last score arrives.
  Callable classes keep one FaceDetector per CPU actor and one loaded model per inference actor.
- Faults: Ray restarts a dead actor and retries its task. A small ledger actor counts, per file,
  starts that never finished: a file that kills its actor more than `retries` times becomes an
  error item `worker_crashed` instead of being retried forever. A file that makes no progress
  for --timeout seconds becomes `timeout`; its actor then exits (a hung decoder thread cannot be
  stopped otherwise) and the ledger keeps the error so the retry reports it instead of hanging
  again. The driver takes each file's first complete result and ignores repeats.
- Memory: at most `max_in_flight` files are being decoded at once across the cluster (tasks in
  flight per CPU actor); crops travel as uint8 model-input crops, never frames, and Ray Data's
  streaming executor backpressures them through the object store.
- Paths: local paths must be visible on every node (a shared filesystem) and so must --weights.
  Object-store URIs (s3://, gs://, hdfs://) are listed and read with pyarrow.fs, which ships
  with Ray Data (no extra dependency such as s3fs); a CPU actor copies the object to a local
  temporary file, scans it and deletes it. URIs carry no size/mtime fingerprint, so --resume
  scans them again.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from dfscan.core.errors import InputError
from dfscan.scanner import report as rp

if TYPE_CHECKING:
    from dfscan.scanner.stage import FilePayload

INSTALL_HINT = 'dfscan scan --ray needs Ray Data: pip install "dfscan[ray]" (that is ray[data]>=2.9), on this machine and on every node of the cluster'
URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "viewfs://", "abfs://", "abfss://")
_FORWARDED_ENV = ("DFSCAN_DEBUG", "DFSCAN_CACHE")  # the actors see what the driver was told


@dataclass
class RayOptions:
    """How the scan is spread over the cluster; nothing here changes a result."""

    address: str | None = None  # None: start a local Ray; "auto": RAY_ADDRESS or the cluster on this node; else host:port / ray://
    cpu_tasks_per_node: int | None = None  # decode/detect/crop actors per node (None: the node's CPUs, less one for CPU inference)
    actors_per_gpu: int = 1  # inference actors sharing one GPU
    infer_actors: int | None = None  # inference actors on a cluster without GPUs (None: 1)
    max_in_flight: int | None = None  # files being decoded at once across the cluster (None: 2 per CPU actor)
    retries: int = 1  # a file whose actor dies is tried this many more times, then it is `worker_crashed`
    num_cpus: int | None = None  # only for a local Ray started here: its CPUs (None: all)

    def check(self) -> None:
        for name in ("cpu_tasks_per_node", "infer_actors", "max_in_flight", "num_cpus"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--ray-{name.replace('_', '-')} must be at least 1")
        if self.actors_per_gpu < 1:
            raise InputError("--ray-actors-per-gpu must be at least 1")
        if self.retries < 0:
            raise InputError("--ray-retries must be 0 or more")


def require_ray() -> None:
    """A one-line InputError (exit 2) saying how to install the extra, instead of an ImportError traceback."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError(INSTALL_HINT) from None


def is_uri(path: str | Path) -> bool:
    return str(path).startswith(URI_SCHEMES)


# ====================================================================== inputs

def collect_inputs(paths: list[str | Path]) -> tuple[list[str | Path], list[tuple[str | Path, str]]]:
    """Local files and folders as the local scan lists them, plus object-store URIs listed with pyarrow.fs."""
    from dfscan.scanner.media import MEDIA_EXTS
    from dfscan.scanner.media import collect_inputs as collect_local

    local = [p for p in paths if not is_uri(p)]
    files: list[str | Path] = []
    skipped: list[tuple[str | Path, str]] = []
    if local:
        f, s = collect_local([Path(p) for p in local])
        files += f
        skipped += s
    for uri in (str(p) for p in paths if is_uri(p)):
        import pyarrow.fs as pafs

        try:
            fs, root = pafs.FileSystem.from_uri(uri)
            info = fs.get_file_info(root)
        except Exception as exc:  # bad bucket, no credentials, unknown scheme
            raise InputError(f"{uri}: cannot list it ({type(exc).__name__}: {rp.one_line(str(exc))})") from None
        scheme = uri.split("://", 1)[0] + "://"
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"no such file or folder: {uri}")
        infos = [info] if info.type == pafs.FileType.File else sorted(
            fs.get_file_info(pafs.FileSelector(root, recursive=True)), key=lambda i: i.path)
        for i in infos:
            if i.type != pafs.FileType.File:
                continue
            if Path(i.path).suffix.lower() in MEDIA_EXTS:
                files.append(scheme + i.path)
            else:
                skipped.append((scheme + i.path, f"not a video or image extension ({Path(i.path).suffix or 'none'})"))
    return files, skipped


class _Localized:
    """A local path for PyAV: the path itself, or an object-store URI copied to a temporary file (removed on exit)."""

    def __init__(self, path: str):
        self.path: str = path
        self.tmp: str | None = None

    def __enter__(self) -> str:
        if not is_uri(self.path):
            return self.path
        import pyarrow.fs as pafs

        fs, key = pafs.FileSystem.from_uri(self.path)
        fd, self.tmp = tempfile.mkstemp(prefix="dfscan-", suffix=Path(key).suffix)
        with os.fdopen(fd, "wb") as out, fs.open_input_stream(key) as src:
            shutil.copyfileobj(src, out, 1 << 20)
        return self.tmp

    def __exit__(self, *exc: Any) -> None:
        if self.tmp:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)


# ====================================================================== the stages (run in Ray actors)

class _Ledger:
    """Per file: starts without a finish (its actor died), and errors that must not be redone (timeouts).

    One small actor for the run; CPU actors ask it before and tell it after each file, so a retry
    after an actor's death knows whether this file is the one that killed it.
    """

    def __init__(self) -> None:
        self.started: dict[int, int] = {}
        self.final: dict[int, str] = {}

    def begin(self, fid: int) -> tuple[int, str | None]:
        """(deaths so far while scanning this file, its kept error payload or None); counts this start."""
        deaths = self.started.get(fid, 0)
        self.started[fid] = deaths + 1
        return deaths, self.final.get(fid)

    def end(self, fid: int, final: str | None = None) -> None:
        self.started.pop(fid, None)
        if final is not None:
            self.final[fid] = final


def _rows(fid: int, first: int, crops: np.ndarray) -> dict[str, np.ndarray]:
    n = len(crops)
    return {"fid": np.full(n, fid, np.int64), "seq": np.arange(first, first + n, dtype=np.int64),
            "crop": np.ascontiguousarray(crops, dtype=np.uint8), "payload": np.array([""] * n, dtype=object)}


class _CropStage:
    """A CPU actor: pipeline.process_file on one file at a time, its crops out as rows as they are made.

    process_file runs in a thread so that this generator can yield chunks while it works and
    notice a file that stops making progress (--timeout); a hung file makes the actor exit.
    """

    def __init__(self, cfg: Any, size: int, ledger: Any, timeout: float | None, retries: int, faults: Any = None):
        from dfscan.scanner.stage import open_detector, setup_process

        setup_process()
        self.cfg, self.size, self.ledger, self.timeout, self.retries = cfg, size, ledger, timeout, retries
        self.faults = faults  # tests only: dfscan.scanner.faults.FaultPlan
        self.detector = open_detector(cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        import ray

        for fid, path, kind in zip(batch["fid"], batch["path"], batch["kind"]):
            fid, path, kind = int(fid), str(path), str(kind)
            deaths, final = ray.get(self.ledger.begin.remote(fid))
            if final is None and deaths > self.retries:
                final = json.dumps({"error": {"code": "worker_crashed", "message": rp.one_line(
                    f"the decoder crashed on this file (its Ray actor died {deaths} times)")}})
            if final is not None:
                self.ledger.end.remote(fid, final)
                yield self._meta(fid, final)
                continue
            yield from self._scan_one(fid, path, kind, deaths)

    def _meta(self, fid: int, payload: str) -> dict[str, np.ndarray]:
        return {"fid": np.array([fid], np.int64), "seq": np.array([-1], np.int64),
                "crop": np.zeros((1, self.size, self.size, 3), np.uint8), "payload": np.array([payload], dtype=object)}

    def _scan_one(self, fid: int, path: str, kind: str, deaths: int) -> Iterator[dict[str, np.ndarray]]:
        import ray

        from dfscan.scanner.stage import CropSink, error_payload, heartbeat, process_file

        out: queue.Queue = queue.Queue(maxsize=2)  # chunks made and not yet yielded: the thread waits on it
        state = [float(fid), time.time()]
        beat = heartbeat(state, self.faults.frame_delay(path) if self.faults is not None else 0.0)

        def deliver(first: int, crops: np.ndarray) -> None:
            out.put(("crops", first, crops))
            beat()  # a chunk taken downstream is progress, as an ack is in the local scan

        def work() -> None:
            try:
                if self.faults is not None:  # tests only; crash_once: an actor lost once, mid-run
                    self.faults.before_file(path, attempt=deaths)
                with _Localized(path) as local:
                    payload = process_file(local, kind, self.detector, self.cfg, CropSink(self.cfg.chunk, deliver), beat)
            except Exception as exc:  # every failure of one file becomes that file's error item
                payload = error_payload(exc)
            out.put(("result", payload))

        threading.Thread(target=work, name="dfscan-ray-file", daemon=True).start()
        while True:
            try:
                msg = out.get(timeout=0.2)
            except queue.Empty:
                if self.timeout and time.time() - state[1] > self.timeout:
                    final = json.dumps({"error": {"code": "timeout", "message": f"gave up after {self.timeout:g} s (--timeout)"}})
                    ray.get(self.ledger.end.remote(fid, final))  # kept before this actor goes, so the retry reports it
                    yield self._meta(fid, final)
                    os._exit(1)  # the hung thread cannot be stopped; Ray starts a fresh actor
                continue
            if msg[0] == "crops":
                yield _rows(fid, msg[1], msg[2])
                continue
            payload = msg[1]
            ray.get(self.ledger.end.remote(fid))
            yield self._meta(fid, json.dumps(payload, default=_json_default))
            return

    def __del__(self) -> None:
        if getattr(self, "detector", None) is not None:
            from dfscan.scanner.stage import close_detector

            close_detector(self.detector)
            self.detector = None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _load_backend(weights: str, backend: str, engine: str | None, batch_size: int | None, threads: int | None) -> Any:
    """dfscan.engines.select.select_backend, as the local scan loads it; a CPU backend gets the actor's own cores."""
    from dfscan.engines.select import select_backend

    loaded, _ = select_backend(weights, backend, engine)
    if getattr(loaded, "device", "") == "cpu" and threads:
        from dfscan.scanner.resources import fit_cpu_threads

        loaded = fit_cpu_threads(loaded, Path(weights), threads, batch_size)
    return loaded


def backend_info(weights: str, backend: str, engine: str | None) -> dict:
    """The report's backend block and preferred batch size, from a backend loaded where inference will run."""
    loaded = _load_backend(weights, backend, engine, None, 1)
    try:
        return {"name": loaded.name, "device": loaded.device, "precision": loaded.precision,
                "batch_size": int(getattr(loaded, "batch_size", 32) or 32)}
    finally:
        loaded.close()


class _InferStage:
    """An inference actor: one loaded backend for its life; scores crop rows, passes metadata rows through."""

    def __init__(self, weights: str, backend: str, engine: str | None, batch_size: int, threads: int | None):
        from dfscan.scanner.console import quiet_env

        quiet_env()
        self.batch_size = batch_size
        self.backend = _load_backend(weights, backend, engine, batch_size, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seq = batch["seq"]
        scores = np.full(len(seq), np.nan, np.float32)
        infer = np.zeros(len(seq), np.float64)
        idx = np.flatnonzero(seq >= 0)
        t = time.perf_counter()
        for start in range(0, len(idx), self.batch_size):
            part = idx[start:start + self.batch_size]
            got = np.asarray(self.backend.predict(np.ascontiguousarray(batch["crop"][part])), dtype=np.float32).reshape(-1)
            if len(got) != len(part):
                raise RuntimeError(f"the backend returned {len(got)} scores for {len(part)} crops")
            scores[part] = np.clip(got, 0.0, 1.0)
        if len(idx):
            infer[idx[0]] = time.perf_counter() - t  # the batch's time, once
        return {"fid": batch["fid"], "seq": seq, "score": scores, "payload": batch["payload"], "infer": infer}


# ====================================================================== the driver

@dataclass
class _File:
    index: int
    path: str
    kind: str
    fingerprint: dict | None
    scores: dict[int, float] = field(default_factory=dict)
    payload: FilePayload | None = None


@dataclass
class ClusterPlan:
    """What the scan asks of the cluster (in the report's summary.ray)."""

    address: str
    nodes: int
    cpus: float
    gpus: float
    crop_actors: int
    infer_actors: int
    infer_gpus: float  # per inference actor; 0 on a CPU cluster
    infer_cpus: float
    max_in_flight: int


def cluster_plan(ray_options: RayOptions, files: int) -> ClusterPlan:
    """Actor counts from the cluster's resources: GPU actors where there are GPUs, else CPU actors."""
    import ray

    res = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
    if gpus >= 1:
        infer_actors = int(gpus) * ray_options.actors_per_gpu
        infer_gpus, infer_cpus = 1.0 / ray_options.actors_per_gpu, 1.0
    else:
        infer_actors, infer_gpus, infer_cpus = ray_options.infer_actors or 1, 0.0, 1.0
    spare = max(1, int(cpus - infer_actors * infer_cpus))
    if ray_options.cpu_tasks_per_node:
        crop_actors = min(ray_options.cpu_tasks_per_node * max(1, len(nodes)), spare)
    else:
        crop_actors = spare
    crop_actors = max(1, min(crop_actors, files))
    max_in_flight = ray_options.max_in_flight or 2 * crop_actors
    return ClusterPlan(address=str(ray.get_runtime_context().gcs_address), nodes=len(nodes), cpus=cpus, gpus=gpus,
                       crop_actors=crop_actors, infer_actors=infer_actors, infer_gpus=infer_gpus,
                       infer_cpus=infer_cpus, max_in_flight=max(1, max_in_flight))


def _connect(ray_options: RayOptions) -> bool:
    """Join the cluster (or start a local Ray); True when this call started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": bool(os.environ.get("DFSCAN_DEBUG"))}
    try:
        if ray_options.address is None:
            ray.init(num_cpus=ray_options.num_cpus, **kwargs)
        else:
            ray.init(address=ray_options.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = ray_options.address or "a local instance"
        raise InputError(f"cannot start or join Ray ({where}): {rp.one_line(str(exc), 200)}") from None
    return True


def _key(path: str | Path) -> str:
    """How --resume names a file (report.resumable_items): the absolute path, or the URI as given."""
    return str(path) if is_uri(path) else os.path.abspath(path)


def _runtime_env() -> dict:
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    return {"env_vars": env} if env else {}


def scan_ray(paths: Sequence[str | Path], options: Any, ray_options: RayOptions, fmt: str | None = None,
             progress: Any = None) -> dict:
    """The local scan's report, with the stages on Ray; written to options.report when it is set."""
    require_ray()
    ray_options.check()
    from dfscan.scanner.pipeline import _scan

    def scan_files(*args: Any) -> dict:
        return _scan_files_ray(ray_options, *args)

    return _scan(paths, options, progress, write=options.report is not None, fmt=fmt, scan_files=scan_files,
                 collect=collect_inputs)


def _scan_files_ray(ray_options: RayOptions, files: list, skipped: list, skipped_list: list[dict], options: Any,
                    progress: Callable | None, started: float, created: str) -> dict:
    """pipeline._scan_files with the stages on Ray: model, resume, header, stream, items, summary."""
    import ray

    from dfscan.scanner.bookkeeping import ScanBook, resume_sources
    from dfscan.scanner.items import file_item, ordered, scored_item
    from dfscan.scanner.options import ScanProgress
    from dfscan.scanner.pipeline import kind_of, prepare_note, resolve_model, stage_config

    checkpoint, model, threshold, settings = resolve_model(options)
    weights, size = checkpoint.path, checkpoint.input_size
    stream_path, prior = resume_sources(options, model, settings)

    owned = _connect(ray_options)
    try:
        todo_count = sum(_key(f) not in prior for f in files)
        plan = cluster_plan(ray_options, todo_count)
        t_prepare = time.time()
        if progress is not None:
            progress(ScanProgress(total=len(files), done=0, faces=0, elapsed=0.0, note=prepare_note(options, model)))
        env = _runtime_env()
        info_task = ray.remote(backend_info).options(num_cpus=plan.infer_cpus, num_gpus=plan.infer_gpus, runtime_env=env or None)
        try:
            info = ray.get(info_task.remote(str(weights), options.backend, str(options.engine) if options.engine else None))
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, InputError):  # e.g. --backend tensorrt where the cluster has none: one line, exit 2
                raise InputError(str(cause)) from None
            raise
        t_prepare = time.time() - t_prepare
        batch_size = int(options.batch_size or info["batch_size"])
        header = rp.make_header(model=model, backend={k: info[k] for k in ("name", "device", "precision")},
                                settings=settings, created=created, skipped=skipped_list)

        book = ScanBook(files, prior, stream_path, header, append=options.resume, progress=progress,
                        started=started, prepare=t_prepare, key=_key)
        todo = {i: _File(i, str(f), kind_of(Path(str(f)), options.crops), None) for i, f in book.pending}
        stats = book.stats

        def finish(f: _File, item: dict) -> None:
            del todo[f.index]
            book.finish(f.index, item)

        def settle(f: _File) -> None:
            """Finish a file once its payload and every crop's score are in; the local scan's items."""
            p = f.payload
            if p is None or ("error" not in p and len(f.scores) < p.get("crops", 0)):
                return
            fp = rp.file_fingerprint(f.path)
            item = file_item(f.path, f.kind, p, fp, f.fingerprint)
            if item["status"] != "error":
                for k, v in p["timings"].items():
                    stats[k] += v
                if p["subjects"]:
                    item, faces = scored_item(item, p["subjects"], f.scores, threshold, options.strategy)
                    stats["faces"] += faces
            finish(f, ordered(item))

        interrupted = False
        try:
            book.report_progress(None)
            if todo:
                cfg = stage_config(options, checkpoint, batch_size)
                for f in todo.values():  # before any actor opens the file
                    f.fingerprint = rp.file_fingerprint(f.path)
                try:
                    _run_dataset(ray_options, plan, env, cfg, size, todo, options, weights, batch_size, stats, settle)
                except ray.exceptions.RayError as exc:  # not one file's fault (e.g. the backend failed): one line, stream kept
                    from dfscan.scanner.options import ScanError

                    where = f"; the finished items are in {stream_path}: rerun with --resume" if stream_path else ""
                    raise ScanError(f"the Ray scan failed: {rp.one_line(str(exc), 240)}{where}") from None
                for f in list(todo.values()):  # no complete result came back for it
                    finish(f, rp.error_item(f.path, f.kind, "worker_crashed", "the Ray cluster returned no result for this file",
                                            fingerprint=rp.file_fingerprint(f.path)))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            book.close()
    finally:
        if owned:
            ray.shutdown()

    items = book.items()
    summary = book.summary(items, skipped=len(skipped), interrupted=interrupted)
    summary["workers"], summary["infer_threads"], summary["infer_in_workers"] = plan.crop_actors, None, False
    summary["ray"] = {"address": plan.address, "nodes": plan.nodes, "cpus": plan.cpus, "gpus": plan.gpus,
                      "crop_actors": plan.crop_actors, "infer_actors": plan.infer_actors,
                      "max_in_flight": plan.max_in_flight, "batch_size": batch_size}
    return rp.build_report(header, items, summary)


def _run_dataset(ray_options: RayOptions, plan: ClusterPlan, env: dict, cfg: Any, size: int, todo: dict[int, _File],
                 options: Any, weights: Path, batch_size: int, stats: dict, settle: Callable[[_File], None]) -> None:
    """Build the Ray Data pipeline over the files still to scan and feed its rows to `settle` as they arrive."""
    import ray
    from ray.data import ActorPoolStrategy

    if not os.environ.get("DFSCAN_DEBUG"):  # dfscan draws its own progress bar; Ray Data's would interleave with it
        import logging

        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    ledger = ray.remote(_Ledger).options(num_cpus=0, runtime_env=env or None).remote()
    remote_args = {"runtime_env": env} if env else {}
    rows = [{"fid": f.index, "path": f.path, "kind": f.kind} for f in todo.values()]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))  # one file per block: a retry redoes one file
    per_actor = max(1, -(-plan.max_in_flight // plan.crop_actors))
    ds = ds.map_batches(
        _CropStage, batch_size=1, batch_format="numpy", num_cpus=1,
        compute=ActorPoolStrategy(size=plan.crop_actors, max_tasks_in_flight_per_actor=per_actor),
        fn_constructor_kwargs={"cfg": cfg, "size": size, "ledger": ledger, "timeout": options.timeout or None,
                               "retries": ray_options.retries, "faults": options.faults},
        **remote_args)
    threads = None if plan.infer_gpus else int(plan.infer_cpus)
    ds = ds.map_batches(
        _InferStage, batch_size=batch_size, batch_format="numpy", num_cpus=plan.infer_cpus,
        num_gpus=plan.infer_gpus or None, compute=ActorPoolStrategy(size=plan.infer_actors),
        fn_constructor_kwargs={"weights": str(weights), "backend": options.backend,
                               "engine": str(options.engine) if options.engine else None,
                               "batch_size": batch_size, "threads": threads},
        **remote_args)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            touched: set[int] = set()
            for fid, seq, score, payload, infer in zip(batch["fid"], batch["seq"], batch["score"], batch["payload"], batch["infer"]):
                f = todo.get(int(fid))
                stats["infer"] += float(infer)
                if f is None:  # finished already: a retry's repeat
                    continue
                if seq >= 0:
                    f.scores[int(seq)] = float(score)
                elif f.payload is None:
                    f.payload = json.loads(str(payload))
                touched.add(int(fid))
            for fid in touched:
                if fid in todo:
                    settle(todo[fid])
    finally:
        ray.kill(ledger)
