"""Benchmark: temporal aggregation rules (frame scores → subject score → video score) on labelled videos.

    python bench/aggregation.py REPORT.json --labels NAME=labels.csv [--labels ...] [--real NAME=DIR_OR_FILE ...]
    python bench/aggregation.py REPORT.json --scan ...   # scan the labelled files first (--workers 1)

REPORT is a `dfscan scan` report of the videos (default settings keep every frame's score per
subject). A labels CSV has `path,label` columns (`label` real|fake, `path` relative to the CSV's
folder); `--real` adds files that are all real (default: the shared face clips,
tests/data/media/videos, as set "shared"). No scanning unless `--scan`.

For each rule the video score is the max over subjects of the rule over that subject's frames
(as the scanner does), and the table gives, pooled and per set:
  - AUC (Mann-Whitney, ties count half);
  - at the model's shipped crop threshold (the report's): fakes caught / fakes, reals called fake / reals;
  - at a rule's own threshold matched to the reference rule's false-positive count at the shipped
    threshold (chosen on the pooled reals, so the FPR is matched by construction and in-sample:
    an optimistic figure for every rule alike), and at 1, 2 and 3 pooled false positives.
Files without a face (no score) are counted and left out of the rates.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfscan.scanner.aggregate import subject_score  # noqa: E402  the scanner's own rules, one implementation

SHARED_VIDEOS = ROOT / "tests" / "data" / "media" / "videos"
VIDEO_EXT = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


def _top_k(k: int) -> Callable[[np.ndarray], float]:
    return lambda p: float(np.sort(p)[-min(k, p.size):].mean())


def _top_fraction(f: float) -> Callable[[np.ndarray], float]:
    return lambda p: float(np.sort(p)[-max(1, int(np.ceil(f * p.size))):].mean())


def _quantile(q: float) -> Callable[[np.ndarray], float]:
    return lambda p: float(np.quantile(p, q))


RULES: dict[str, Callable[..., float]] = {
    "mean": lambda p, n: subject_score(p, "mean", frames_sampled=n),
    "confident": lambda p, n: subject_score(p, "confident", frames_sampled=n),
    "median": lambda p, n: float(np.median(p)),
    "q75": lambda p, n: _quantile(0.75)(p),
    "q90": lambda p, n: _quantile(0.90)(p),
    "max": lambda p, n: float(p.max()),
    "top3": lambda p, n: _top_k(3)(p),
    "top5": lambda p, n: _top_k(5)(p),
    "top8": lambda p, n: _top_k(8)(p),
    "top25%": lambda p, n: _top_fraction(0.25)(p),
    "top50%": lambda p, n: _top_fraction(0.50)(p),
}


def load_labels(specs: list[str], reals: list[str]) -> dict[str, tuple[str, str]]:
    """Resolved path → (set name, label) from `NAME=labels.csv` and `NAME=dir-or-file` (all real)."""
    out: dict[str, tuple[str, str]] = {}
    for spec in specs:
        name, _, path = spec.rpartition("=")
        csv_path = Path(path)
        name = name or csv_path.parent.name
        with open(csv_path, newline="") as f:
            for row in csv.DictReader(f):
                label = row["label"].strip().lower()
                if label not in ("real", "fake"):
                    raise SystemExit(f"{csv_path}: label {row['label']!r} is neither real nor fake")
                out[str((csv_path.parent / row["path"]).resolve())] = (name, label)
    for spec in reals:
        name, _, path = spec.rpartition("=")
        p = Path(path)
        name = name or p.name
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.suffix.lower() in VIDEO_EXT)
        for q in files:
            out[str(q.resolve())] = (name, "real")
    return out


def video_rows(report: dict, labels: dict[str, tuple[str, str]]) -> tuple[list[dict], list[str], list[str]]:
    """One row per labelled, scored video: set, label, and each rule's video score; plus the faceless and the unlabelled."""
    rows, faceless, unlabelled = [], [], []
    for item in report["items"]:
        key = str(Path(item["path"]).resolve())
        if key not in labels:
            unlabelled.append(item["path"])
            continue
        subjects = [s for s in item.get("subjects") or [] if s.get("frames")]
        if item.get("status") != "ok" or not subjects:
            faceless.append(item["path"])
            continue
        n = (item.get("media") or {}).get("frames_sampled")
        scores = {}
        for rule, fn in RULES.items():
            scores[rule] = max(fn(np.array([f["score"] for f in s["frames"]], dtype=np.float64), n) for s in subjects)
        rows.append({"path": item["path"], "set": labels[key][0], "label": labels[key][1], "scores": scores})
    return rows, faceless, unlabelled


def auc(real: np.ndarray, fake: np.ndarray) -> float | None:
    """P(fake > real) + ½ P(tie); None without both classes."""
    if not real.size or not fake.size:
        return None
    diff = fake[:, None] - real[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def threshold_for_fp(real: np.ndarray, allowed: int) -> float:
    """The lowest threshold (fake when score >= t) with at most `allowed` reals at or above it."""
    s = np.sort(real)[::-1]
    if allowed >= s.size:
        return 0.0
    return float(np.nextafter(s[allowed], np.inf))  # just above the (allowed+1)-th highest real


def counts(rows: list[dict], rule: str, t: float) -> tuple[int, int, int, int]:
    """(fakes caught, fakes, reals called fake, reals) at threshold t."""
    tp = sum(r["scores"][rule] >= t for r in rows if r["label"] == "fake")
    nf = sum(r["label"] == "fake" for r in rows)
    fp = sum(r["scores"][rule] >= t for r in rows if r["label"] == "real")
    nr = sum(r["label"] == "real" for r in rows)
    return tp, nf, fp, nr


def _names(paths: list[str]) -> str:
    return ", ".join(Path(p).name for p in paths) or "-"


def table(rows: list[dict], model_t: float, reference: str = "mean") -> list[dict]:
    """Per rule: pooled thresholds, then figures for 'all' and each set."""
    def real_all(rule: str) -> np.ndarray:
        return np.array([r["scores"][rule] for r in rows if r["label"] == "real"])

    ref_fp = counts(rows, reference, model_t)[2]
    sets = ["all"] + sorted({r["set"] for r in rows})
    out = []
    for rule in RULES:
        thresholds = {"shipped": model_t, "matched": threshold_for_fp(real_all(rule), ref_fp)}
        for k in (1, 2, 3):
            thresholds[f"fp{k}"] = threshold_for_fp(real_all(rule), k)
        for name in sets:
            sub = rows if name == "all" else [r for r in rows if r["set"] == name]
            real = np.array([r["scores"][rule] for r in sub if r["label"] == "real"])
            fake = np.array([r["scores"][rule] for r in sub if r["label"] == "fake"])
            entry = {"rule": rule, "set": name, "auc": auc(real, fake), "n_real": int(real.size), "n_fake": int(fake.size)}
            for tname, t in thresholds.items():
                entry[tname] = (t, counts(sub, rule, t))
            out.append(entry)
    return out


def _frac(a: int, b: int) -> str:
    return f"{a}/{b}" if b else "-"


def print_table(entries: list[dict], model_t: float, reference: str) -> None:
    head = f"{'rule':<10}{'set':<10}{'AUC':>6}  {'shipped t: TP  FP':>19}  {'matched FP: t  TP  FP':>26}  {'TP@1FP':>7}{'TP@2FP':>7}{'TP@3FP':>7}"
    print(head)
    print("-" * len(head))
    last = None
    for e in entries:
        if last is not None and e["rule"] != last:
            print()
        last = e["rule"]
        a = "  -  " if e["auc"] is None else f"{e['auc']:.3f}"
        _, (tp, nf, fp, nr) = e["shipped"]
        mt, (mtp, _, mfp, _) = e["matched"]
        at = "".join(f"{_frac(e[k][1][0], nf):>7}" for k in ("fp1", "fp2", "fp3"))
        print(f"{e['rule']:<10}{e['set']:<10}{a:>6}  {_frac(tp, nf):>9} {_frac(fp, nr):>9}  {mt:>8.3f} {_frac(mtp, nf):>8} {_frac(mfp, nr):>8}  {at}")
    print(f"\nshipped t = the model's crop threshold {model_t:.4f}; matched = each rule's own threshold with the pooled "
          f"false-positive count of '{reference}' at the shipped t; TP@kFP = fakes caught at each rule's threshold with k "
          "pooled reals called fake (per set: that set's share of them). Thresholds are chosen on these very reals.")


def auc_gap(rows: list[dict], rule: str, reference: str, *, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of AUC(rule) - AUC(reference), videos resampled with replacement within each label."""
    y = np.array([r["label"] == "fake" for r in rows])
    a, b = (np.array([r["scores"][k] for r in rows]) for k in (rule, reference))
    ri, fi = np.flatnonzero(~y), np.flatnonzero(y)
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(draws):
        r, f = rng.choice(ri, ri.size), rng.choice(fi, fi.size)
        gaps.append(auc(a[r], a[f]) - auc(b[r], b[f]))
    lo, hi = np.percentile(gaps, [2.5, 97.5])
    return float(lo), float(hi)


def paired(rows: list[dict], model_t: float, reference: str = "mean") -> None:
    """Which fakes each rule gains and loses against the reference at the matched false-positive count; the AUC gap's interval."""
    ref_fp = counts(rows, reference, model_t)[2]
    def real(rule: str) -> np.ndarray:
        return np.array([r["scores"][rule] for r in rows if r["label"] == "real"])

    t_ref = threshold_for_fp(real(reference), ref_fp)
    caught_ref = {r["path"] for r in rows if r["label"] == "fake" and r["scores"][reference] >= t_ref}
    print(f"\npaired against '{reference}' at {ref_fp} pooled false positive(s): fakes gained / lost; "
          "AUC(rule) - AUC(reference), 2000 bootstrap draws of the videos")
    for rule in RULES:
        if rule == reference:
            continue
        t = threshold_for_fp(real(rule), ref_fp)
        caught = {r["path"] for r in rows if r["label"] == "fake" and r["scores"][rule] >= t}
        gained, lost = sorted(caught - caught_ref), sorted(caught_ref - caught)
        lo, hi = auc_gap(rows, rule, reference)
        print(f"  {rule:<9} +{len(gained)} -{len(lost)}   AUC gap 95% [{lo:+.3f}, {hi:+.3f}]   gained: {_names(gained)}   lost: {_names(lost)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", type=Path, help="dfscan JSON report of the labelled videos")
    ap.add_argument("--labels", action="append", default=[], metavar="NAME=CSV", help="labels CSV (path,label), paths relative to it")
    ap.add_argument("--real", action="append", default=None, metavar="NAME=PATH", help=f"real-only files or folders (default: shared={SHARED_VIDEOS})")
    ap.add_argument("--reference", default="mean", choices=list(RULES), help="the rule whose false positives at the shipped threshold are matched")
    ap.add_argument("--scan", action="store_true", help="scan the labelled files into REPORT first (default settings, --workers 1)")
    ap.add_argument("--json", type=Path, help="also write the per-video scores and the table here")
    args = ap.parse_args()
    reals = args.real if args.real is not None else [f"shared={SHARED_VIDEOS}"]
    labels = load_labels(args.labels, reals)
    if not labels:
        raise SystemExit("no labelled files: give --labels NAME=CSV and/or --real NAME=PATH")
    if args.scan:
        from dfscan.scanner.options import ScanOptions
        from dfscan.scanner.pipeline import scan

        report = scan(sorted(labels), ScanOptions(workers=1, report=args.report))
    else:
        report = json.loads(args.report.read_text())
    model_t = float(report["settings"]["threshold"])
    if report["settings"].get("strategy") not in (None, "mean"):
        print(f"note: the report was scanned with strategy {report['settings']['strategy']!r}; the frame scores are the same")
    rows, faceless, unlabelled = video_rows(report, labels)
    missing = len(labels) - len(rows) - len(faceless)
    print(f"{len(rows)} scored videos ({sum(r['label'] == 'real' for r in rows)} real, {sum(r['label'] == 'fake' for r in rows)} fake); "
          f"{len(faceless)} without a face ({', '.join(Path(p).name for p in faceless) or '-'}); "
          f"{len(unlabelled)} in the report without a label; {missing} labelled but not in the report\n")
    entries = table(rows, model_t, args.reference)
    print_table(entries, model_t, args.reference)
    paired(rows, model_t, args.reference)
    if args.json:
        args.json.write_text(json.dumps({"threshold": model_t, "videos": rows, "table": entries}, indent=1))


if __name__ == "__main__":
    main()
