"""The `dfscan.report/1` report: building it, writing it (JSON / JSONL / CSV), streaming, resuming.

Formats:
- json: one object, the schema in `scanner/schemas/report.schema.json`.
- jsonl: a header line (everything but `items` and `summary`), one line per item, then a line
  `{"summary": {...}}`. The crash-safe stream written during a scan is the same format without
  the summary line, so one reader handles both.
- csv: one row per subject (a person in a file) with the item's columns repeated; an item with
  no subject (error, no face) gets one row with empty subject columns. Frames are left out.

Every final write is atomic (temporary file in the same folder, fsync, os.replace), so a reader
never sees half a report.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import IO, Any

from scanner import __version__
from train.errors import InputError
from train.files import atomic_write_bytes

SCHEMA_ID = "dfscan.report/1"
FORMATS = ("json", "jsonl", "csv")
HEADER_KEYS = ("schema", "created", "tool", "model", "backend", "settings", "skipped")
CSV_COLUMNS = (
    "path", "kind", "status", "error_code", "error_message", "score", "verdict",
    "subject_id", "subject_score", "subject_verdict", "subject_frames",
    "width", "height", "fps", "duration", "frames_sampled", "codec", "rotation",
)
# Errors worth trying again on --resume: they depend on the machine's state, not on the file.
TRANSIENT_ERRORS = frozenset({"timeout", "worker_crashed"})


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
    item = {
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
    """The JSON Schema shipped in the package (scanner/schemas/report.schema.json)."""
    return json.loads(resources.files("scanner").joinpath("schemas/report.schema.json").read_text("utf-8"))


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

def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text written atomically (`train.files.atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_json(report: dict) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def to_jsonl(report: dict) -> str:
    lines = [_dumps({k: report[k] for k in HEADER_KEYS if k in report})]
    lines += [_dumps(item) for item in report["items"]]
    lines.append(_dumps({"summary": report["summary"]}))
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
            **{k: _cell(media.get(k)) for k in ("width", "height", "fps", "duration", "frames_sampled", "codec", "rotation")},
        }
        subjects = item.get("subjects") or []
        if not subjects:
            yield {**base, "subject_id": "", "subject_score": "", "subject_verdict": "", "subject_frames": ""}
        for s in subjects:
            yield {**base, "subject_id": s["id"], "subject_score": _cell(s["score"]),
                   "subject_verdict": s["verdict"], "subject_frames": len(s["frames"])}


def _cell(value: Any) -> Any:
    return "" if value is None else value


def to_csv(report: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return buf.getvalue()


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The explicit format, else the one the file name implies, else json."""
    if fmt:
        if fmt not in FORMATS:
            raise InputError(f"unknown report format {fmt!r}: choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else "json"


def write_report(report: dict, path: str | Path, fmt: str | None = None) -> Path:
    """Write the final report atomically in `fmt` (json | jsonl | csv)."""
    fmt = format_for(path, fmt)
    text = {"json": to_json, "jsonl": to_jsonl, "csv": to_csv}[fmt](report)
    return atomic_write_text(path, text)


def stream_path_for(report_path: str | Path) -> Path:
    """The crash-safe stream beside the report: out.json → out.stream.jsonl."""
    p = Path(report_path)
    return p.with_name(p.stem + ".stream.jsonl")


class ReportStream:
    """Appends one JSON line per finished item and flushes it, so a crash loses at most the item in flight."""

    def __init__(self, path: str | Path, header: dict, *, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (append and self.path.is_file() and self.path.stat().st_size > 0)
        if not fresh:
            _drop_partial_last_line(self.path)
        self._fh: IO[str] | None = open(self.path, "w" if fresh else "a", encoding="utf-8")
        if fresh:
            self._write(header)

    def _write(self, obj: dict) -> None:
        assert self._fh is not None
        self._fh.write(_dumps(obj) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def write_item(self, item: dict) -> None:
        self._write(item)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "ReportStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _drop_partial_last_line(path: Path) -> None:
    """A crash mid-write can leave half a line at the end; cut it so appending stays valid JSONL."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as fh:
            fh.truncate(cut)


# ---------------------------------------------------------------- reading and resuming

def read_report(path: str | Path) -> dict:
    """Read a json or jsonl report (or a stream); a stream comes back without `summary`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a dfscan report (not UTF-8 text)") from exc
    try:
        report = json.loads(text)  # a json report (or a stream holding only its header line)
    except json.JSONDecodeError:
        report = _read_jsonl(path, text)
    if not isinstance(report, dict) or report.get("schema") != SCHEMA_ID:
        raise InputError(f"{path}: not a {SCHEMA_ID} report")
    report.setdefault("items", [])
    return report


def _read_jsonl(path: Path, text: str) -> dict:
    report: dict | None = None
    items: list[dict] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if n == len(text.splitlines()):  # a half-written last line from a crash: ignore it
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


def resumable_items(sources: Iterable[str | Path], *, model_sha256: str, settings: dict) -> dict[str, dict]:
    """Items of earlier runs that --resume may keep, keyed by absolute path.

    An item is kept when it was made by the same model and settings, the file's size and
    mtime are unchanged, and it did not end in a transient error (timeout, worker crash).
    Sources that do not exist are ignored; one made with another model or settings is an error,
    since mixing them would make the report lie.
    """
    kept: dict[str, dict] = {}
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
        old = prior.get("settings") or {}
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if changed:
            raise InputError(f"cannot resume from {source}: settings changed ({', '.join(changed)}); run without --resume")
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
