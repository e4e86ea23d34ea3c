"""The cache of ONNX exports, keyed by the weights' sha256: found and checked without torch.

Why apart from dfscan.engines.export: a scan on the CPU only needs the cached file, and importing torch
(which exporting needs) costs about a second of every scan's start-up. Only a cache miss exports.

Each entry is bound to the file exported: beside `model-<tag>.onnx` a record
`model-<tag>.onnx.json` holds the weights' sha256 and the sha256 of the ONNX file as written. On
load the file is hashed again; an entry whose record is missing or disagrees (the file replaced by
another model, valid or not, or an export of an older dfscan) is not used: it is deleted and
exported again from the weights, so the scores and the report's `model.sha256` always come from
the same weights. This catches a swapped or stale file, not someone racing the scan who can also
rewrite the record: the cache is the user's own folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from dfscan.core.errors import InputError
from dfscan.core.files import atomic_write_bytes
from dfscan.engines.base import cache_dir, checkpoint_config
from dfscan.engines.onnx_model import DEFAULT_OPSET, check_onnx

EXPORT_VERSION = "2"  # bump when the exported graph changes, so cached exports are redone


def cached_onnx_path(weights_sha: str, *, fp16: bool = False, opset: int = DEFAULT_OPSET) -> Path:
    """Where the export of these weights lives in the user cache (keyed by their sha256)."""
    tag = f"op{opset}-{'fp16' if fp16 else 'fp32'}-v{EXPORT_VERSION}"
    return cache_dir() / "onnx" / weights_sha / f"model-{tag}.onnx"


RECORD_FORMAT = "dfscan.onnx-cache/1"


def record_path(onnx_path: str | Path) -> Path:
    """The record binding a cached export to its file: model-<tag>.onnx → model-<tag>.onnx.json."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


def record_export(onnx_path: str | Path, weights_sha: str) -> Path:
    """Bind a just-written cache entry to its weights and its bytes (call it after every export into the cache)."""
    from dfscan.train.checkpoint_info import file_sha256

    record = {"format": RECORD_FORMAT, "weights_sha256": weights_sha, "onnx_sha256": file_sha256(onnx_path)}
    return atomic_write_bytes(record_path(onnx_path), (json.dumps(record, indent=1) + "\n").encode("utf-8"))


def is_bound(onnx_path: str | Path, weights_sha: str) -> bool:
    """Whether the cached file is the one exported from these weights (its record and its hash agree)."""
    from dfscan.train.checkpoint_info import file_sha256

    try:
        record = json.loads(record_path(onnx_path).read_text(encoding="utf-8"))
        return (isinstance(record, dict) and record.get("format") == RECORD_FORMAT
                and record.get("weights_sha256") == weights_sha and record.get("onnx_sha256") == file_sha256(onnx_path))
    except (OSError, ValueError):
        return False


def cached_onnx(weights: str | Path, *, fp16: bool = False, weights_sha: str | None = None) -> Path:
    """The ONNX export of these weights, made once and reused by every later run on this machine.

    `weights_sha`: the file's sha256 when the caller has it already (a scan hashes its checkpoint once).
    An entry not bound to these weights (see the module's docstring) or damaged is exported again.
    """
    from dfscan.train.checkpoint_info import file_sha256

    weights = Path(weights)
    if not weights.is_file():
        raise InputError(f"{weights}: weights file not found")
    sha = weights_sha or file_sha256(weights)
    path = cached_onnx_path(sha, fp16=fp16)
    if path.is_file() or path.is_symlink():
        try:
            if is_bound(path, sha):
                check_onnx(path, input_size=checkpoint_config(weights).input_size)
                return path
        except InputError:  # a damaged cache entry is redone, not trusted
            pass
        path.unlink(missing_ok=True)  # replaced, unrecorded or damaged: never used
        record_path(path).unlink(missing_ok=True)
    from dfscan.engines.export import export_onnx  # torch: only on a miss

    out = export_onnx(weights, path, fp16=fp16)
    record_export(out, sha)
    return out
