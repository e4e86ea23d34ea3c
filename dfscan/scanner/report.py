"""The `dfscan.report/1` report: building it, writing it (JSON / JSONL / CSV), streaming, resuming.

Formats:
- json: one object, the schema in `dfscan/scanner/schemas/report.schema.json`.
- jsonl: a header line (everything but `items` and `summary`), one line per item, then a line
  `{"summary": {...}}`. The crash-safe stream written during a scan is the same format without
  the summary line, so one reader handles both.
- csv: one row per subject (a person in a file) with the item's columns repeated; an item with
  no subject (error, no face) gets one row with empty subject columns. Frames are left out. A text
  cell that starts like a spreadsheet formula (= + - @, tab, carriage return) gets a leading
  single quote (OWASP's CSV-injection rule): `'=x.mp4` for the file `=x.mp4`. The CSV is for
  people and spreadsheets; the JSON and JSONL reports hold every path exactly.

File names that are not UTF-8 (POSIX names are bytes: `bad\\xff.jpg`) are carried as Python does,
surrogateescape-decoded str ('bad\\udcff.jpg'). JSON and JSONL write each such lone surrogate as its
`\\udcff` escape, so the file stays valid UTF-8 and json.loads gives back the very str that
os.fsencode turns into the original bytes; CSV has no escapes, so its cell holds the name's own
bytes (read it back with errors="surrogateescape"). Every other character is written as itself.

Every final write is atomic (temporary file in the same folder, fsync, os.replace), so a reader
never sees half a report. A scan holds a lock on its report and stream (ReportLock), so two scans
never write one report; a write that fails (read-only folder, full disk) is an OutputError: one
line, exit 2, and the stream is kept for --resume.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import socket
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import IO, Any

from dfscan.core.errors import InputError
from dfscan.core.files import (
    JSONTooDeep,
    LinkedOutputError,
    atomic_write_bytes,
    loads_json,
    open_output_fd,
    spreadsheet_cell,
)
from dfscan.scanner import __version__

SCHEMA_ID = "dfscan.report/1"
HEADER_KEYS = ("schema", "created", "tool", "model", "backend", "settings", "skipped")
CSV_COLUMNS = (
    "path", "kind", "status", "error_code", "error_message", "score", "verdict", "threshold",
    "subject_id", "subject_score", "subject_verdict", "subject_frames",
    "width", "height", "fps", "duration", "frames_sampled", "codec", "rotation", "decode_errors", "stream_index",
    "warnings",
)
# Errors worth trying again on --resume: they depend on the machine's state (or the moment), not on the file.
TRANSIENT_ERRORS = frozenset({"timeout", "worker_crashed", "changed_during_scan"})


class OutputError(InputError):
    """The report or its stream cannot be written (a folder in the way, read-only, disk full): one line, exit 2."""


class ReportLocked(OutputError):
    """Another live scan is writing this report."""


# ---------------------------------------------------------------- building

def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_fingerprint(path: str | Path) -> dict[str, int] | None:
    """Size and mtime: enough to tell that a file is unchanged since the last run, without reading it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def make_header(*, model: dict, backend: dict, settings: dict, created: str | None = None, skipped: list[dict] | None = None) -> dict:
    """Everything but items and summary: what was run, with which model, on which backend."""
    return {
        "schema": SCHEMA_ID,
        "created": created or now_iso(),
        "tool": {"name": "dfscan", "version": __version__},
        "model": model,
        "backend": backend,
        "settings": settings,
        "skipped": list(skipped or []),
    }


def error_item(path: str, kind: str, code: str, message: str, *, media: dict | None = None, fingerprint: dict | None = None) -> dict:
    """An item for a file that could not be scanned; the message is forced onto one line."""
    item: dict[str, Any] = {
        "path": path, "kind": kind, "status": "error",
        "error": {"code": code, "message": one_line(message)},
        "score": None, "verdict": None, "media": media, "subjects": [],
    }
    if fingerprint:
        item["file"] = fingerprint
    return item


def one_line(message: str, limit: int = 300) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize(items: list[dict], *, seconds: float, faces: int = 0, files_scanned: int | None = None,
              resumed: int = 0, skipped: int = 0, interrupted: bool = False, stages: dict | None = None) -> dict:
    """Counts and throughput. Throughput counts only the files and faces scanned in this run."""
    scanned = len(items) - resumed if files_scanned is None else files_scanned
    seconds = max(float(seconds), 0.0)
    return {
        "files": len(items),
        "ok": sum(i["status"] == "ok" for i in items),
        "error": sum(i["status"] == "error" for i in items),
        "no_face": sum(i["status"] == "no_face" for i in items),
        "fakes": sum(i.get("verdict") == "fake" for i in items),
        "real": sum(i.get("verdict") == "real" for i in items),
        "subjects": sum(len(i.get("subjects") or []) for i in items),
        "faces": int(faces),
        "resumed": int(resumed),
        "skipped": int(skipped),
        "interrupted": bool(interrupted),
        "seconds": round(seconds, 3),
        "throughput": {
            "files_per_s": round(scanned / seconds, 3) if seconds > 0 else 0.0,
            "faces_per_s": round(faces / seconds, 3) if seconds > 0 else 0.0,
        },
        "stages": {k: round(float(v), 3) for k, v in (stages or {}).items()},
    }


def build_report(header: dict, items: list[dict], summary: dict) -> dict:
    report = {k: header[k] for k in HEADER_KEYS if k in header}
    report["items"] = items
    report["summary"] = summary
    return report


# ---------------------------------------------------------------- schema

@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The JSON Schema shipped in the package (dfscan/scanner/schemas/report.schema.json)."""
    return json.loads(resources.files("dfscan.scanner").joinpath("schemas/report.schema.json").read_text("utf-8"))


def validation_errors(report: dict) -> list[str]:
    """Every way `report` breaks the schema, as 'where: what' lines (empty when valid)."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in errors]


def validate_report(report: dict) -> None:
    """Raise InputError naming the first problem when `report` is not a valid dfscan.report/1."""
    errors = validation_errors(report)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(f"report does not match {SCHEMA_ID}: {errors[0]}{more}")


# ---------------------------------------------------------------- writing

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _escape_surrogates(text: str) -> str:
    """JSON text with each lone surrogate (a non-UTF-8 byte of a file name) as its \\uXXXX escape.

    Only a JSON string can hold one (the syntax is ASCII), and json.loads reads the escape back to
    the same surrogate, so the path round-trips and the file is valid UTF-8."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def dumps_line(obj: Any) -> str:
    """One compact JSON line (JSONL reports, the stream), non-UTF-8 names escaped."""
    return _escape_surrogates(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text written atomically (`dfscan.core.files.atomic_write_bytes`); a lone surrogate of a
    non-UTF-8 file name (only CSV keeps one) is written as the name's own byte."""
    return atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))


def to_json(report: dict) -> str:
    return _escape_surrogates(json.dumps(report, ensure_ascii=False, indent=2, allow_nan=False)) + "\n"


def to_jsonl(report: dict) -> str:
    lines = [dumps_line({k: report[k] for k in HEADER_KEYS if k in report})]
    lines += [dumps_line(item) for item in report["items"]]
    lines.append(dumps_line({"summary": report["summary"]}))
    return "\n".join(lines) + "\n"


def csv_rows(report: dict) -> Iterable[dict]:
    """One row per subject; an item without subjects gives one row with empty subject columns."""
    for item in report["items"]:
        media = item.get("media") or {}
        err = item.get("error") or {}
        base = {
            "path": item["path"], "kind": item["kind"], "status": item["status"],
            "error_code": err.get("code", ""), "error_message": err.get("message", ""),
            "score": _cell(item.get("score")), "verdict": item.get("verdict") or "",
            "threshold": _cell(report["model"].get("threshold")),  # what `verdict` compared the score with
            **{k: _cell(media.get(k)) for k in CSV_COLUMNS[CSV_COLUMNS.index("width"):]},
        }
        subjects = item.get("subjects") or []
        if not subjects:
            yield {**base, "subject_id": "", "subject_score": "", "subject_verdict": "", "subject_frames": ""}
        for s in subjects:
            yield {**base, "subject_id": s["id"], "subject_score": _cell(s["score"]),
                   "subject_verdict": s["verdict"], "subject_frames": len(s["frames"])}


def _cell(value: Any) -> Any:
    """A CSV cell: empty for None, a list (media.warnings) joined by "; "."""
    return "" if value is None else "; ".join(map(str, value)) if isinstance(value, list) else value


def to_csv(report: dict) -> str:
    """The CSV report, each cell safe to open in a spreadsheet (dfscan.core.files.spreadsheet_cell: a
    file named `=HYPERLINK(...).mp4` is shown as text, never run as a formula)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    # csv quotes a cell holding "\n" but not one holding a lone "\r" (a file name may): unquoted,
    # every reader took it for the end of the row. Such a row is written with every cell quoted.
    quoted = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for row in csv_rows(report):
        row = {k: spreadsheet_cell(v) for k, v in row.items()}
        (quoted if any(isinstance(v, str) and "\r" in v for v in row.values()) else writer).writerow(row)
    return buf.getvalue()


def csv_bytes(report: dict) -> bytes:
    """The CSV report as written to a file: UTF-8, a non-UTF-8 name as its own bytes."""
    return to_csv(report).encode("utf-8", "surrogateescape")


# The report formats: the only list of them. `--format`'s choices and every writer come from here,
# so a new format is one function and one line (like whisper's get_writer).
WRITERS: dict[str, Callable[[dict], str]] = {"json": to_json, "jsonl": to_jsonl, "csv": to_csv}
FORMATS = tuple(WRITERS)


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The explicit format, else the one the file name implies, else (no extension) json.

    An extension that names no format (`out.xml`, `out.txt`) is refused rather than filled with
    JSON the name does not promise.
    """
    if fmt:
        if fmt not in FORMATS:
            raise InputError(f"unknown report format {fmt!r}: choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    if not suffix:
        return "json"
    if suffix not in FORMATS:
        raise InputError(f"--report {Path(path).name}: .{suffix} is not a report format; name it "
                         f"{', '.join('.' + f for f in FORMATS)}, or pass --format")
    return suffix


def write_report(report: dict, path: str | Path, fmt: str | None = None) -> Path:
    """Write the final report atomically in `fmt` (json | jsonl | csv); a failure leaves the old file and is an OutputError."""
    fmt = format_for(path, fmt)
    text = WRITERS[fmt](report)
    try:
        return atomic_write_text(path, text)
    except OSError as exc:
        raise OutputError(f"cannot write the report to {path}: {_reason(exc)}") from None


def print_report(report: dict, fmt: str, out: IO[str]) -> None:
    """Write the report to an open stream (stdout); a failed write (full disk, closed pipe) is an OutputError."""
    text = WRITERS[fmt](report)
    try:
        buffer = getattr(out, "buffer", None)
        if buffer is not None:  # the bytes a file would hold, whatever stdout's encoding
            out.flush()
            buffer.write(text.encode("utf-8", "surrogateescape"))
            buffer.flush()
        else:
            out.write(text)
            out.flush()
    except OSError as exc:
        with contextlib.suppress(OSError, ValueError):  # what is still buffered goes nowhere, not into a second error at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        raise OutputError(f"cannot write the report to {getattr(out, 'name', 'the output')}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def check_output_path(report_path: str | Path) -> None:
    """Fail before a scan, not after it, when its report cannot be written: a folder in the way,
    a parent that is a file, a read-only folder. Missing parent folders are made, as the writers would."""
    path = Path(report_path)
    for p in (path, stream_path_for(path)):
        if p.is_dir():
            raise OutputError(f"cannot write the report to {path}: {'it' if p == path else p} is a folder")
    existing = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"cannot write the report to {path}: {existing} is not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write the report to {path}: cannot make {path.parent} ({_reason(exc)})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the report to {path}: folder {path.parent} is not writable")


def stream_path_for(report_path: str | Path) -> Path:
    """The crash-safe stream beside the report: out.json → out.stream.jsonl."""
    p = Path(report_path)
    return p.with_name(p.stem + ".stream.jsonl")


class ReportStream:
    """Appends one JSON line per finished item and flushes it, so a crash loses at most the item in flight.

    A failed write (disk full) is an OutputError; what was written before stays for --resume.
    """

    def __init__(self, path: str | Path, header: dict, *, append: bool = False):
        self.path = Path(path)
        self._fh: IO[str] | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = open_output_fd(self.path, "rw")  # never through a link planted at the stream's path
            try:
                if append:
                    _drop_torn_last_line(fd)
                else:
                    os.ftruncate(fd, 0)
                fresh = os.fstat(fd).st_size == 0
                os.lseek(fd, 0, os.SEEK_END)
                self._fh = os.fdopen(fd, "a", encoding="utf-8")
            except BaseException:
                os.close(fd)
                raise
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}") from None
        if fresh:
            self._write(header)

    def _write(self, obj: dict) -> None:
        assert self._fh is not None
        try:
            self._fh.write(dumps_line(obj) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            self.close()
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}; the items before are kept there: "
                              "make room and rerun with --resume") from None

    def write_item(self, item: dict) -> None:
        self._write(item)

    def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                fh.close()
            except OSError:  # only a line whose write already failed (and was reported) was still buffered
                pass

    def __enter__(self) -> "ReportStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _drop_torn_last_line(fd: int) -> None:
    """A crash or a full disk mid-write can leave a broken last line (unterminated, or not JSON);
    cut it, or appending would bury it mid-file where reading it is an error. `fd`: the stream,
    opened read-write by open_output_fd."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0) if size else b""
    if not data:
        return
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    start = data.rfind(b"\n", 0, end) + 1
    if end < len(data) and _is_json(data[start:end]):
        return
    os.ftruncate(fd, start)


def _is_json(line: bytes) -> bool:
    try:
        loads_json(line.decode("utf-8"))
    except ValueError:  # JSONDecodeError, JSONTooDeep and UnicodeDecodeError all are
        return False
    return True


def lock_path_for(report_path: str | Path) -> Path:
    """The lock beside the report and its stream: out.json → out.stream.lock (out.csv shares it, as it shares the stream)."""
    return stream_path_for(report_path).with_suffix(".lock")


class ReportLock:
    """An exclusive lock on a report and its stream, so that two scans never write one report.

    The lock file holds the owner's pid and host, for the message a second scan gets. The lock
    itself is the kernel's flock on that file: it dies with its process, so the file a killed
    scan leaves behind is stale and is taken over. Where flock is missing (some network file
    systems), a lock is stale when its owner's pid is dead on this host. The file is removed on
    release, and so on Ctrl-C.
    """

    def __init__(self, report_path: str | Path):
        self.report = Path(report_path)
        self.path = lock_path_for(self.report)
        self._fd: int | None = None

    def acquire(self) -> "ReportLock":
        for _ in range(3):  # the file can be swapped under us by an owner that is just leaving
            try:
                fd = open_output_fd(self.path, "rw")  # never through a link planted at the lock's path
            except LinkedOutputError as exc:
                raise OutputError(f"cannot write the report to {self.report}: {self.path}: {exc.strerror}") from None
            except OSError as exc:
                raise OutputError(f"cannot write the report to {self.report}: cannot make {self.path} ({_reason(exc)})") from None
            if not _try_lock(fd, self.path):
                os.close(fd)
                owner = _lock_owner(self.path) or {}
                raise ReportLocked(f"{self.report} is being written by another scan (pid {owner.get('pid', '?')} on "
                                   f"{owner.get('host', '?')}); wait for it, or choose another --report "
                                   f"(delete {self.path} if no scan is running)")
            try:
                same = os.path.samestat(os.fstat(fd), os.lstat(self.path))
            except OSError:
                same = False
            if same:
                line = dumps_line({"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso()})
                os.ftruncate(fd, 0)
                os.pwrite(fd, line.encode("utf-8") + b"\n", 0)
                self._fd = fd
                return self
            os.close(fd)
        raise ReportLocked(f"{self.report} is being locked and unlocked by other scans; try again")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self._fd), os.lstat(self.path)):
                self.path.unlink()  # while still holding it: nobody can take the file we are removing
        except OSError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ReportLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _try_lock(fd: int, path: Path) -> bool:
    """True when this process now holds the lock on `fd`."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the owner's pid decides
        pass
    else:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError:  # no flock on this file system (ENOLCK, EOPNOTSUPP): the owner's pid decides
            pass
    owner = _lock_owner(path)
    return not (owner and _alive(owner))


def _lock_owner(path: Path) -> dict | None:
    try:
        owner = loads_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _alive(owner: dict) -> bool:
    """Whether the lock's owner may still run: a pid on another host, or on Windows, cannot be checked."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if owner.get("host") != socket.gethostname() or os.name == "nt":  # os.kill(pid, 0) would kill on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


# ---------------------------------------------------------------- reading and resuming

def read_report(path: str | Path) -> dict:
    """Read a json or jsonl report (or a stream); a stream comes back without `summary`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a dfscan report (not UTF-8 text)") from exc
    try:
        report = loads_json(text)  # a json report (or a stream holding only its header line)
    except JSONTooDeep as exc:  # json.loads' RecursionError, or nesting no report has
        raise InputError(f"{path}: not a dfscan report ({exc})") from None
    except json.JSONDecodeError:
        report = _read_jsonl(path, text)
    if not isinstance(report, dict) or report.get("schema") != SCHEMA_ID:
        raise InputError(f"{path}: not a {SCHEMA_ID} report")
    report.setdefault("items", [])
    return report


def _read_jsonl(path: Path, text: str) -> dict:
    report: dict | None = None
    items: list[dict] = []
    # only "\n" ends a line: str.splitlines() also cuts at U+2028 or U+0085, which JSON leaves raw in a path
    lines = text.split("\n")
    last = max((n for n, line in enumerate(lines, 1) if line.strip()), default=0)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = loads_json(line)
        except JSONTooDeep as exc:
            raise InputError(f"{path}: line {n} is not a dfscan report line ({exc})") from None
        except json.JSONDecodeError:
            if n == last:  # a torn last line (a crash or a full disk mid-write): ignore it
                break
            raise InputError(f"{path}: line {n} is not JSON") from None
        if report is None:
            report = obj
        elif "summary" in obj and "path" not in obj:
            report["summary"] = obj["summary"]
        else:
            items.append(obj)
    if report is None:
        raise InputError(f"{path}: empty report")
    report["items"] = items
    return report


def _path_key(path: str) -> str:
    return os.path.abspath(path)


# Settings added after the first reports: a report without one was made with this behaviour.
SETTINGS_BEFORE = {"tile_every": 0, "detect_every": 1}


BACKEND_KEYS = ("name", "device", "precision")


class Resumed(dict):
    """What --resume keeps: items by absolute path (a dict), and `backends`, the header's backend
    block of each earlier run read, for `check_resumed_backend` once this scan's backend is known."""

    def __init__(self) -> None:
        super().__init__()
        self.backends: list[tuple[Path, dict]] = []


def resumable_items(sources: Iterable[str | Path], *, model_sha256: str, settings: dict) -> Resumed:
    """Items of earlier runs that --resume may keep, keyed by absolute path.

    An item is kept when it was made by the same model and settings, the file's size and
    mtime are unchanged, and it did not end in a transient error (timeout, worker crash).
    Sources that do not exist are ignored; one made with another model or settings is an error,
    since mixing them would make the report lie (the backend is checked once it is chosen:
    check_resumed_backend).
    """
    kept = Resumed()
    for source in sources:
        source = Path(source)
        if not source.is_file() or source.stat().st_size == 0:
            continue
        try:
            prior = read_report(source)
        except InputError:
            if source.suffix == ".csv":  # a csv report cannot be resumed from; the stream can
                continue
            raise
        sha = (prior.get("model") or {}).get("sha256")
        if sha != model_sha256:
            raise InputError(f"cannot resume from {source}: it was made with another model (sha256 {str(sha)[:12]}…); run without --resume")
        old = {**SETTINGS_BEFORE, **(prior.get("settings") or {})}
        new = {**SETTINGS_BEFORE, **settings}
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            raise InputError(f"cannot resume from {source}: settings changed ({', '.join(changed)}); run without --resume")
        backend = prior.get("backend")
        kept.backends.append((source, backend if isinstance(backend, dict) else {}))
        for item in prior.get("items", []):
            if not isinstance(item, dict) or "path" not in item:
                continue
            err = item.get("error") or {}
            if item.get("status") == "error" and err.get("code") in TRANSIENT_ERRORS:
                continue
            if not item.get("file") or item["file"] != file_fingerprint(item["path"]):
                continue
            kept[_path_key(item["path"])] = item
    return kept


def check_resumed_backend(prior: dict[str, dict], backend: dict) -> None:
    """Refuse to resume a report scored on another backend, device or precision: its items and
    this scan's would sit under one header naming only this one (onnxruntime fp32 items in a
    report that says torch cuda fp16). `prior`: resumable_items' result (a plain dict: nothing to check)."""
    new = {k: backend.get(k) for k in BACKEND_KEYS}
    for source, old in getattr(prior, "backends", ()):
        old = {k: old.get(k) for k in BACKEND_KEYS}
        if old != new:
            flag = f"--backend {old['name']}" if old["name"] != new["name"] else "the same backend and device"
            raise InputError(f"cannot resume from {source}: it was scored with {_backend_text(old)}, this scan "
                             f"would score with {_backend_text(new)}; rerun with {flag}, or without --resume")


def _backend_text(backend: dict) -> str:
    return " ".join(str(backend.get(k) or "?") for k in BACKEND_KEYS)
