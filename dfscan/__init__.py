"""dfscan: scan video and images for deepfakes with a fairness-aware (PG-FDD) detector.

    import dfscan
    report = dfscan.scan(["videos"], dfscan.ScanOptions(frames=16))  # the report as a dict

`dfscan.scanner` (CLI, media, faces, tracking, crops, pipeline, report) -> `dfscan.engines`
(inference backends, ONNX, TensorRT) -> `dfscan.train` (the PG-FDD model and its training) ->
`dfscan.core` (errors, files, labels, metrics): imports point that way only.
`scan` and `ScanOptions` load on first use, so `import dfscan` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["ScanOptions", "scan", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("scan", "ScanOptions"):
        from dfscan.scanner import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'dfscan' has no attribute {name!r}")
