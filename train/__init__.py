"""Training side of dfscan: the PG-FDD model, its checkpoints, losses and loop. Never imports scanner/engines.

The re-exports are lazy so that `import train.errors` (done by every CLI command) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelConfig": "train.config",
    "PGFDD": "train.model",
    "PGFDDDeploy": "train.model",
    "adain": "train.model",
    "file_sha256": "train.checkpoint",
    "import_official": "train.checkpoint",
    "load_checkpoint": "train.checkpoint",
    "save_checkpoint": "train.checkpoint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
