"""Reading the labelled-set CSV (`path,label[,attributes]`) the same way everywhere it is read.

extract-faces and fairness-check both take this file; their checks of the header, the field
counts and the labels must agree, word for word, so a file one accepts the other accepts too.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from train.errors import InputError

LABELS = {"real": 0, "0": 0, "fake": 1, "1": 1}  # fake is the positive class


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


def require_columns(table: CsvTable, required: tuple[str, ...] | list[str]) -> None:
    missing = [c for c in required if c not in table.header]
    if missing:
        raise InputError(f"{table.name} line {table.header_line} (header): missing column(s) "
                         f"{', '.join(repr(c) for c in missing)} (found: {', '.join(table.header)})")


def parse_label(value: str, where: str) -> int:
    """real/fake or 0/1 → 0/1."""
    label = LABELS.get(value.lower())
    if label is None:
        raise InputError(f"{where}: label {value!r} is neither real/fake nor 0/1")
    return label
