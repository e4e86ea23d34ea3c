"""Synthetic group balance (`dfscan train --balance-groups synthetic`).

Counts label × demographic group in the training manifest and fills every cell below the target
(`--balance-target`, default the largest cell) with synthetic rows of that group: SBI pseudo-fakes
of the group's reals for missing fakes (blended afresh at each draw, `Sample.synthetic = "sbi"`)
and augmented copies of its reals for missing reals (`"augment"`). Reals are used in a seeded
order, each once before any twice, so the synthetic rows spread over the group's faces.

Rows without a group (e.g. DFDC crops) are neither counted nor filled. A cell above the target
is left as it is (nothing is dropped). A group without real rows cannot be filled (both kinds of
synthetic row are made from its reals): it is reported in `unfillable`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from dfscan.core.errors import InputError
from dfscan.core.labels import LABEL_NAMES
from dfscan.train.data import SBI_METHOD, Manifest, Sample


def cell_counts(samples: list[Sample], groups: list[str]) -> dict[str, dict[str, int]]:
    """{group: {"real": n, "fake": n}} over the rows with a group, every listed group present."""
    out = {g: {"real": 0, "fake": 0} for g in groups}
    for s in samples:
        if s.group is not None:
            out.setdefault(s.group, {"real": 0, "fake": 0})[LABEL_NAMES[s.label]] += 1
    return out


@dataclass
class BalanceReport:
    """What balancing did: counts before and after, rows added, cells it could not fill."""

    target: int
    before: dict[str, dict[str, int]]
    after: dict[str, dict[str, int]]
    added: dict[str, int] = field(default_factory=dict)  # {"sbi_fakes": n, "augmented_reals": n}
    unfillable: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        """A readable table for the log: group, real and fake before → after."""
        out = [f"group balance (target {self.target} per label and group): "
               f"+{self.added['sbi_fakes']} SBI pseudo-fakes, +{self.added['augmented_reals']} augmented reals"]
        for g in self.before:
            b, a = self.before[g], self.after[g]
            out.append(f"  {g}: real {b['real']} -> {a['real']}, fake {b['fake']} -> {a['fake']}")
        if self.unfillable:
            out.append(f"  no real rows to fill from: {', '.join(self.unfillable)}")
        return out


def _synthetic(origin: Sample, kind: str) -> Sample:
    """A synthetic row made from real row `origin` (same image, group and bookkeeping)."""
    fake = kind == "sbi"
    return dataclasses.replace(origin, label=1 if fake else 0, method=SBI_METHOD if fake else "real", synthetic=kind)


def _fill(reals: list[int], samples: list[Sample], kind: str, count: int, rng: np.random.Generator) -> list[Sample]:
    """`count` synthetic rows from the given real rows, cycling through seeded permutations."""
    out: list[Sample] = []
    while len(out) < count:
        for i in rng.permutation(reals).tolist()[: count - len(out)]:
            out.append(_synthetic(samples[i], kind))
    return out


def balance_groups(manifest: Manifest, target: int | None = None, seed: int = 0) -> tuple[Manifest, BalanceReport]:
    """The manifest with synthetic rows appended so every label × group cell reaches the target."""
    if not manifest.has_groups:
        raise InputError(f"{manifest.path}: --balance-groups synthetic needs demographic groups "
                         "(a group column or attribute columns such as gender,race)")
    if target is not None and target < 1:
        raise InputError(f"--balance-target must be at least 1, got {target}")
    groups = manifest.group_names
    before = cell_counts(manifest.samples, groups)
    goal = target if target is not None else max(max(c.values()) for c in before.values())
    rng = np.random.default_rng([seed, 5])
    added: list[Sample] = []
    unfillable: list[str] = []
    for g in groups:  # sorted names: a fixed order, so the seeded permutations repeat
        reals = [i for i, s in enumerate(manifest.samples) if s.group == g and s.label == 0 and not s.synthetic]
        missing_fake, missing_real = max(0, goal - before[g]["fake"]), max(0, goal - before[g]["real"])
        if not reals:
            if missing_fake or missing_real:
                unfillable.append(g)
            continue
        added += _fill(reals, manifest.samples, "sbi", missing_fake, rng)
        added += _fill(reals, manifest.samples, "augment", missing_real, rng)
    balanced = dataclasses.replace(manifest, samples=manifest.samples + added)
    report = BalanceReport(goal, before, cell_counts(balanced.samples, groups),
                           {"sbi_fakes": sum(s.synthetic == "sbi" for s in added),
                            "augmented_reals": sum(s.synthetic == "augment" for s in added)}, unfillable)
    return balanced, report
