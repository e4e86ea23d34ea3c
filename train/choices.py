"""The names each `dfscan train` choice option accepts, in one torch-free module.

train.loop checks TrainOptions against these and `dfscan train` builds its Typer choices from
them (scanner/commands/train.py), so a new value is added here once. Importing train.loop, the
backbones or the curriculum would load torch at CLI start: keep this module free of imports.
The tables that act on a name (train.backbones.BACKBONES, train.loop.OPTIMIZERS) are keyed by
these names and checked against them.
"""

BACKBONE_NAMES = ("efficientnet_lite0", "xception", "dinov2_vits14")
OPTIMIZER_NAMES = ("sgd", "adam")  # the base optimizer, under SAM unless --no-sam
LR_SCHEDULES = ("constant", "cosine")
PSEUDO_FAKES = ("none", "sbi")
THRESHOLD_METHODS = ("fpr", "eer", "youden")
CURRICULA = ("none", "quality")
BALANCE_MODES = ("none", "synthetic")
