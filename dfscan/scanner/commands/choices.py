"""Typer choices built from the tables that own them, so a new backend, report format or training
option value is never a second list to update here: dfscan.engines.select.SPECS, dfscan.scanner.report.WRITERS,
dfscan.scanner.faces.MODEL_INPUT and dfscan.train.choices (torch-free, so the CLI starts without torch)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum, EnumMeta
from typing import TYPE_CHECKING, TypeVar, cast

from dfscan.engines.select import CHOICES
from dfscan.scanner.faces import MODEL_INPUT
from dfscan.scanner.report import FORMATS
from dfscan.train import choices as train_choices


def choice_enum(name: str, values: Iterable[str]) -> type[Enum]:
    """A str Enum whose members are `values`, named as they are spelt (what Typer shows and parses)."""
    return cast("type[Enum]", Enum(name, {value: value for value in values}, type=str))  # the functional API: a class


if TYPE_CHECKING:
    # What the type checker sees: the members are only known at runtime, so any member name is a
    # member of its choice, and every member's value is its name (a str).
    _C = TypeVar("_C")

    class _ChoiceMeta(EnumMeta):
        def __getattr__(cls: type[_C], name: str) -> _C: ...

    class _Choice(str, Enum, metaclass=_ChoiceMeta):
        @property
        def value(self) -> str: ...

    class BackendChoice(_Choice): ...
    class Format(_Choice): ...
    class FaceModel(_Choice): ...
    class Backbone(_Choice): ...
    class Optimizer(_Choice): ...
    class LrSchedule(_Choice): ...
    class PseudoFakes(_Choice): ...
    class ThresholdMethod(_Choice): ...
    class Curriculum(_Choice): ...
    class BalanceGroups(_Choice): ...
else:
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
