"""Training side of dfscan: the PG-FDD model, its checkpoints, losses and loop. Never imports dfscan.scanner or dfscan.engines.

The re-exports are lazy so that `import dfscan.core.errors` (done by every CLI command) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelConfig": "dfscan.train.config",
    "PGFDD": "dfscan.train.model",
    "PGFDDDeploy": "dfscan.train.model",
    "adain": "dfscan.train.model",
    "file_sha256": "dfscan.train.checkpoint",
    "import_official": "dfscan.train.checkpoint",
    "load_checkpoint": "dfscan.train.checkpoint",
    "save_checkpoint": "dfscan.train.checkpoint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
