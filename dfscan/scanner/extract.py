"""Face crops and a training manifest from videos/images: the scan's decode → detect → track → crop.

Training crops must be made exactly as scan-time crops (same sampling, detector, tracker and
`crop_face`), otherwise the detector learns a geometry it never sees in production. So this
module runs the scan's own per-file stage (dfscan.scanner.stage) on the scan's worker pool
(dfscan.scanner.pool, with its crash/hang isolation) and only adds the writing: RGB PNG crops under
``out_dir/<input-stem>-<hash8>/s<subject>_f<frame>.png`` and a CSV manifest

    path,label,<attribute columns of labels.csv>,source,subject,frame,kp

(`path` relative to the manifest's folder, `source` too when it lies under it; `kp` = 12 floats "x0 y0 ... x5 y5",
the 6 MediaPipe keypoints in crop pixels). Runs are resumable: a sidecar state JSON next to
the manifest records each finished input's size and mtime, and unchanged inputs are skipped.

The manifest's cells are written exactly, never with the spreadsheet-formula quote the scan's CSV
report adds (dfscan.core.files.spreadsheet_cell): training, `--resume` and the recipes read these paths
back, and a quote would name another file (`'=a-1f2e3d4c/s0_f0.png`); reading the quote back off
could not tell it from a file whose name starts with one. It is data for dfscan, not a report:
import it into a spreadsheet as text.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Literal, Sequence

import numpy as np

from dfscan.core.errors import InputError
from dfscan.core.files import atomic_write_bytes, loads_json, open_output
from dfscan.core.labels import LABEL_NAMES, labelled_rows, parse_label, read_csv_table, require_columns, require_rows
from dfscan.scanner.faults import FaultPlan
from dfscan.scanner.options import ScanOptions
from dfscan.scanner.outputs import check_outputs_apart
from dfscan.scanner.pool import Pool, Task, Worker, ack
from dfscan.scanner.stage import FilePayload, StageConfig
from dfscan.scanner.worker import WorkerConfig

STATE_FORMAT = "dfscan.extract-state/1"
BASE_COLUMNS = ("path", "label")
TAIL_COLUMNS = ("source", "subject", "frame", "kp")


@dataclass
class ExtractProgress:
    """Handed to the progress callback after each input (and once before the first)."""

    done: int
    total: int
    path: Path | None
    crops: int  # crops written so far in this run


@dataclass
class ExtractResult:
    """What a run did; `skipped` holds (input, code, one-line message) for inputs not extracted."""

    manifest: Path
    out_dir: Path
    extracted: list[Path] = field(default_factory=list)  # inputs that gave at least one crop
    no_face: list[Path] = field(default_factory=list)
    resumed: list[Path] = field(default_factory=list)  # unchanged since an earlier run: skipped
    skipped: list[tuple[Path, str, str]] = field(default_factory=list)
    crops: int = 0  # written in this run
    rows: int = 0  # rows in the manifest now
    seconds: float = 0.0

    @property
    def errors(self) -> list[tuple[Path, str, str]]:
        """Inputs that could not be read (media errors), as opposed to notes such as extensions."""
        return [s for s in self.skipped if s[1] not in ("not_media_extension", "no_label", "duplicate")]


@dataclass
class Labels:
    """labels.csv: label and attribute values per resolved input path."""

    source: Path
    attributes: list[str]
    rows: dict[Path, tuple[str, list[str]]]  # resolved path → (label, attribute values)


# ---------------------------------------------------------------------------------------------
# labels


def read_labels_csv(path: Path | str) -> Labels:
    """Read `path,label[,attrs...]` (label real/fake or 0/1; paths relative to the CSV's folder).

    Every problem is one InputError naming the CSV line, so a typo does not cost a long run.
    The official PG-FDD CSV's `img_path` column is accepted as the path column.
    """
    table = read_csv_table(path, what="labels file", expected="path,label[,attributes]")
    name, header = table.name, table.header
    path_col = "img_path" if "img_path" in header and "path" not in header else "path"
    require_columns(table, (path_col, "label"))
    for h in header:
        if h in TAIL_COLUMNS or (h == "path" and path_col != "path"):
            raise InputError(f"{name} line {table.header_line} (header): column {h!r} is reserved for "
                             "the manifest; rename it")
    attrs = [h for h in header if h not in (path_col, "label")]
    col = table.column
    require_rows(table)
    rows = {row.path: (LABEL_NAMES[row.label], [row.cells[col[a]] for a in attrs])
            for row in labelled_rows(table, path_col, resolve=os.path.realpath)}
    return Labels(Path(path), attrs, rows)


# ---------------------------------------------------------------------------------------------
# manifest and state


def crop_dir_name(path: Path) -> str:
    """`<stem>-<hash8>`: readable, and unique even for same-named files in different folders."""
    digest = hashlib.sha1(str(Path(os.path.realpath(path))).encode("utf-8")).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem) or "input"
    return f"{stem}-{digest}"


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), base)).as_posix()


def _source(key: str, base: Path) -> str:
    """The input relative to the manifest's folder when it lies under it, else absolute."""
    rel = os.path.relpath(key, base)
    return Path(rel).as_posix() if not rel.startswith("..") else Path(key).as_posix()


def _fmt_kp(kp: np.ndarray) -> str:
    return " ".join("nan" if not math.isfinite(float(v)) else f"{float(v):.2f}" for v in kp.reshape(-1))


def _state_path(manifest: Path) -> Path:
    return manifest.with_name(manifest.name + ".state.json")


def _write_atomic(path: Path, text: str) -> None:
    """The state file, replaced whole: a random O_EXCL temp name (never a planted link) and os.replace."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _open_manifest(manifest: Path, mode: Literal["w", "a"]) -> IO[str]:
    """The manifest opened in place without following a planted link (dfscan.core.files.open_output)."""
    try:
        return open_output(manifest, mode, newline="")
    except OSError as exc:
        raise InputError(f"cannot write the manifest {manifest}: {exc.strerror or exc}") from None


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _load_state(manifest: Path, header: list[str], settings: dict) -> dict[str, dict]:
    """Finished inputs of an earlier run, or nothing if that run wrote another layout/settings."""
    state_file = _state_path(manifest)
    if not manifest.is_file() or not state_file.is_file():
        return {}
    try:
        state = loads_json(state_file.read_text(encoding="utf-8"))  # a hostile one is too deep: ignored, as a bad one is
        with manifest.open(newline="", encoding="utf-8") as fh:
            old_header = next(csv.reader(fh), [])
    except (OSError, ValueError):
        return {}
    if (not isinstance(state, dict) or state.get("format") != STATE_FORMAT
            or state.get("settings") != settings or old_header != header):
        return {}
    inputs = state.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


# ---------------------------------------------------------------------------------------------
# the inputs, on the scan's worker pool


@dataclass
class _Job:
    """An input to extract and what its manifest rows get."""

    path: Path
    key: str  # its resolved path
    label: str
    attrs: list[str]
    fingerprint: dict | None  # size and mtime before it is read (the resume state)


class _CropStore:
    """The pool's CropTaker for extract-faces: each file's crops, kept until its result comes.

    The scan batches crops for inference and keeps only scores; here the pixels themselves are
    the output. A file's crops are few (--frames of them per face), so each chunk is acked at
    once and nothing needs to wait: `full`/`busy` stay False and collect/pump/flush have no
    batches to run.
    """

    full = False
    busy = False

    def __init__(self) -> None:
        self.parts: dict[int, list[np.ndarray]] = {}

    def add_crops(self, task: int, first: int, crops: np.ndarray, owner: Worker) -> None:
        self.parts.setdefault(task, []).append(crops)
        ack(owner)

    def drop(self, task: int) -> None:
        self.parts.pop(task, None)

    def take(self, task: int) -> np.ndarray:
        """A finished file's crops, by sequence number."""
        parts = self.parts.pop(task, [])
        return np.concatenate(parts) if parts else np.zeros((0, 0, 0, 3), np.uint8)

    def collect(self, block: bool = False) -> None:
        """Nothing is scored here: no results to collect."""

    def pump(self) -> None:
        """No batches to hand on."""

    def flush(self) -> None:
        """Every crop is already kept."""


Finished = Callable[[_Job, FilePayload, np.ndarray], None]


def _run_pool(jobs: list[_Job], cfg: StageConfig, finished: Finished, *, workers: int | None,
              timeout: float | None, faults: FaultPlan | None) -> None:
    """Every job through the scan's worker pool and per-file stage; `finished` gets them in job order.

    A worker that crashes or hangs on a file (--timeout counts from its last progress) makes that
    file an error payload with the scan's codes (`worker_crashed`, `timeout`); the rest go on.
    In job order, so the manifest and the resume state read the same on every run.
    """
    from dfscan.engines.base import cpu_threads
    from dfscan.scanner.pipeline import kind_of
    from dfscan.scanner.resources import WORKER_MEMORY, available_memory, cap_workers

    store = _CropStore()
    ready: dict[int, tuple[FilePayload, np.ndarray]] = {}
    next_id = 0

    def done(task: Task, payload: FilePayload, crops: np.ndarray) -> None:
        nonlocal next_id
        ready[task.id] = (payload, crops)
        while next_id in ready:
            finished(jobs[next_id], *ready.pop(next_id))
            next_id += 1

    def on_result(task: Task, payload: FilePayload) -> None:
        done(task, payload, store.take(task.id))

    def on_lost(task: Task, code: str, message: str) -> None:
        done(task, {"error": {"code": code, "message": message}}, store.take(task.id))

    todo = deque(Task(i, str(job.path), kind_of(job.path, cfg.crops)) for i, job in enumerate(jobs))
    count, note = cap_workers(workers or cpu_threads(), len(jobs), requested=workers is not None,
                              per_worker=WORKER_MEMORY["decode"], available=available_memory())
    if note:
        print(note, file=sys.stderr, flush=True)
    pool = Pool(count, WorkerConfig(cfg, None, faults))
    graceful = False
    try:
        pool.run(todo, store, on_result, on_lost, timeout)
        graceful = True
    finally:
        pool.close(graceful=graceful)


def _faces(payload: FilePayload, crops: np.ndarray) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(subject, frame index, crop, keypoints in crop px) for every tracked face of a file's payload."""
    return [(int(s["id"]), int(fr["index"]), crops[fr["crop"]], fr["kp"])
            for s in payload["subjects"] for fr in s["frames"]]


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise OSError(f"cannot encode PNG {path}")
    path.write_bytes(buf.tobytes())


# ---------------------------------------------------------------------------------------------
# the run


def extract_faces(
    inputs: Sequence[Path | str],
    out_dir: Path | str,
    manifest: Path | str,
    labels: Path | str | None = None,
    frames: int = 32,
    fps: float | None = None,
    face_model: str = "full",
    progress: Callable[[ExtractProgress], None] | None = None,
    *,
    label: str = "real",
    size: int = 256,
    workers: int | None = None,
    timeout: float | None = ScanOptions.timeout,
    faults: FaultPlan | None = None,
) -> ExtractResult:
    """Extract face crops of every input into `out_dir` and list them in `manifest` (CSV).

    `labels` (labels.csv) gives each input its label and attribute columns; inputs missing from
    it are skipped with a note. Without it every input gets `label`. With no `inputs`, the
    files listed in `labels` are the inputs. Unreadable inputs are reported in
    `ExtractResult.skipped`, never raised; bad options or a bad labels.csv raise InputError.

    The crops are the scan's: the scan's per-file stage (dfscan.scanner.stage, with a default scan's
    detection settings, except that every sampled frame is detected: no interpolated crops) on
    the scan's worker pool (`workers` processes, one per core by
    default), so a file that crashes or hangs its decoder (`timeout` s without progress)
    becomes a skipped input with the scan's error code. `faults` is for tests (dfscan.scanner.faults).
    """
    from dfscan.scanner.media import collect_inputs

    t0 = time.perf_counter()
    # every frame detected: training crops are aligned by the detector, never interpolated
    options = ScanOptions(frames=frames, fps=fps, face_model=face_model, workers=workers, timeout=timeout, detect_every=1)
    options.check()  # the scan's checks of the options both take, with the scan's messages
    default_label = LABEL_NAMES[parse_label(str(label).strip(), "--label")]
    table = read_labels_csv(labels) if labels is not None else None
    if not inputs:
        if table is None:
            raise InputError("no inputs: give files or folders (or --labels to take them from labels.csv)")
        inputs = sorted(table.rows)
    out_dir = Path(out_dir)
    manifest = Path(manifest)
    if manifest.is_dir():
        raise InputError(f"manifest path is a folder: {manifest}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out is not a folder: {out_dir}")
    files, notes = collect_inputs(list(inputs))
    check_outputs_apart([manifest, _state_path(manifest)], [*files, labels], folders=[out_dir])

    attrs = table.attributes if table else []
    header = [*BASE_COLUMNS, *attrs, *TAIL_COLUMNS]
    cfg = StageConfig.of(options, size, keypoints=True)
    settings = {"frames": frames, "fps": fps, "face_model": face_model, "size": size,
                "min_face_score": cfg.min_face_score, "tile_every": cfg.tile_every, "out_dir": os.path.abspath(out_dir)}
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    base = manifest.resolve().parent
    result = ExtractResult(manifest=manifest, out_dir=out_dir)
    for p, reason in notes:
        code = "duplicate" if reason.startswith("already listed") else "not_media_extension"
        result.skipped.append((p, code, reason))

    # what each file is called and labelled
    todo: list[tuple[Path, str, str, list[str]]] = []  # path, key, label, attrs
    for p in files:
        key = os.path.realpath(p)
        if table is not None:
            entry = table.rows.get(Path(key))
            if entry is None:
                result.skipped.append((p, "no_label", f"not listed in {table.source.name}"))
                continue
            todo.append((p, key, entry[0], entry[1]))
        else:
            todo.append((p, key, default_label, []))

    # resume: keep rows of unchanged, finished inputs; drop the rest (and their old crops)
    previous = _load_state(manifest, header, settings)
    done: dict[str, dict] = {}
    for p, key, lab, values in todo:
        old = previous.get(key)
        if old is None or p.is_dir():
            continue
        try:
            fp = _fingerprint(p)
        except OSError:
            continue
        if old.get("size") == fp["size"] and old.get("mtime_ns") == fp["mtime_ns"] and \
                old.get("label") == lab and old.get("attrs") == values:
            done[key] = old
    kept_rows: list[list[str]] = []
    if done and manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as old_fh:
            reader = csv.reader(old_fh)
            next(reader, None)
            src = header.index("source")
            by_source: dict[str, list[list[str]]] = {}
            for row in reader:
                if len(row) == len(header):
                    by_source.setdefault(row[src], []).append(row)
        for k in list(done):  # a manifest edited or cut short since: extract that input again
            rows_k = by_source.get(_source(k, base), [])
            if len(rows_k) != done[k].get("crops"):
                del done[k]
            else:
                kept_rows.extend(rows_k)
    with _open_manifest(manifest, "w") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(kept_rows)
    state: dict[str, Any] = {"format": STATE_FORMAT, "settings": settings, "inputs": dict(done)}
    _write_atomic(_state_path(manifest), json.dumps(state, indent=1))
    result.rows = len(kept_rows)

    total, n = len(todo), 0
    if progress:
        progress(ExtractProgress(0, total, None, 0))
    jobs: list[_Job] = []
    for p, key, lab, values in todo:
        if key in done:
            result.resumed.append(p)
            n += 1
            if progress:
                progress(ExtractProgress(n, total, p, result.crops))
        else:
            jobs.append(_Job(p, key, lab, values, _fingerprint_or_none(p)))

    def finished(job: _Job, payload: FilePayload, crops: np.ndarray) -> None:
        """One input's crops to PNGs and rows to the manifest (or its error to `skipped`), and the state saved."""
        nonlocal n
        n += 1
        p = job.path
        if "error" in payload:
            result.skipped.append((p, payload["error"]["code"], payload["error"]["message"]))
        else:
            rows = _write_crops(job, _faces(payload, crops), out_dir / crop_dir_name(p), base)
            with _open_manifest(manifest, "a") as fh:
                csv.writer(fh).writerows(rows)
            state["inputs"][job.key] = {**(job.fingerprint or {}), "label": job.label, "attrs": job.attrs,
                                        "crops": len(rows), "dir": crop_dir_name(p)}
            _write_atomic(_state_path(manifest), json.dumps(state, indent=1))
            result.crops += len(rows)
            result.rows += len(rows)
            (result.extracted if rows else result.no_face).append(p)
        if progress:
            progress(ExtractProgress(n, total, p, result.crops))

    try:
        if jobs:
            _run_pool(jobs, cfg, finished, workers=workers, timeout=timeout, faults=faults)
    finally:
        result.seconds = time.perf_counter() - t0
    return result


def _fingerprint_or_none(path: Path) -> dict | None:
    """The input's size and mtime; None for one that cannot be stat'ed (the stage then says why)."""
    try:
        return _fingerprint(path) if not path.is_dir() else None
    except OSError:
        return None


def _write_crops(job: _Job, faces: list[tuple[int, int, np.ndarray, np.ndarray]], folder: Path,
                 base: Path) -> list[list[str]]:
    """The input's crops as `folder`/s<subject>_f<frame>.png (older ones removed) and their manifest rows."""
    if folder.is_symlink():
        folder.unlink()  # a planted link is replaced, never written through
    elif folder.exists():
        shutil.rmtree(folder)  # crops of an older version of this input
    if faces:
        folder.mkdir(parents=True)
    rows = []
    for sid, index, crop, kp in faces:
        png = folder / f"s{sid}_f{index}.png"
        _write_png(png, crop)
        rows.append([_rel(png, base), job.label, *job.attrs, _source(job.key, base), str(sid), str(index), _fmt_kp(kp)])
    return rows


def read_manifest_rows(manifest: Path | str) -> list[dict[str, str]]:
    """The manifest as dicts (for tests and tools; training has its own validating reader)."""
    with Path(manifest).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def parse_kp(text: str) -> np.ndarray:
    """The `kp` column back into (6, 2) float32 crop pixels."""
    return np.array([float(v) for v in text.split()], dtype=np.float32).reshape(-1, 2)


__all__ = (
    "ExtractProgress", "ExtractResult", "Labels", "extract_faces", "read_labels_csv",
    "crop_dir_name", "read_manifest_rows", "parse_kp",
)
