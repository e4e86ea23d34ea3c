"""The check's options and its gates: which limits apply, and pass / fail / warn for each.

A gate on a gap between groups (F_FPR, ...) is judged over the sufficient groups of a scope; a
gate on a rate itself (AUC, FPR, TPR) overall and in the worst group, since every gap passes
when every group is equally wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dfscan.core.errors import InputError

# gate name → (metric, comparison); the option field is the name with "_" for "-"
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


def evaluate_gates(doc: dict[str, Any], options: CheckOptions, scopes: list[str]) -> list[dict]:
    """One record per (gate, scope): value, limit, pass | fail | warn, and why.

    `warn` only ever replaces the min-group gate's failure, and only with allow_small_groups.
    A gate whose value could not be computed (None or NaN) fails, with allow_small_groups too:
    it measured nothing, and a warning there let a check with no judgeable group exit 0.
    """
    gates: list[dict] = []
    small_groups = "warn" if options.allow_small_groups else "fail"

    def add(gate: str, metric: str, scope: str, value: float | None, limit: float | int, op: str,
            note: str = "", status: str | None = None) -> None:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            status = "fail"
            if options.allow_small_groups:
                note = "; ".join(filter(None, (note, "allow-small-groups never passes a gate that measured nothing")))
        elif status is None:
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
            note, status="pass" if not small else small_groups)
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
                    worst = (min if op == ">=" else max)(defined, key=lambda k: defined[k])
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
