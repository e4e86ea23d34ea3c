"""`dfscan audit`: read a labelled set's metadata in worker processes and find its shortcuts.

A shortcut is a feature that alone separates real from fake with a folded AUC above
`max_shortcut_auc` (default 0.70): a detector trained on the set can score well by learning it
instead of the forgery. The cross-validated metadata model is gated the same way, since a
combination of features can be a shortcut when no single one is. Per attribute group (when the
CSV has attribute columns) the worst feature is reported, not gated: groups are often small.
A set with fewer than `min_items` readable reals or fakes fails the gate as too small, like
fairness-check's min-group gate: two items always "separate" perfectly, which is no finding.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import numpy as np

from dfscan.core.errors import InputError
from dfscan.scanner.audit.analysis import MODEL_DESCRIPTION, MODEL_NAME, interval, model_separation, separation
from dfscan.scanner.audit.features import DEFAULT_SILENCE_DB, FEATURES, SILENCE_SCAN_S, media_features
from dfscan.scanner.media import MediaError

SCHEMA = "dfscan.audit/1"
MIN_GROUP_CLASS = 5  # a group's worst feature is reported only with this many reals and fakes
MIN_ITEMS = 30  # the gate needs this many readable reals and as many fakes (fairness-check's min-group)

# One mechanical clean-up per feature family: printed, never run on the user's files.
SUGGESTIONS: dict[str, str] = {
    "leading_silence_ms": ("trim each file's leading silence from audio and video together, so they stay in "
                           "sync: ffmpeg -ss <leading_silence_ms/1000> -i IN -c:v libx264 -c:a aac OUT "
                           "(per-file values under `trim`)"),
    "audio_start_ms": "re-mux with both streams starting at 0: ffmpeg -i IN -c copy -avoid_negative_ts make_zero OUT",
    "video_start_ms": "re-mux with both streams starting at 0: ffmpeg -i IN -c copy -avoid_negative_ts make_zero OUT",
    "width": "resize every item, real and fake, to one size: ffmpeg -i IN -vf scale=W:H -c:a copy OUT",
    "height": "resize every item, real and fake, to one size: ffmpeg -i IN -vf scale=W:H -c:a copy OUT",
    "fps": "resample every item to one frame rate: ffmpeg -i IN -vf fps=25 -c:a copy OUT",
    "duration_s": "cut every item to one length: ffmpeg -i IN -t SECONDS -c:v libx264 -c:a aac OUT",
    "frames": "cut every item to one length: ffmpeg -i IN -t SECONDS -c:v libx264 -c:a aac OUT",
    "jpeg_quality": "re-save every image at one quality: PIL Image.open(IN).convert('RGB').save(OUT, quality=90)",
    "image_format": "re-save every image in one format: PIL Image.open(IN).convert('RGB').save(OUT.jpg, quality=90)",
    "has_exif": "strip metadata from every image: PIL Image.open(IN).convert('RGB').save(OUT, quality=90)",
    "has_audio": "drop the audio of every item (if the detector does not use it): ffmpeg -i IN -c:v copy -an OUT",
}
_REENCODE = ("re-encode every item, real and fake, with one codec and quality: "
             "ffmpeg -i IN -c:v libx264 -crf 23 -pix_fmt yuv420p -c:a aac -ar 44100 OUT.mp4")
for _name in ("container", "video_codec", "pixel_format", "bitrate_kbps", "file_size_bytes", "audio_codec",
              "audio_sample_rate", "rotation"):
    SUGGESTIONS[_name] = _REENCODE


@dataclass
class AuditOptions:
    attrs: list[str] | None = None        # attribute columns for per-group tables (default: all non-feature)
    features: list[str] = field(default_factory=list)  # numeric CSV columns audited like metadata
    max_shortcut_auc: float = 0.70
    silence_db: float = DEFAULT_SILENCE_DB
    bootstrap: int = 200
    seed: int = 0
    workers: int | None = None
    min_items: int = MIN_ITEMS  # fewer readable reals or fakes: the gate fails as too small

    def check(self) -> None:
        if not 0.5 <= self.max_shortcut_auc <= 1.0:
            raise InputError(f"--max-shortcut-auc must be in [0.5, 1], got {self.max_shortcut_auc}")
        if not -120.0 <= self.silence_db < 0.0:
            raise InputError(f"--silence-db must be in [-120, 0), got {self.silence_db}")
        if self.bootstrap < 0:
            raise InputError("--bootstrap must be 0 (off) or more")
        if self.min_items < 2:
            raise InputError(f"--min-items must be at least 2, got {self.min_items}")


@dataclass
class AuditResult:
    report: dict[str, Any]
    values: dict[str, list[Any]]  # feature → value of each readable row (for plots)
    y: np.ndarray

    @property
    def passed(self) -> bool:
        return self.report["passed"]


def _features_of(job: tuple[str, float]) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    path, silence_db = job
    try:
        return media_features(path, silence_db), None
    except MediaError as exc:
        return None, (exc.code, str(exc))


def read_features(paths: list[Path], silence_db: float, workers: int | None,
                  progress: Callable[[Any], None] | None = None) -> list[tuple[dict | None, tuple | None]]:
    """Features of every path in order; worker processes when there is more than a handful."""
    jobs = [(str(p), silence_db) for p in paths]
    workers = workers or max(1, min(os.cpu_count() or 1, len(jobs) // 8))
    done = SimpleNamespace(done=0, total=len(jobs))
    out: list[tuple[dict | None, tuple | None]] = []
    with contextlib.ExitStack() as stack:  # one loop; a pool only when it pays
        results: Iterator[tuple[dict | None, tuple | None]]
        if workers == 1:
            results = map(_features_of, jobs)
        else:
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=get_context("spawn")))
            results = pool.map(_features_of, jobs, chunksize=16)
        for r in results:
            out.append(r)
            done.done += 1
            if progress:
                progress(done)
    return out


def _csv_feature(labelled: Any, column: str) -> list[float]:
    """A --feature column's values: finite numbers, or one line naming the first cell that is not.

    nan/inf are refused like any non-number rather than dropped: dropping rows would audit
    another set than the one given (and an inf that only fakes have is itself a shortcut).
    """
    values = []
    for line, raw in zip(labelled.lines, labelled.columns[column]):
        try:
            value = float(raw)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise InputError(f"{Path(labelled.source).name} line {line}: --feature {column!r} needs finite numbers, "
                             f"found {raw!r}")
        values.append(value)
    return values


def _trims(rows: list[dict], written: list[str]) -> list[dict[str, Any]]:
    return [{"path": w, "trim_s": round(r["leading_silence_ms"] / 1000.0, 3)}
            for r, w in zip(rows, written) if r.get("leading_silence_ms", 0) > 0]


def run_audit(labels: str | Path, options: AuditOptions, progress: Callable[[Any], None] | None = None) -> AuditResult:
    """Read the set, measure every feature's separability, gate on the shortcuts."""
    from dfscan.scanner.fairness.labels import read_labels

    options.check()
    labelled = read_labels(labels, options.attrs, require_attributes=False, exclude=options.features)
    missing = [c for c in options.features if c not in labelled.columns]
    if missing:
        raise InputError(f"--feature {', '.join(repr(c) for c in missing)}: no such column in "
                         f"{Path(labels).name} (has: {', '.join(labelled.columns) or 'no extra columns'})")
    csv_values = {c: _csv_feature(labelled, c) for c in options.features}
    results = read_features(labelled.paths, options.silence_db, options.workers, progress)

    keep = [i for i, (feats, _) in enumerate(results) if feats is not None]
    excluded = [{"path": labelled.written[i], "line": labelled.lines[i], "code": err[0], "message": err[1]}
                for i, (_, err) in enumerate(results) if err is not None]
    if not keep:
        raise InputError(f"no item of {Path(labels).name} could be read ({excluded[0]['code']}: "
                         f"{excluded[0]['message']})")
    rows = [feats for feats, _ in results if feats is not None]  # the rows of `keep`, in order
    for c, vals in csv_values.items():
        for row, i in zip(rows, keep):
            row[f"csv:{c}"] = vals[i]
    y = labelled.labels[keep]
    written = [labelled.written[i] for i in keep]
    if y.min() == y.max():
        raise InputError(f"{Path(labels).name}: only {'fake' if y[0] else 'real'} items could be read; "
                         "an audit compares reals with fakes")

    scored = {"rows": len(rows), "real": int((y == 0).sum()), "fake": int((y == 1).sum())}
    too_few = min(scored["real"], scored["fake"]) < options.min_items  # no AUC here is a finding
    kinds = {**{k: v for k, v in FEATURES.items() if any(k in r for r in rows)},
             **{f"csv:{c}": "num" for c in options.features}}
    values = {name: [r.get(name) for r in rows] for name in kinds}
    features: list[dict[str, Any]] = []
    for i, (name, kind) in enumerate(kinds.items()):
        s = separation(values[name], y, kind)
        ci = (interval(values[name], y, kind, options.bootstrap, options.seed + i)
              if options.bootstrap and s.auc is not None else None)
        shortcut = not too_few and s.auc is not None and s.auc > options.max_shortcut_auc
        features.append({"feature": name, "kind": "numeric" if kind == "num" else "categorical", "n": s.n,
                         "auc": None if s.auc is None else round(s.auc, 4), "ci95": ci, "detail": s.detail,
                         "shortcut": shortcut,
                         "suggestion": SUGGESTIONS.get(name, "") if shortcut else ""})
    features.sort(key=lambda f: -(f["auc"] or 0.0))
    model = model_separation(rows, list(kinds), y, options.seed)
    model_shortcut = not too_few and model["auc"] is not None and model["auc"] > options.max_shortcut_auc

    by_group: dict[str, dict[str, Any]] = {}
    for attr, groups in labelled.attributes.items():
        g = np.array([groups[i] for i in keep])
        by_group[attr] = {}
        for name in sorted(set(g.tolist())):
            sel = np.flatnonzero(g == name)
            n_real, n_fake = int((y[sel] == 0).sum()), int((y[sel] == 1).sum())
            entry: dict[str, Any] = {"n_real": n_real, "n_fake": n_fake, "worst_feature": None, "auc": None,
                                     "shortcut": False}
            if min(n_real, n_fake) >= MIN_GROUP_CLASS:
                seps = [(separation([values[k][i] for i in sel], y[sel], kind), k) for k, kind in kinds.items()]
                found = [(s.auc, k, s.detail) for s, k in seps if s.auc is not None]
                if found:
                    auc, k, detail = max(found)
                    entry.update(worst_feature=k, auc=round(auc, 4), detail=detail,
                                 shortcut=not too_few and auc > options.max_shortcut_auc)
            by_group[attr][name] = entry

    shortcuts = [f["feature"] for f in features if f["shortcut"]] + ([MODEL_NAME] if model_shortcut else [])
    trim = _trims(rows, written) if "leading_silence_ms" in shortcuts else []
    report = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "labels": {"path": str(Path(labels)), "rows": len(labelled), "real": int((labelled.labels == 0).sum()),
                   "fake": int((labelled.labels == 1).sum())},
        "settings": {"max_shortcut_auc": options.max_shortcut_auc, "silence_db": options.silence_db,
                     "silence_scan_s": SILENCE_SCAN_S, "bootstrap": options.bootstrap, "seed": options.seed,
                     "min_group_class": MIN_GROUP_CLASS, "min_items": options.min_items,
                     "csv_features": options.features},
        "scored": scored,
        "too_few": too_few,
        "excluded": excluded,
        "features": features,
        "model": {"name": MODEL_NAME, "method": MODEL_DESCRIPTION, **model, "shortcut": model_shortcut},
        "by_group": by_group,
        "shortcuts": shortcuts,
        "trim": trim,
        "passed": not shortcuts and not too_few,
        "warnings": list(labelled.warnings),  # group names merged or looking alike
    }
    return AuditResult(report, values, y)
