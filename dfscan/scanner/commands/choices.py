"""Typer choices built from the tables that own them, so a new backend, report format or training
option value is never a second list to update here: dfscan.engines.select.SPECS, dfscan.scanner.report.WRITERS,
dfscan.scanner.faces.MODEL_INPUT and dfscan.train.choices (torch-free, so the CLI starts without torch)."""

from __future__ import annotations

from enum import Enum

from dfscan.engines.select import CHOICES
from dfscan.scanner.faces import MODEL_INPUT
from dfscan.scanner.report import FORMATS
from dfscan.train import choices as train_choices


def choice_enum(name: str, values) -> type[Enum]:
    """A str Enum whose members are `values`, named as they are spelt (what Typer shows and parses)."""
    return Enum(name, {value: value for value in values}, type=str)


BackendChoice = choice_enum("BackendChoice", CHOICES)
Format = choice_enum("Format", FORMATS)
FaceModel = choice_enum("FaceModel", MODEL_INPUT)

# `dfscan train`
Backbone = choice_enum("Backbone", train_choices.BACKBONE_FILES)
Optimizer = choice_enum("Optimizer", train_choices.OPTIMIZER_NAMES)
LrSchedule = choice_enum("LrSchedule", train_choices.LR_SCHEDULES)
PseudoFakes = choice_enum("PseudoFakes", train_choices.PSEUDO_FAKES)
ThresholdMethod = choice_enum("ThresholdMethod", train_choices.THRESHOLD_METHODS)
Curriculum = choice_enum("Curriculum", train_choices.CURRICULA)
BalanceGroups = choice_enum("BalanceGroups", train_choices.BALANCE_MODES)
