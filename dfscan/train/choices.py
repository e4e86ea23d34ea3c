"""The names each `dfscan train` choice option accepts, in one torch-free module.

dfscan.train.loop checks TrainOptions against these and `dfscan train` builds its Typer choices from
them (dfscan/scanner/commands/train.py), so a new value is added here once. Importing dfscan.train.loop, the
backbones or the curriculum would load torch at CLI start: keep this module free of heavy imports.
The tables that act on a name (dfscan.train.backbones.BACKBONES, dfscan.train.loop.OPTIMIZERS) are keyed by
these names and checked against them.
"""

import pkgutil as _pkgutil
import sys as _sys
from pathlib import Path as _Path

DEFAULT_BACKBONE = "efficientnet_lite0"
# A backbone is a module of dfscan/train/backbones (dfscan.train.backbones.registry): its file name is its name,
# read here from the folder so that the CLI knows the names without importing torch.
BACKBONE_FILES = tuple(sorted((m.name for m in _pkgutil.iter_modules([str(_Path(__file__).parent / "backbones")])
                               if m.name != "registry" and not m.name.startswith("_")),
                              key=lambda name: (name != DEFAULT_BACKBONE, name)))


def backbone_names() -> tuple[str, ...]:
    """The files' backbones, and any registered in this process from elsewhere (a plugin, a test)."""
    registry = _sys.modules.get("dfscan.train.backbones.registry")
    extra = [n for n in getattr(registry, "BACKBONES", {}) if n not in BACKBONE_FILES]
    return BACKBONE_FILES + tuple(extra)

OPTIMIZER_NAMES = ("sgd", "adam")  # the base optimizer, under SAM unless --no-sam
LR_SCHEDULES = ("constant", "cosine")
PSEUDO_FAKES = ("none", "sbi")
THRESHOLD_METHODS = ("fpr", "eer", "youden")
CURRICULA = ("none", "quality")
BALANCE_MODES = ("none", "synthetic")
