"""No behaviour change: the scan report of the shared media at a base revision equals this tree's.

    python bench/same_report.py [--base REV] [--inputs DIR ...] [--ignore KEY ...] [--keep DIR]

Checks out REV (default 9cdd5ab, the parent of the first commit of issue 13's pipeline split) into
a temporary `git worktree` and runs `dfscan scan` of tests/data/media (images and videos) with
that tree's own package code (PYTHONPATH and the working folder point at it, worker processes
included; the same virtual environment), then the same scan with this tree's code. Both use one
checkpoint, this tree's shipped model unless --weights, so a retrained model between the two is
not read as a change of code; each run exports its own ONNX file (separate DFSCAN_CACHE).

The reports are compared after removing what differs between any two runs: timings, the
creation time, throughput, per-stage seconds and the worker/thread plan (the machine and its
load), and with each tree's root written as <tree>. Anything else that differs is
printed as KEY: base -> current (KEY a dotted path, items by input path relative to the inputs);
`--ignore KEY` drops a documented, intended difference (a dotted prefix, "*" for any item or
list index, e.g. `--ignore settings.new_option`). Prints "equal" and exits 0, or the differing
keys and exits 1; 2 when a scan could not run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
BASE = "9cdd5ab"  # parent of 1d13576, "pipeline split (issue 13)"
# run-specific wherever they appear: wall/CPU time, rates, dates, the machine's worker plan
VOLATILE = {"seconds", "elapsed", "created", "timings", "throughput", "stages", "stage_seconds", "workers",
            "threads", "plan", "resources"}
SCORE_TOLERANCE = 1e-6  # a last-digit rounding of a float score is not a change


def run_scan(tree: Path, inputs: list[Path], weights: Path, report: Path, cache: Path, extra: list[str]) -> None:
    """`dfscan scan` with the package code of `tree` (not the installed one)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "DFSCAN_CACHE": str(cache), "NO_COLOR": "1", "COLUMNS": "160"}
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import scanner; "
            "assert scanner.__file__.startswith(sys.path[0]), scanner.__file__; "
            "from dfscan.scanner.cli import app; sys.argv[0] = 'dfscan'; app()")
    cmd = [sys.executable, "-c", code, str(tree), "scan", *map(str, inputs), "--report", str(report),
           "--weights", str(weights), "--quiet", *extra]
    r = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if r.returncode not in (0, 1, 3) or not report.is_file():
        sys.exit(f"scan with {tree} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")


def normalise(obj: Any, tree: Path, inputs: list[Path]) -> Any:
    """The report without run-specific fields, tree roots as <tree>, items keyed by input path."""
    roots = sorted({str(tree), str(tree.resolve())}, key=len, reverse=True)

    def clean(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: clean(v, k) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            for i, p in enumerate(inputs):  # first: the inputs may lie inside a tree
                value = value.replace(str(p), f"<inputs{i}>")
            for root in roots:
                value = value.replace(root, "<tree>")
            return value
        return value

    doc = clean(obj)
    if isinstance(doc.get("items"), list):
        doc["items"] = {item.get("path", str(i)): item for i, item in enumerate(doc["items"])}
    return doc


def differences(a: Any, b: Any, key: str = "") -> Iterator[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            sub = f"{key}.{k}" if key else str(k)
            if k not in a:
                yield sub, "<absent>", b[k]
            elif k not in b:
                yield sub, a[k], "<absent>"
            else:
                yield from differences(a[k], b[k], sub)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{key} (length)", len(a), len(b)
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{key}.{i}")
    elif isinstance(a, float) and isinstance(b, float) and not isinstance(a, bool):
        if not (math.isclose(a, b, abs_tol=SCORE_TOLERANCE) or (math.isnan(a) and math.isnan(b))):
            yield key, a, b
    elif a != b:
        yield key, a, b


def ignored(key: str, patterns: list[str]) -> bool:
    parts = key.replace(" (length)", "").split(".")
    for pattern in patterns:
        want = pattern.split(".")
        if len(want) <= len(parts) and all(w in ("*", p) for w, p in zip(want, parts)):
            return True
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default=BASE, help=f"base git revision (default {BASE})")
    ap.add_argument("--inputs", type=Path, nargs="+", default=[ROOT / "tests" / "data" / "media"])
    ap.add_argument("--weights", type=Path, default=None, help="checkpoint for both scans (default: this tree's shipped model)")
    ap.add_argument("--ignore", action="append", default=[], metavar="KEY", help="dotted key (prefix) of an intended difference")
    ap.add_argument("--keep", type=Path, default=None, help="also write both reports here")
    ap.add_argument("scan_args", nargs="*", help="more `dfscan scan` options, after --")
    args = ap.parse_args()

    inputs = [p.resolve() for p in args.inputs]
    sys.path.insert(0, str(ROOT))
    from dfscan.scanner.assets import default_weights

    weights = (args.weights or default_weights()).resolve()
    with tempfile.TemporaryDirectory(prefix="same_report_") as tmp:
        tmp = Path(tmp)
        base_tree = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(base_tree), args.base],
                       check=True)
        try:
            run_scan(base_tree, inputs, weights, tmp / "base.json", tmp / "cache-base", args.scan_args)
            run_scan(ROOT, inputs, weights, tmp / "current.json", tmp / "cache-current", args.scan_args)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name in ("base.json", "current.json"):
                (args.keep / name).write_text((tmp / name).read_text())
        base = normalise(json.loads((tmp / "base.json").read_text()), base_tree, inputs)
        current = normalise(json.loads((tmp / "current.json").read_text()), ROOT, inputs)

    diffs = [d for d in differences(base, current) if not ignored(d[0], args.ignore)]
    n_items = len(current.get("items", {}))
    if not diffs:
        print(f"equal ({n_items} items; base {args.base}, ignoring {', '.join(args.ignore) or 'nothing more'})")
        return 0
    for key, a, b in diffs:
        print(f"{key}: {json.dumps(a)[:200]} -> {json.dumps(b)[:200]}")
    print(f"{len(diffs)} difference(s) over {n_items} items (base {args.base})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
