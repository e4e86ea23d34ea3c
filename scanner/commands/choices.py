"""Typer choices built from the tables that own them, so a new backend or report format is never
a second list to update here: engines.select.SPECS and scanner.report.WRITERS."""

from __future__ import annotations

from enum import Enum

from engines.select import CHOICES
from scanner.report import FORMATS

BackendChoice = Enum("BackendChoice", {name: name for name in CHOICES}, type=str)
Format = Enum("Format", {name: name for name in FORMATS}, type=str)
