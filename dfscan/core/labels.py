"""The labelled-set CSV, read by one set of rules wherever it is read, and the one group-naming rule.

fairness-check, `dfscan audit`, extract-faces and training all take this file (a labels.csv of
media, or a training manifest of face crops). It sits in `train` and imports neither torch nor
numpy, so every layer may use it (imports point scanner → engines → train): a file one command
accepts, the others read with the same header checks, the same labels and the same group names.

Two dialects:
- dfscan: `path,label[,attribute columns...]`;
- the official PG-FDD CSV: `img_path,label,ismale,isasian,iswhite,isblack[,intersec_label][,spe_label]`,
  whose one-hot columns are read as the attributes `gender` (male, female) and `race` (asian,
  white, black, other).

Group naming: an intersectional group is its attribute values joined with `|` in column order
("female|asian"); fairness-check refuses `|` inside a value, so a name splits back one way.
Checkpoints trained before this rule stored "-" joins and the official "nonmale-…-others"
names; `legacy_group_names` and `align_group_names` read them, so those files still load and
fine-tune (their stored names are never rewritten).
"""

from __future__ import annotations

import csv
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from dfscan.core.errors import InputError

LABELS = {"real": 0, "0": 0, "fake": 1, "1": 1}  # fake is the positive class
LABEL_NAMES = ("real", "fake")
SEPARATOR = "|"  # joins attribute values into an intersectional group name
PGFDD_ONEHOT = ("ismale", "isasian", "iswhite", "isblack")
PGFDD_REQUIRED = ("img_path", "label", *PGFDD_ONEHOT)
PGFDD_OPTIONAL = ("intersec_label", "spe_label")
PGFDD_ATTRIBUTES = ("gender", "race")
GENDERS = ("male", "female")  # ismale 1 / 0
RACES = ("asian", "white", "black", "other")  # isasian / iswhite / isblack / none of them


def group_name(values: Iterable[str]) -> str:
    """The one name of an intersectional group: its attribute values joined in column order."""
    return SEPARATOR.join(values)


# The official PG-FDD intersectional groups, in the index order of its CSVs' `intersec_label`
# (and of the fairness head of its published checkpoints).
OFFICIAL_GROUPS = [group_name((g, r)) for g in GENDERS for r in RACES]
# How training spelled those names, and every "-"-joined group, before the rule above.
LEGACY_SEPARATOR = "-"
LEGACY_OFFICIAL_GROUPS = [f"{g}-{r}" for g in ("male", "nonmale")
                          for r in ("asian", "white", "black", "others")]


# --------------------------------------------------------------------------------------------
# The CSV table
# --------------------------------------------------------------------------------------------

@dataclass
class CsvTable:
    name: str  # the file's name, for messages
    base: Path  # the folder relative paths in the file are resolved against
    header_line: int
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (line number, stripped cells), blank lines dropped

    @property
    def column(self) -> dict[str, int]:
        return {h: i for i, h in enumerate(self.header)}

    @property
    def dialect(self) -> str:
        """"pgfdd" when the file has the official CSV's `img_path` column, else "dfscan"."""
        return "pgfdd" if "img_path" in self.header else "dfscan"


def read_csv_table(path: str | Path, *, what: str, expected: str) -> CsvTable:
    """Read a CSV with a header; every problem is one InputError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    name = path.name
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            records = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{name}: not a readable CSV file ({exc})") from None
    records = [(line, row) for line, row in records if any(cell.strip() for cell in row)]
    if not records:
        raise InputError(f"{name}: empty file; expected a header '{expected}'")
    header_line, header = records[0]
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for h in header:
        if not h:
            raise InputError(f"{name} line {header_line} (header): empty column name")
        if h in seen:
            raise InputError(f"{name} line {header_line} (header): duplicate column {h!r}")
        seen.add(h)
    rows = []
    for line, row in records[1:]:
        if len(row) != len(header):
            raise InputError(f"{name} line {line}: expected {len(header)} fields, found {len(row)}")
        rows.append((line, [c.strip() for c in row]))
    return CsvTable(name, path.resolve().parent, header_line, header, rows)


def require_columns(table: CsvTable, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in table.header]
    if missing:
        raise InputError(f"{table.name} line {table.header_line} (header): missing column(s) "
                         f"{', '.join(repr(c) for c in missing)} (found: {', '.join(table.header)})")


def require_rows(table: CsvTable) -> None:
    if not table.rows:
        raise InputError(f"{table.name}: no rows after the header")


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------

def parse_label(value: str, where: str) -> int:
    """real/fake or 0/1 → 0/1."""
    label = LABELS.get(value.lower())
    if label is None:
        raise InputError(f"{where}: label {value!r} is neither real/fake nor 0/1")
    return label


def control_char(text: str) -> str | None:
    """The first control or invisible format character (NUL, ESC, U+202E) as U+XXXX, else None.

    Such a character makes a group that looks like another one, or rewrites the terminal.
    """
    for c in text:
        if unicodedata.category(c) in ("Cc", "Cf"):
            return f"U+{ord(c):04X}"
    return None


def check_attribute_value(column: str, value: str, where: str) -> str:
    """A value that can name a group: not empty, no separator, nothing invisible."""
    if not value:
        raise InputError(f"{where}: empty value in column {column!r}")
    if SEPARATOR in value:
        raise InputError(f"{where}: column {column!r} value {value!r} contains '{SEPARATOR}', "
                         "which joins intersectional group names")
    bad = control_char(value)
    if bad:
        raise InputError(f"{where}: column {column!r} value {value!r} contains a control "
                         f"character ({bad})")
    return value


def _onehot(value: str, where: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if number not in (0.0, 1.0):
        raise InputError(f"{where}: expected 0 or 1, found {value!r}")
    return number == 1.0


def official_attributes(cells: Mapping[str, str], where: str) -> tuple[str, str]:
    """(gender, race) of an official PG-FDD row from its one-hot columns, validated."""
    male = _onehot(cells["ismale"], f"{where} column 'ismale'")
    races = [r for r in RACES[:3] if _onehot(cells[f"is{r}"], f"{where} column 'is{r}'")]
    if len(races) > 1:
        raise InputError(f"{where}: more than one of isasian/iswhite/isblack is 1")
    return GENDERS[0] if male else GENDERS[1], races[0] if races else RACES[3]


@dataclass
class LabelledRow:
    """One data row: where it is in the file, its media as written and resolved, its truth."""

    line: int
    where: str  # "<file> line N", the prefix of every message about the row
    written: str
    path: Path
    label: int
    cells: list[str]


def labelled_rows(table: CsvTable, path_column: str,
                  resolve: Callable[[str | Path], str] = os.path.abspath) -> Iterator[LabelledRow]:
    """Each row with its path resolved against the CSV's folder and its label parsed; an empty
    path, a bad label or a path listed twice (after `resolve`) is an InputError naming the line."""
    col = table.column
    first: dict[Path, int] = {}
    for line, cells in table.rows:
        where = f"{table.name} line {line}"
        raw = cells[col[path_column]]
        if not raw:
            raise InputError(f"{where}: empty {path_column}")
        label = parse_label(cells[col["label"]], where)
        path = Path(resolve(table.base / raw))
        if path in first:
            raise InputError(f"{where}: duplicate path {raw!r} (first on line {first[path]})")
        first[path] = line
        yield LabelledRow(line, where, raw, path, label, cells)


# --------------------------------------------------------------------------------------------
# Group names stored by older checkpoints
# --------------------------------------------------------------------------------------------

def legacy_group_names(name: str) -> set[str]:
    """How training spelled `name` before the one rule: "-" joins; an official group also as
    "nonmale-…-others" (a dfscan manifest's gender,race columns gave "female-asian")."""
    spellings = {name.replace(SEPARATOR, LEGACY_SEPARATOR)}
    if name in OFFICIAL_GROUPS:
        spellings.add(LEGACY_OFFICIAL_GROUPS[OFFICIAL_GROUPS.index(name)])
    return spellings


def align_group_names(stored: Sequence[str], names: Sequence[str]) -> list[str] | None:
    """`names` in the order a checkpoint's fairness head stores them, or None if other groups.

    A checkpoint from before the rule stores "female-asian" where a manifest now reads
    "female|asian"; matching through `legacy_group_names` keeps its head's rows on their groups
    (the two spellings can sort differently, so the stored order wins).
    """
    if sorted(stored) == sorted(names):
        return list(stored)
    if len(stored) != len(names):
        return None
    aligned = []
    for old in stored:
        match = [n for n in names if old == n or old in legacy_group_names(n)]
        if len(match) != 1:
            return None
        aligned.append(match[0])
    return aligned if sorted(aligned) == sorted(names) else None
