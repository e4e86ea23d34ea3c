"""fairness-check: a labelled set and detector scores → per-group metrics, fairness gaps, CI gates.

Why a library and not CLI code: CI runs the command, tests and notebooks call these functions.
The metric formulas live only in `train/metrics.py`, so training validation and this release
check can never disagree about what "F_FPR" means.

Policy for small groups (documented in docs/fairness-check.md): a group with fewer than
`min_group` scored items, or with only real or only fake items (no AUC, no FPR or no TPR), is
marked `insufficient`; fairness gaps and gates are computed over the sufficient groups only, and
a `min-group` gate per scope fails while any group is insufficient — unless `allow_small_groups`
is set, when it is reported as `warn`. A gate whose value cannot be computed (fewer than two
sufficient groups) fails the same way. Nothing small or one-sided passes silently.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tomllib
import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable
from xml.etree import ElementTree as ET

import numpy as np

from scanner.csvtable import parse_label, read_csv_table, require_columns
from scanner.markdown import md_escape
from train.errors import InputError

SCHEMA = "dfscan.fairness/1"
PGFDD_REQUIRED = ("img_path", "label", "ismale", "isasian", "iswhite", "isblack")
PGFDD_OPTIONAL = ("intersec_label", "spe_label")
INTERSECTION = "intersection"
# Per-group metric keys, in table order: (key in our output, column title).
GROUP_COLUMNS = (
    ("n", "n"), ("n_real", "real"), ("n_fake", "fake"), ("auc", "AUC"), ("acc", "ACC"),
    ("tpr", "TPR"), ("fpr", "FPR"), ("tnr", "TNR"), ("fnr", "FNR"),
    ("positive_rate", "pos.rate"), ("eer", "EER"), ("ap", "AP"),
)
# Columns reported per value (which forgery methods, which datasets the detector fails on) but not
# judged as demographic groups: `method` pits each method's fakes against every real.
BREAKDOWN_COLUMNS = ("method", "domain")
FAIRNESS_KEYS = ("F_FPR", "F_MEO", "F_DP", "F_OAE",
                 "demographic_parity_difference", "equalized_odds_difference")
LISTED = 3  # bad rows named in the one-line error before "and N more"


# --------------------------------------------------------------------------------------------
# The labelled set
# --------------------------------------------------------------------------------------------

@dataclass
class LabelledSet:
    """Rows of a labels.csv: where each item is, its truth and its demographic groups."""

    source: Path
    format: str                       # "dfscan" or "pgfdd" (the official PG-FDD CSV)
    paths: list[Path]                 # absolute, resolved against the CSV's folder
    written: list[str]                # the path as written in the CSV
    lines: list[int]                  # CSV line of each row, for messages
    labels: np.ndarray                # int 0 = real, 1 = fake
    attributes: dict[str, list[str]]  # chosen attribute → group of each row
    intersection: list[str]           # intersectional group of each row
    columns: dict[str, list[str]] = field(default_factory=dict)  # every other column, as written

    def __len__(self) -> int:
        return len(self.paths)


def _onehot(value: str, where: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if number not in (0.0, 1.0):
        raise InputError(f"{where}: expected 0 or 1, found {value!r}")
    return number == 1.0


def _control_char(text: str) -> str | None:
    """The first control or invisible format character (NUL, ESC, U+202E) as U+XXXX, else None.

    Such a character makes a group that looks like another one, or rewrites the terminal.
    """
    for c in text:
        if unicodedata.category(c) in ("Cc", "Cf"):
            return f"U+{ord(c):04X}"
    return None


def _shown(text: str) -> str:
    return text if text.isprintable() else repr(text)


def _path_problem(path: Path, raw: str, root: Path | None, check_file: bool) -> str | None:
    """Why a row's media cannot be scored, or None; asked of every row before anything is scanned."""
    from scanner.media import MEDIA_EXTS

    bad = _control_char(raw)
    if bad:
        return f"control character ({bad}) in the path"
    if root is not None and not Path(os.path.realpath(path)).is_relative_to(root):
        return f"outside --root {root}"
    if not check_file:
        return None
    if not path.exists():
        return "file not found"
    if path.is_dir():
        return "not a file (a folder)"
    if not path.is_file():
        return "not a regular file"
    if path.suffix.lower() not in MEDIA_EXTS:
        return f"not a video or image file ({path.suffix or 'no extension'})"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"not readable ({exc.strerror or exc})"
    return None


def _confinement(root: str | Path | None) -> Path | None:
    if root is None:
        return None
    real = Path(os.path.realpath(root))
    if not real.is_dir():
        raise InputError(f"--root {root}: not a folder")
    return real


def read_labels(csv_path: str | Path, attrs: Iterable[str] | None = None, *,
                check_paths: bool = True, root: str | Path | None = None,
                require_attributes: bool = True, exclude: Iterable[str] = ()) -> LabelledSet:
    """Read and validate a labelled set; every problem is one InputError naming the line.

    fairness-check needs attribute columns with two or more groups each; `dfscan audit` reads
    the same file without (`require_attributes=False`) and takes its `exclude` columns (numeric
    features) only as raw `columns`, not as attributes.

    Every path is checked before anything is scored (exists, a readable file, a media type; with
    `root`, inside it once symlinks are resolved), and all bad rows are reported together, so a
    bad row is not found after an hour of scanning. Without `root`, `../` and absolute paths
    are followed.
    """
    confined = _confinement(root)
    table = read_csv_table(csv_path, what="labelled set", expected="path,label,<attributes>")
    name, header, base, records = table.name, table.header, table.base, table.rows
    header_line = table.header_line
    fmt = "pgfdd" if "img_path" in header else "dfscan"
    require_columns(table, PGFDD_REQUIRED if fmt == "pgfdd" else ("path", "label"))
    col = table.column
    if fmt == "pgfdd":
        available = ["gender", "race"]
    else:
        available = [h for h in header if h not in ("path", "label", *exclude)]
    if not available and require_attributes:
        raise InputError(f"{name} line {header_line} (header): no attribute columns after "
                         "'path,label' (add e.g. gender,race)")
    for a in available:
        bad = _control_char(a)
        if bad:
            raise InputError(f"{name} line {header_line} (header): column {a!r} contains a "
                             f"control character ({bad})")
    chosen = list(dict.fromkeys(a.strip() for a in attrs)) if attrs is not None else list(available)
    if not chosen and require_attributes:
        chosen = list(available)
    unknown = [a for a in chosen if a not in available]
    if unknown or (not chosen and require_attributes):
        raise InputError(f"unknown attribute(s) {', '.join(repr(a) for a in unknown)}; "
                         f"{name} has: {', '.join(available)}")
    if not records:
        raise InputError(f"{name}: no rows after the header")

    path_col = "img_path" if fmt == "pgfdd" else "path"
    paths: list[Path] = []
    written: list[str] = []
    lines: list[int] = []
    labels: list[int] = []
    groups: dict[str, list[str]] = {a: [] for a in available}
    intersec: list[str] = []
    first_line: dict[Path, int] = {}
    problems: list[str] = []
    for line, cells in records:
        where = f"{name} line {line}"
        raw_path = cells[col[path_col]]
        if not raw_path:
            raise InputError(f"{where}: empty {path_col}")
        label = parse_label(cells[col["label"]], where)
        path = Path(os.path.abspath(base / raw_path))
        if path in first_line:
            raise InputError(f"{where}: duplicate path {raw_path!r} (first on line {first_line[path]})")
        first_line[path] = line
        problem = _path_problem(path, raw_path, confined, check_paths)
        if problem:
            problems.append(f"line {line}: {problem}: {_shown(raw_path)}")
        if fmt == "pgfdd":
            male = _onehot(cells[col["ismale"]], f"{where} column 'ismale'")
            races = [r for r in ("asian", "white", "black")
                     if _onehot(cells[col[f"is{r}"]], f"{where} column 'is{r}'")]
            if len(races) > 1:
                raise InputError(f"{where}: more than one of isasian/iswhite/isblack is 1")
            groups["gender"].append("male" if male else "female")
            groups["race"].append(races[0] if races else "other")
            if "intersec_label" in col:
                value = cells[col["intersec_label"]]
                try:
                    intersec.append(str(int(float(value))))
                except ValueError:
                    raise InputError(f"{where}: intersec_label {value!r} is not an integer") from None
        else:
            for a in available:
                value = cells[col[a]]
                if not value:
                    raise InputError(f"{where}: empty value in column {a!r}")
                if "|" in value:
                    raise InputError(f"{where}: column {a!r} value {value!r} contains '|', "
                                     "which joins intersectional group names")
                bad = _control_char(value)
                if bad:
                    raise InputError(f"{where}: column {a!r} value {value!r} contains a control "
                                     f"character ({bad})")
                groups[a].append(value)
        paths.append(path)
        written.append(raw_path)
        lines.append(line)
        labels.append(label)

    if problems:
        more = f"; and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
        hint = (f" (relative paths are read from {base})"
                if any(": file not found:" in p for p in problems) else "")
        raise InputError(f"{name}: {len(problems)} of {len(records)} rows "
                         f"{'have unusable paths' if len(problems) > 1 else 'has an unusable path'}: "
                         f"{'; '.join(problems[:LISTED])}{more}{hint}")
    for a in chosen if require_attributes else ():
        distinct = sorted(set(groups[a]))
        if len(distinct) < 2:
            raise InputError(f"{name} column {a!r}: a single group ({distinct[0]!r}) on every row "
                             "(lines {0}-{1}); a fairness check needs two or more".format(
                                 lines[0], lines[-1]))
    joined = ["|".join(groups[a][i] for a in chosen) for i in range(len(paths))]
    if fmt == "pgfdd" and intersec and sorted(chosen) == ["gender", "race"]:
        intersection = _name_official_groups(intersec, joined)
    else:
        intersection = joined
    return LabelledSet(
        source=csv_path, format=fmt, paths=paths, written=written, lines=lines,
        labels=np.asarray(labels, dtype=np.int64),
        attributes={a: groups[a] for a in chosen}, intersection=intersection,
        columns={h: [cells[col[h]] for _, cells in records] for h in header if h not in ("path", "label", path_col)})


def _name_official_groups(index: list[str], derived: list[str]) -> list[str]:
    """Keep PG-FDD's intersec_label as the grouping, named like 'female|asian' where unambiguous.

    The official index means different groups in different datasets (DFD and Celeb-DF have no
    asian group), so the name comes from the one-hot columns of the rows in that group.
    """
    names: dict[str, set[str]] = {}
    for k, d in zip(index, derived):
        names.setdefault(k, set()).add(d)
    label = {k: (next(iter(v)) if len(v) == 1 else f"intersec_label={k}") for k, v in names.items()}
    return [label[k] for k in index]


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------

@dataclass
class Scores:
    """A score per labelled row (NaN where the item was not scored) and where they came from."""

    values: np.ndarray
    status: list[str]                # "ok", "no_face", "error", ...
    model: dict[str, Any]
    source: str


def load_report(path: str | Path) -> dict:
    """Read an earlier dfscan report (json or jsonl); anything else is an InputError."""
    from scanner.report import read_report

    path = Path(path)
    if not path.is_file():
        raise InputError(f"scores report not found: {path}")
    report = read_report(path)
    if not isinstance(report.get("items"), list):
        raise InputError(f"{path.name}: report has no 'items' list")
    return report


def scores_from_report(report: dict, labelled: LabelledSet, *, base: Path | None = None,
                       source: str = "report") -> Scores:
    """Match report items to labelled rows by path (absolute, or relative to `base`/cwd)."""
    bases = [Path.cwd()] + ([Path(base)] if base is not None else [])
    by_key: dict[str, dict] = {}
    for item in report["items"]:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise InputError(f"{source}: an item without a 'path' string")
        raw = item["path"]
        p = Path(raw)
        keys = {raw} | ({os.path.abspath(p)} if p.is_absolute()
                        else {os.path.abspath(b / p) for b in bases})
        for k in keys:
            by_key.setdefault(k, item)
    values = np.full(len(labelled), np.nan, dtype=np.float64)
    status: list[str] = []
    unmatched: list[str] = []
    for i, (path, written) in enumerate(zip(labelled.paths, labelled.written)):
        item = by_key.get(str(path)) or by_key.get(written)
        if item is None:
            unmatched.append(written)
            status.append("unmatched")
            continue
        score = item.get("score")
        st = item.get("status", "ok")
        if st == "ok" and isinstance(score, (int, float)) and math.isfinite(score):
            values[i] = float(score)
            status.append("ok")
        else:
            status.append(st if st != "ok" else "no_score")
    if unmatched:
        first = ", ".join(unmatched[:3]) + (", ..." if len(unmatched) > 3 else "")
        raise InputError(f"{len(unmatched)} of {len(labelled)} labelled rows have no item in "
                         f"{source} (first: {first}); paths are matched after resolving "
                         "against the CSV's folder")
    return Scores(values=values, status=status, model=dict(report.get("model") or {}),
                  source=source)


def score_with_pipeline(labelled: LabelledSet, scan_options: Any, progress: Any = None) -> Scores:
    """Score every labelled item through the scan pipeline (the same path users' scans take)."""
    from scanner.pipeline import scan

    report = scan([str(p) for p in labelled.paths], scan_options, progress=progress)
    if (report.get("summary") or {}).get("interrupted"):
        raise KeyboardInterrupt
    skipped = {os.path.abspath(s["path"]): s.get("reason", "skipped") for s in report.get("skipped") or []}
    for path, written, line in zip(labelled.paths, labelled.written, labelled.lines):
        if str(path) in skipped:
            raise InputError(f"{labelled.source.name} line {line}: {written} was not scanned "
                             f"({skipped[str(path)]})")
    return scores_from_report(report, labelled, source="the scan")


# --------------------------------------------------------------------------------------------
# Options, gates and configuration
# --------------------------------------------------------------------------------------------

# gate name → (metric, comparison, option field)
GATES = {
    "max-ffpr": ("F_FPR", "<="),
    "max-fmeo": ("F_MEO", "<="),
    "max-fdp": ("F_DP", "<="),
    "max-foae": ("F_OAE", "<="),
    "min-auc": ("AUC", ">="),
    "max-fpr": ("FPR", "<="),
    "min-tpr": ("TPR", ">="),
}
# gates on a rate itself (overall and in the worst group), not on a gap between groups: every gap
# passes when every group is equally wrong (FPR 1.00 everywhere)
# (metric → the per-group key, and what a group needs for the rate to exist)
ABSOLUTE = {"AUC": ("auc", "real and fake items"), "FPR": ("fpr", "real items"), "TPR": ("tpr", "fake items")}


@dataclass
class CheckOptions:
    """Everything that changes the check's result; filled from options, then config files."""

    attrs: list[str] | None = None
    threshold: float | None = None
    min_group: int = 30
    allow_small_groups: bool = False
    bootstrap: int = 200
    seed: int = 0
    max_ffpr: float | None = None
    max_fmeo: float | None = None
    max_fdp: float | None = None
    max_foae: float | None = None
    min_auc: float | None = None
    max_fpr: float | None = None
    min_tpr: float | None = None

    def validate(self) -> "CheckOptions":
        if self.min_group < 1:
            raise InputError(f"min-group must be at least 1, got {self.min_group}")
        if self.bootstrap < 0:
            raise InputError(f"bootstrap must be 0 (off) or a number of resamples, got {self.bootstrap}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"threshold must be within [0, 1], got {self.threshold}")
        for gate in GATES:
            value = getattr(self, gate.replace("-", "_"))
            if value is not None and (not math.isfinite(value) or value < 0):
                raise InputError(f"{gate} must be a non-negative number, got {value}")
        for gate, (metric, _) in GATES.items():
            value = getattr(self, gate.replace("-", "_"))
            if metric in ABSOLUTE and value is not None and value > 1:
                raise InputError(f"{gate} is a fraction in [0, 1], got {value}")
        return self


_TYPES = {"attrs": list, "threshold": float, "min_group": int, "allow_small_groups": bool,
          "bootstrap": int, "seed": int, "max_ffpr": float, "max_fmeo": float, "max_fdp": float,
          "max_foae": float, "min_auc": float, "max_fpr": float, "min_tpr": float}


def read_config(path: str | Path | None = None, *, cwd: Path | None = None) -> dict[str, Any]:
    """Settings from `--config FILE` or, without one, `[tool.dfscan.fairness]` of ./pyproject.toml.

    A --config file may hold `[tool.dfscan.fairness]`, `[fairness]` or the keys at top level.
    Keys use the option names, with - or _ (`max-ffpr = 5`, `min_group = 50`).
    """
    if path is None:
        candidate = (cwd or Path.cwd()) / "pyproject.toml"
        if not candidate.is_file():
            return {}
        data = _load_toml(candidate)
        table = data.get("tool", {}).get("dfscan", {}).get("fairness", {})
        where = f"{candidate.name} [tool.dfscan.fairness]"
    else:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"config file not found: {path}")
        data = _load_toml(path)
        if "tool" in data:
            table = data.get("tool", {}).get("dfscan", {}).get("fairness")
            if table is None:
                raise InputError(f"{path.name}: no [tool.dfscan.fairness] table")
        elif "fairness" in data:
            table = data["fairness"]
        else:
            table = data
        where = path.name
    if not isinstance(table, dict):
        raise InputError(f"{where}: expected a table of settings")
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        kind = _TYPES.get(name)
        if kind is None:
            raise InputError(f"{where}: unknown setting {key!r} (known: "
                             f"{', '.join(k.replace('_', '-') for k in _TYPES)})")
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        elif kind is list and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InputError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
        out[name] = value
    return out


def _load_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name}: not valid TOML ({exc})") from None


def merge_options(cli: dict[str, Any], config: dict[str, Any]) -> CheckOptions:
    """Options given on the command line (not None) win over the config file's."""
    merged: dict[str, Any] = {}
    for f in fields(CheckOptions):
        if cli.get(f.name) is not None:
            merged[f.name] = cli[f.name]
        elif f.name in config:
            merged[f.name] = config[f.name]
    return CheckOptions(**merged).validate()


# --------------------------------------------------------------------------------------------
# Metrics (composed from train/metrics.py; no formula is written here)
# --------------------------------------------------------------------------------------------

def _clean(value: Any) -> Any:
    """NaN/inf → None and numpy scalars → Python, so the JSON is valid and comparable."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _group_row(m: dict[str, float], min_group: int) -> dict[str, Any]:
    row: dict[str, Any] = {"n": int(m["n"]), "n_real": int(m["n_neg"]), "n_fake": int(m["n_pos"])}
    for key in ("auc", "acc", "tpr", "fpr", "tnr", "fnr", "positive_rate", "negative_rate", "eer", "ap"):
        row[key] = m[key]
    # a group of one class has no AUC and no FPR or TPR: like a small group it cannot be judged
    reasons = [f"n < {min_group}"] if row["n"] < min_group else []
    if row["n"]:
        reasons += [text for count, text in ((row["n_fake"], "no fake items"),
                                             (row["n_real"], "no real items")) if not count]
    row["sufficient"] = not reasons
    row["insufficient_reason"] = ", ".join(reasons) or None
    return row


@dataclass
class CheckResult:
    """The check's document (what --json writes) plus the scored arrays the plots need."""

    report: dict[str, Any]
    y: np.ndarray
    p: np.ndarray
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])


def analyse(labelled: LabelledSet, scores: Scores, options: CheckOptions) -> CheckResult:
    """Metrics overall, per group of every attribute and of their intersection; gaps; gates."""
    from scanner import __version__
    from train.metrics import binary_metrics, bootstrap_ci, fairness_metrics, group_metrics, method_metrics

    options.validate()
    threshold = options.threshold
    threshold_source = "--threshold"
    if threshold is None:
        threshold = scores.model.get("threshold")
        threshold_source = "model"
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            raise InputError(f"no decision threshold: {scores.source} has no model.threshold; "
                             "pass --threshold")
    threshold = float(threshold)

    ok = np.isfinite(scores.values)
    excluded_rows = [i for i in range(len(labelled)) if not ok[i]]
    by_status: dict[str, int] = {}
    for i in excluded_rows:
        by_status[scores.status[i]] = by_status.get(scores.status[i], 0) + 1
    excluded = {
        "count": len(excluded_rows),
        "by_status": dict(sorted(by_status.items())),
        "items": [{"path": labelled.written[i], "line": labelled.lines[i], "status": scores.status[i]}
                  for i in excluded_rows],
    }
    if not ok.any():
        summary = ", ".join(f"{v} {k}" for k, v in by_status.items())
        raise InputError(f"none of the {len(labelled)} labelled items has a score ({summary}); "
                         "nothing to check")
    y = labelled.labels[ok]
    p = scores.values[ok]
    scopes: dict[str, list[str]] = {INTERSECTION: labelled.intersection, **labelled.attributes}
    groups = {s: np.asarray(v, dtype=object)[ok] for s, v in scopes.items()}

    overall = _group_row(binary_metrics(y, p, threshold), 1)
    del overall["sufficient"], overall["insufficient_reason"]
    by_group: dict[str, dict[str, dict]] = {}
    fairness: dict[str, dict[str, float | None]] = {}
    intervals: dict[str, dict[str, dict[str, float]]] = {}
    sufficiency: dict[str, dict[str, list[str]]] = {}
    for scope, g in groups.items():
        per = group_metrics(y, p, g, threshold)
        for name in sorted(set(scopes[scope]) - set(per)):  # every item of the group excluded
            per[name] = binary_metrics(np.zeros(0, dtype=np.int64), np.zeros(0), threshold)
        rows = {k: _group_row(per[k], options.min_group) for k in sorted(per)}
        by_group[scope] = rows
        good = [k for k, r in rows.items() if r["sufficient"]]
        sufficiency[scope] = {"sufficient": good,
                              "insufficient": [k for k, r in rows.items() if not r["sufficient"]]}
        if len(good) < 2:
            fairness[scope] = {k: None for k in FAIRNESS_KEYS}
            continue
        keep = np.isin(g, good)
        yk, pk, gk = y[keep], p[keep], g[keep]
        fairness[scope] = {k: fairness_metrics(yk, pk, gk, threshold)[k] for k in FAIRNESS_KEYS}
        if options.bootstrap:
            ci = bootstrap_ci(lambda a, b, c: fairness_metrics(a, b, c, threshold), yk, pk, gk,
                              n=options.bootstrap, seed=options.seed, strata=gk, bias_corrected=True)
            intervals[scope] = {k: {"low": ci[k][0], "high": ci[k][1], "unstable": ci[k][2]} for k in FAIRNESS_KEYS}

    breakdown: dict[str, dict[str, dict]] = {}
    for col in BREAKDOWN_COLUMNS:
        if col in labelled.columns and col not in labelled.attributes:
            values = np.asarray(labelled.columns[col], dtype=object)[ok]
            table = (method_metrics if col == "method" else group_metrics)(y, p, values, threshold)
            breakdown[col] = {k: _group_row(v, options.min_group) for k, v in table.items()}

    document: dict[str, Any] = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tool": {"name": "dfscan", "version": __version__},
        "labels": {"path": str(labelled.source), "format": labelled.format, "rows": len(labelled),
                   "attributes": list(labelled.attributes)},
        "scores": {"source": scores.source, "model": scores.model},
        "threshold": threshold,
        "threshold_source": threshold_source,
        "settings": {"min_group": options.min_group, "allow_small_groups": options.allow_small_groups,
                     "bootstrap": options.bootstrap, "confidence": 0.95, "seed": options.seed},
        "scored": int(ok.sum()),
        "excluded": excluded,
        "overall": overall,
        "by_group": by_group,
        "groups": sufficiency,
        "fairness": fairness,
        "intervals": intervals,
        "breakdown": breakdown,
    }
    gate_scopes = [INTERSECTION] + (list(labelled.attributes) if len(labelled.attributes) > 1 else [])
    document["gates"] = evaluate_gates(document, options, gate_scopes)
    document["passed"] = all(g["status"] != "fail" for g in document["gates"])
    return CheckResult(report=_clean(document), y=y, p=p, groups=groups)


def evaluate_gates(doc: dict[str, Any], options: CheckOptions, scopes: list[str]) -> list[dict]:
    """One record per (gate, scope): value, limit, pass | fail | warn, and why.

    `warn` only ever replaces a failure caused by small groups, and only with
    allow_small_groups; a value that cannot be computed is never a pass.
    """
    gates: list[dict] = []
    uncomputable = "warn" if options.allow_small_groups else "fail"

    def add(gate: str, metric: str, scope: str, value: float | None, limit: float | int, op: str,
            note: str = "", status: str | None = None) -> None:
        if status is None:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                status = uncomputable
            else:
                status = "pass" if (value <= limit if op == "<=" else value >= limit) else "fail"
        gates.append({"gate": gate, "metric": metric, "scope": scope, "value": value,
                      "op": op, "limit": limit, "status": status, "note": note})

    for gate, (metric, op) in GATES.items():
        limit = getattr(options, gate.replace("-", "_"))
        if limit is None or metric not in ABSOLUTE:
            continue
        key, needs = ABSOLUTE[metric]
        value = doc["overall"][key]
        add(gate, metric, "overall", value, limit, op,
            "" if value is not None and not math.isnan(value) else f"not computable: needs {needs}")
    for scope in scopes:
        rows = doc["by_group"][scope]
        small = doc["groups"][scope]["insufficient"]
        smallest = min(r["n"] for r in rows.values())
        below = [k for k in small if rows[k]["n"] < options.min_group]
        one_class = [k for k in small if k not in below]
        parts = []
        if below:
            parts.append("groups below min-group: " + ", ".join(f"{k} (n={rows[k]['n']})" for k in below))
        if one_class:
            parts.append("groups with one class: " + ", ".join(
                f"{k} ({rows[k]['insufficient_reason']})" for k in one_class))
        note = "; ".join(parts)
        if small and options.allow_small_groups:
            note += "; allowed by allow-small-groups, gates use the other groups"
        add("min-group", "smallest group n", scope, smallest, options.min_group, ">=",
            note, status="pass" if not small else uncomputable)
        few = len(doc["groups"][scope]["sufficient"]) < 2
        for gate, (metric, op) in GATES.items():
            limit = getattr(options, gate.replace("-", "_"))
            if limit is None:
                continue
            if metric in ABSOLUTE:
                key, needs = ABSOLUTE[metric]
                defined = {k: r[key] for k, r in rows.items()
                           if r["sufficient"] and r[key] is not None and not math.isnan(r[key])}
                undefined = [k for k, r in rows.items() if r["sufficient"] and k not in defined]
                if defined:
                    worst = (min if op == ">=" else max)(defined, key=defined.get)
                    why = f"worst group: {worst}"
                    if undefined:
                        why += f"; no {metric} (it needs {needs}): " + ", ".join(undefined)
                    add(gate, f"worst-group {metric}", scope, defined[worst], limit, op, why)
                elif not undefined:
                    add(gate, f"worst-group {metric}", scope, None, limit, op,
                        "not computable: no group has min-group items")
                else:
                    add(gate, f"worst-group {metric}", scope, None, limit, op,
                        f"not computable: no group with min-group items has a defined {metric}")
            else:
                value = doc["fairness"][scope][metric]
                why = ("not computable: fewer than two groups with min-group items" if few
                       else f"over {len(doc['groups'][scope]['sufficient'])} groups")
                add(gate, metric, scope, value, limit, op, why)
    return gates


def run_check(labels: str | Path, options: CheckOptions, *, scores_report: str | Path | None = None,
              scan_options: Any = None, progress: Any = None,
              root: str | Path | None = None) -> CheckResult:
    """The whole check: read the labelled set (paths confined to `root` if given), get scores
    (report or scan), analyse."""
    asked = set(options.attrs or ())
    labelled = read_labels(labels, options.attrs, root=root, exclude=[c for c in BREAKDOWN_COLUMNS if c not in asked])
    if scores_report is not None:
        report = load_report(scores_report)
        scores = scores_from_report(report, labelled, base=Path(scores_report).resolve().parent,
                                    source=Path(scores_report).name)
    else:
        if scan_options is None:
            raise InputError("give --scores report.json or let the check scan the media")
        scores = score_with_pipeline(labelled, scan_options, progress=progress)
    return analyse(labelled, scores, options)


# --------------------------------------------------------------------------------------------
# Outputs: terminal tables, JSON, Markdown, JUnit XML, plots
# --------------------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _fair_cell(doc: dict, scope: str, key: str) -> str:
    percent = key.startswith("F_")
    digits = 2 if percent else 3
    text = _fmt(doc["fairness"][scope][key], digits)
    ci = doc["intervals"].get(scope, {}).get(key)
    if ci and ci["low"] is not None:
        text += f" [{_fmt(ci['low'], digits)}, {_fmt(ci['high'], digits)}]" + (" unstable" if ci.get("unstable") else "")
    return text


def _limit(g: dict) -> str:
    return f"{g['op']} {g['limit']:g}"


def _gate_value(g: dict) -> str:
    return _fmt(g["value"], 0 if g["gate"] == "min-group" else 3)


def _scope_order(doc: dict) -> list[str]:
    return [INTERSECTION] + [a for a in doc["labels"]["attributes"]]


def excluded_line(doc: dict) -> str:
    ex = doc["excluded"]
    if not ex["count"]:
        return f"all {doc['scored']} labelled items scored"
    kinds = ", ".join(f"{v} {k}" for k, v in ex["by_status"].items())
    first = ", ".join(i["path"] for i in ex["items"][:3]) + (", ..." if ex["count"] > 3 else "")
    return (f"{ex['count']} of {doc['labels']['rows']} labelled items excluded (no score: {kinds}): "
            f"{first}")


def print_result(result: CheckResult, console: Any) -> None:
    """Rich tables: overall, per group of each scope, fairness gaps, gates, verdict."""
    from rich.markup import escape
    from rich.table import Table

    doc = result.report
    # CI logs are not terminals: rich would squeeze the 14-column tables into 80 columns.
    if not console.is_terminal and console.width < 160:
        from rich.console import Console

        console = Console(file=console.file, width=160, no_color=console.no_color, highlight=False)
    # group, attribute and file names are the user's: shown as written, never read as rich markup
    console.print(f"[bold]fairness-check[/] {escape(doc['labels']['path'])} ({doc['labels']['format']}, "
                  f"{doc['labels']['rows']} rows) · scores from {escape(doc['scores']['source'])} · "
                  f"threshold {doc['threshold']:.4g} ({doc['threshold_source']}) · "
                  f"min-group {doc['settings']['min_group']}")
    style = "yellow" if doc["excluded"]["count"] else "dim"
    console.print(f"[{style}]{escape(excluded_line(doc))}[/]")

    keys = [k for k, _ in GROUP_COLUMNS]
    titles = [t for _, t in GROUP_COLUMNS]
    table = Table(title="Overall", title_justify="left")
    for t in titles:
        table.add_column(t, justify="right")
    table.add_row(*[_fmt(doc["overall"][k]) for k in keys])
    console.print(table)

    for scope in _scope_order(doc):
        table = Table(title=f"By group: {escape(scope)}", title_justify="left")
        table.add_column("group")
        for t in titles:
            table.add_column(t, justify="right")
        table.add_column("status")
        for name, row in doc["by_group"][scope].items():
            status = "ok" if row["sufficient"] else f"[yellow]insufficient ({row['insufficient_reason']})[/]"
            table.add_row(escape(name), *[_fmt(row[k]) for k in keys], status)
        console.print(table)

    for col, rows in doc["breakdown"].items():
        what = "each method's fakes against every real" if col == "method" else "rows of each value"
        table = Table(title=f"By {col} ({what}; not a fairness gate)", title_justify="left")
        table.add_column(col)
        for t in titles:
            table.add_column(t, justify="right")
        for name, row in rows.items():
            table.add_row(escape(name), *[_fmt(row[k]) for k in keys])
        console.print(table)

    ci = (f", {int(doc['settings']['confidence'] * 100)}% bias-corrected bootstrap CI; unstable: the gap lies outside"
          " most resamples (small groups)") if doc["intervals"] else ""
    table = Table(title=f"Fairness gaps (F_* in percent{ci}; over groups with n >= min-group)",
                  title_justify="left")
    table.add_column("scope")
    for k in FAIRNESS_KEYS:
        table.add_column({"demographic_parity_difference": "DP diff",
                          "equalized_odds_difference": "EO diff"}.get(k, k), justify="right")
    for scope in _scope_order(doc):
        table.add_row(escape(scope), *[_fair_cell(doc, scope, k) for k in FAIRNESS_KEYS])
    console.print(table)

    table = Table(title="Gates", title_justify="left")
    for col in ("gate", "scope", "metric", "value", "limit", "result", "note"):
        table.add_column(col, justify="right" if col in ("value", "limit") else "left")
    colour = {"pass": "green", "fail": "bold red", "warn": "yellow"}
    for g in doc["gates"]:
        table.add_row(g["gate"], escape(g["scope"]), g["metric"], _gate_value(g), _limit(g),
                      f"[{colour[g['status']]}]{g['status'].upper()}[/]", escape(g["note"]))
    console.print(table)
    failed = [g for g in doc["gates"] if g["status"] == "fail"]
    if failed:
        console.print(f"[bold red]FAILED[/]: {len(failed)} of {len(doc['gates'])} gates")
    else:
        warned = sum(g["status"] == "warn" for g in doc["gates"])
        extra = f" ({warned} warning{'s' if warned != 1 else ''})" if warned else ""
        console.print(f"[bold green]PASSED[/]: {len(doc['gates'])} gates{extra}")


def to_json(result: CheckResult) -> str:
    return json.dumps(result.report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def to_markdown(result: CheckResult) -> str:
    """A summary for CI step summaries ($GITHUB_STEP_SUMMARY): verdict first, then the tables."""
    doc = result.report
    failed = [g for g in doc["gates"] if g["status"] == "fail"]
    verdict = (f"❌ **FAILED** — {len(failed)} of {len(doc['gates'])} gates" if failed
               else f"✅ **PASSED** — {len(doc['gates'])} gates")
    out = ["## dfscan fairness-check", "", verdict, "",
           f"Labelled set {md_escape(Path(doc['labels']['path']).name)} ({doc['labels']['rows']} rows), "
           f"scores from {md_escape(doc['scores']['source'])}, threshold {doc['threshold']:.4g} "
           f"({doc['threshold_source']}), min-group {doc['settings']['min_group']}. "
           f"{md_escape(excluded_line(doc))}.", ""]
    out += ["### Gates", "", "| gate | scope | metric | value | limit | result | note |",
            "|---|---|---|---:|---:|---|---|"]
    mark = {"pass": "✅ pass", "fail": "❌ fail", "warn": "⚠️ warn"}
    for g in doc["gates"]:
        out.append(f"| {g['gate']} | {md_escape(g['scope'])} | {g['metric']} | {_gate_value(g)} | "
                   f"{_limit(g)} | {mark[g['status']]} | {md_escape(g['note'])} |")
    ci = " (95% bias-corrected bootstrap interval; *unstable*: the gap lies outside most resamples)" if doc["intervals"] else ""
    out += ["", f"### Fairness gaps{ci}", "",
            "| scope | " + " | ".join(FAIRNESS_KEYS) + " |",
            "|---|" + "---:|" * len(FAIRNESS_KEYS)]
    for scope in _scope_order(doc):
        out.append(f"| {md_escape(scope)} | " + " | ".join(_fair_cell(doc, scope, k) for k in FAIRNESS_KEYS) + " |")
    out += ["", "F_* in percent (PG-FDD); Fairlearn differences as fractions.", ""]
    titles = [t for _, t in GROUP_COLUMNS]
    out += ["### Overall", "", "| " + " | ".join(titles) + " |", "|" + "---:|" * len(titles),
            "| " + " | ".join(_fmt(doc["overall"][k]) for k, _ in GROUP_COLUMNS) + " |", ""]
    for scope in _scope_order(doc):
        out += [f"### By group: {md_escape(scope)}", "", "| group | " + " | ".join(titles) + " | status |",
                "|---|" + "---:|" * len(titles) + "---|"]
        for name, row in doc["by_group"][scope].items():
            status = "ok" if row["sufficient"] else f"⚠️ insufficient ({row['insufficient_reason']})"
            out.append(f"| {md_escape(name)} | " + " | ".join(_fmt(row[k]) for k, _ in GROUP_COLUMNS)
                       + f" | {status} |")
        out.append("")
    for col, rows in doc["breakdown"].items():
        what = "each method's fakes against every real" if col == "method" else "rows of each value"
        out += [f"### By {col} ({what}; not a fairness gate)", "", f"| {col} | " + " | ".join(titles) + " |",
                "|---|" + "---:|" * len(titles)]
        out += [f"| {md_escape(name)} | " + " | ".join(_fmt(row[k]) for k, _ in GROUP_COLUMNS) + " |"
                for name, row in rows.items()]
        out.append("")
    return "\n".join(out)


def to_junit(result: CheckResult) -> str:
    """JUnit XML, one test case per gate, so CI dashboards list each gate with its value."""
    doc = result.report
    gates = doc["gates"]
    failures = sum(g["status"] == "fail" for g in gates)
    suites = ET.Element("testsuites", name="dfscan fairness-check", tests=str(len(gates)),
                        failures=str(failures), errors="0")
    suite = ET.SubElement(suites, "testsuite", name="dfscan.fairness-check", tests=str(len(gates)),
                          failures=str(failures), errors="0", skipped="0",
                          timestamp=doc["created"])
    for g in gates:
        case = ET.SubElement(suite, "testcase", classname=f"dfscan.fairness.{g['scope']}",
                             name=f"{g['gate']} {g['metric']} {_limit(g)} ({g['scope']})",
                             time="0")
        value = "n/a" if g["value"] is None else _gate_value(g)
        text = (f"{g['metric']} = {value}, limit {_limit(g)} "
                f"({g['scope']}){': ' + g['note'] if g['note'] else ''}")
        if g["status"] == "fail":
            ET.SubElement(case, "failure", message=text, type="GateFailed").text = text
        else:
            ET.SubElement(case, "system-out").text = f"{g['status']}: {text}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _plain(text: str) -> str:
    """A user's string as literal matplotlib text: `$...$` in a group name is not mathtext
    (a malformed one would stop the plots with a parse error)."""
    return text.replace("$", r"\$")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "scope"


def write_plots(result: CheckResult, out_dir: str | Path) -> list[Path]:
    """Per scope: ROC curve of every group, and FPR/TPR per group at the threshold (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = result.report
    written: list[Path] = []
    for scope in _scope_order(doc):
        g = result.groups[scope]
        rows = doc["by_group"][scope]
        fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
        ax.plot([0, 1], [0, 1], color="0.75", lw=1, ls=":", label="chance")
        cmap = plt.get_cmap("tab10")
        markers = "osD^vP*Xh<>p"
        dots = []
        for i, (name, row) in enumerate(rows.items()):
            sel = g == name
            y, p = result.y[sel], result.p[sel]
            if row["n_real"] == 0 or row["n_fake"] == 0:
                continue
            fpr, tpr, _ = roc_curve(y, p, pos_label=1)
            small = "" if row["sufficient"] else f", n<{doc['settings']['min_group']}"
            colour, marker = cmap(i % 10), markers[i % len(markers)]
            # identical curves hide each other: each group gets its own marker along its curve and
            # its operating point in the legend, so a covered curve is still named and readable
            ax.plot(fpr, tpr, color=colour, lw=1.6, alpha=0.85, ls="-" if row["sufficient"] else "--",
                    marker=marker, markevery=max(1, len(fpr) // 6), ms=4, clip_on=False,
                    label=f"{_plain(name)} (AUC {_fmt(row['auc'])}, n={row['n']}{small}; "
                          f"@thr FPR {_fmt(row['fpr'], 2)} TPR {_fmt(row['tpr'], 2)})")
            dots.append((row["fpr"], row["tpr"], colour, marker))
        for x, y, colour, marker in dots:  # on top of every curve, visible in the corners too
            ax.plot([x], [y], marker=marker, color=colour, ms=9, mec="black", mew=0.8, ls="none",
                    zorder=5, clip_on=False)
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.02), xlabel="False positive rate (real flagged fake)",
               ylabel="True positive rate (fake caught)",
               title=f"ROC per group: {_plain(scope)} (large markers: threshold {doc['threshold']:.3g})")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"roc_{_slug(scope)}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

        names = list(rows)
        x = np.arange(len(names))
        fpr = [rows[k]["fpr"] if rows[k]["fpr"] is not None else np.nan for k in names]
        tpr = [rows[k]["tpr"] if rows[k]["tpr"] is not None else np.nan for k in names]
        fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(names) + 2), 4.8), dpi=110)
        b1 = ax.bar(x - 0.2, fpr, 0.4, label="FPR (real flagged fake)", color="#d62728")
        b2 = ax.bar(x + 0.2, tpr, 0.4, label="TPR (fake caught)", color="#1f77b4")
        for bars in (b1, b2):
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.axhline(doc["overall"]["fpr"] or 0, color="#d62728", lw=1, ls="--", alpha=0.6,
                   label="overall FPR")
        ax.axhline(doc["overall"]["tpr"] or 0, color="#1f77b4", lw=1, ls="--", alpha=0.6,
                   label="overall TPR")
        labels = [f"{_plain(k)}\nn={rows[k]['n']}" + ("" if rows[k]["sufficient"] else
                                                     f" ({rows[k]['insufficient_reason']})") for k in names]
        ax.set_xticks(x, labels, fontsize=8, rotation=30 if len(names) > 5 else 0,
                      ha="right" if len(names) > 5 else "center")
        ax.set(ylim=(0, 1.35), yticks=np.linspace(0, 1, 6), ylabel="rate", title=f"FPR and TPR per group: {_plain(scope)}, threshold {doc['threshold']:.3g}")
        ax.legend(fontsize=8, ncols=4, loc="upper center")  # above the bars (rates stop at 1)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"rates_{_slug(scope)}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def write_outputs(result: CheckResult, *, json_path: str | Path | None = None,
                  markdown: str | Path | None = None, junit: str | Path | None = None,
                  plots: str | Path | None = None) -> list[Path]:
    """Write each output asked for (atomically); returns the paths written."""
    from scanner.report import atomic_write_text

    written: list[Path] = []
    if json_path:
        written.append(atomic_write_text(json_path, to_json(result)))
    if markdown:
        written.append(atomic_write_text(markdown, to_markdown(result)))
    if junit:
        written.append(atomic_write_text(junit, to_junit(result)))
    if plots:
        written += write_plots(result, plots)
    return written
