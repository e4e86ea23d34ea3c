"""Reading a labelled set for fairness-check and audit: rows, groups, and every path checked first.

The CSV itself (dialects, labels, one-hot columns, group names) is read by `dfscan/core/labels.py`,
the same rules training and extract-faces use; this module adds what a check of media needs:
the attributes to judge, paths confined to `--root` and checked before an hour of scanning.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from dfscan.core.errors import InputError
from dfscan.core.labels import (
    PGFDD_ATTRIBUTES,
    PGFDD_REQUIRED,
    check_attribute_value,
    control_char,
    group_name,
    labelled_rows,
    official_attributes,
    read_csv_table,
    require_columns,
    require_rows,
)

LISTED = 3  # bad rows named in the one-line error before "and N more"


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
    warnings: list[str] = field(default_factory=list)  # group names merged or looking alike (group_spellings)

    def __len__(self) -> int:
        return len(self.paths)


def _shown(text: str) -> str:
    return text if text.isprintable() else repr(text)


def _path_problem(path: Path, raw: str, root: Path | None, check_file: bool) -> str | None:
    """Why a row's media cannot be scored, or None; asked of every row before anything is scanned."""
    from dfscan.scanner.media import MEDIA_EXTS

    bad = control_char(raw)
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
    name, header, header_line = table.name, table.header, table.header_line
    fmt = table.dialect
    require_columns(table, PGFDD_REQUIRED if fmt == "pgfdd" else ("path", "label"))
    col = table.column
    if fmt == "pgfdd":
        available = list(PGFDD_ATTRIBUTES)
    else:
        available = [h for h in header if h not in ("path", "label", *exclude)]
    if not available and require_attributes:
        raise InputError(f"{name} line {header_line} (header): no attribute columns after "
                         "'path,label' (add e.g. gender,race)")
    for a in available:
        bad = control_char(a)
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
    require_rows(table)

    path_col = "img_path" if fmt == "pgfdd" else "path"
    paths: list[Path] = []
    written: list[str] = []
    lines: list[int] = []
    labels: list[int] = []
    groups: dict[str, list[str]] = {a: [] for a in available}
    intersec: list[str] = []
    problems: list[str] = []
    for row in labelled_rows(table, path_col):
        problem = _path_problem(row.path, row.written, confined, check_paths)
        if problem:
            problems.append(f"line {row.line}: {problem}: {_shown(row.written)}")
        if fmt == "pgfdd":
            values = official_attributes({c: row.cells[col[c]] for c in col}, row.where)
            for a, v in zip(PGFDD_ATTRIBUTES, values):
                groups[a].append(v)
            if "intersec_label" in col:
                value = row.cells[col["intersec_label"]]
                try:
                    intersec.append(str(int(float(value))))
                except ValueError:
                    raise InputError(f"{row.where}: intersec_label {value!r} is not an integer") from None
        else:
            for a in available:
                groups[a].append(check_attribute_value(a, row.cells[col[a]], row.where))
        paths.append(row.path)
        written.append(row.written)
        lines.append(row.line)
        labels.append(row.label)

    if problems:
        more = f"; and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
        hint = (f" (relative paths are read from {table.base})"
                if any(": file not found:" in p for p in problems) else "")
        raise InputError(f"{name}: {len(problems)} of {len(table.rows)} rows "
                         f"{'have unusable paths' if len(problems) > 1 else 'has an unusable path'}: "
                         f"{'; '.join(problems[:LISTED])}{more}{hint}")
    warnings: list[str] = []
    for a in available:
        groups[a] = group_spellings(f"{name} column {a!r}", groups[a], warnings)
    for a in chosen if require_attributes else ():
        distinct = sorted(set(groups[a]))
        if len(distinct) < 2:
            raise InputError(f"{name} column {a!r}: a single group ({distinct[0]!r}) on every row "
                             "(lines {0}-{1}); a fairness check needs two or more".format(
                                 lines[0], lines[-1]))
    joined = [group_name(groups[a][i] for a in chosen) for i in range(len(paths))]
    if fmt == "pgfdd" and intersec and sorted(chosen) == sorted(PGFDD_ATTRIBUTES):
        intersection = _name_official_groups(intersec, joined)
    else:
        intersection = joined
    return LabelledSet(
        source=Path(csv_path), format=fmt, paths=paths, written=written, lines=lines,
        labels=np.asarray(labels, dtype=np.int64),
        attributes={a: groups[a] for a in chosen}, intersection=intersection,
        columns={h: [cells[col[h]] for _, cells in table.rows]
                 for h in header if h not in ("path", "label", path_col)},
        warnings=warnings)


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


# ---------------------------------------------------------------- group names that look alike

# Letters of these scripts are drawn alike (Latin a, Cyrillic а, Greek α): one name mixing them is
# a typo or a trick. Han with kana, or Latin digits in any script, is ordinary writing.
LOOKALIKE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")
# Case-folded Cyrillic and Greek letters that look like a Latin one (of either case: Cyrillic Н
# folds to н and is drawn as Latin H); a small table of Unicode's confusables, for warnings only.
_LATIN_LOOKALIKE = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "з": "3", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m",
    "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "һ": "h", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "ӏ": "l", "ү": "y", "α": "a", "β": "b", "ε": "e", "ζ": "z", "η": "h", "ι": "i",
    "κ": "k", "μ": "m", "ν": "n", "ο": "o", "ρ": "p", "τ": "t", "υ": "y", "χ": "x", "ϲ": "c",
})


def group_key(value: str) -> str:
    """What makes two group names one group: the same text once Unicode-normalised (NFC: an é
    typed as e + U+0301 is the é of another row) and case-folded ("Female" is "female")."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).casefold())


def _skeleton(value: str) -> str:
    """How a name looks: compatibility forms (fullwidth ｆ) and Latin look-alikes folded to Latin."""
    return unicodedata.normalize("NFKC", value).casefold().translate(_LATIN_LOOKALIKE)


def _scripts(value: str) -> list[str]:
    found = {unicodedata.name(c, "").split(" ")[0] for c in value if c.isalpha()}
    return [s for s in LOOKALIKE_SCRIPTS if s in found]


def _codepoints(value: str) -> str:
    """The letters of `value` outside ASCII, named: what makes it differ from its look-alike."""
    odd = dict.fromkeys(c for c in value if ord(c) > 0x7F)
    return ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, '?')}" for c in odd) or "ASCII only"


def group_spellings(where: str, values: list[str], warnings: list[str]) -> list[str]:
    """Each row's group, one spelling per group: names equal after `group_key` are one group,
    shown as first written (NFC). Appends to `warnings` each merge, each name mixing look-alike
    scripts, and each pair of different groups that look alike, since "fеmale" with a Cyrillic е
    would otherwise be a second group no one can tell from "female" in any table."""
    shown: dict[str, str] = {}
    spellings: dict[str, list[str]] = {}
    for v in values:
        k = group_key(v)
        shown.setdefault(k, unicodedata.normalize("NFC", v))
        if v not in spellings.setdefault(k, []):
            spellings[k].append(v)
    for k, forms in spellings.items():
        if len(forms) > 1:
            warnings.append(f"{where}: {', '.join(ascii(f) for f in forms)} are one group {shown[k]!r} "
                            "(group names are compared ignoring case and Unicode normalisation)")
    for k in shown:
        scripts = _scripts(shown[k])
        if len(scripts) > 1:
            warnings.append(f"{where}: group {shown[k]!r} mixes {' and '.join(s.title() for s in scripts)} "
                            f"letters ({_codepoints(shown[k])}); check the labels")
    alike: dict[str, list[str]] = {}
    for k in shown:
        alike.setdefault(_skeleton(k), []).append(k)
    for keys in alike.values():
        if len(keys) > 1:
            names = [shown[k] for k in keys]
            warnings.append(f"{where}: groups {', '.join(repr(n) for n in names)} look alike but are judged "
                            f"as {len(names)} groups ({'; '.join(f'{n!r}: {_codepoints(n)}' for n in names)}); "
                            "if they are one, fix the labels")
    return [shown[group_key(v)] for v in values]
