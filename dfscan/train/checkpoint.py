"""dfscan checkpoints: one safetensors file, config/threshold/provenance in its string metadata.

Run time never unpickles: only `import_official` calls torch.load, and with weights_only=True.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfscan.core.errors import CheckpointError
from dfscan.core.files import make_public
from dfscan.train.checkpoint_info import FORMAT, file_sha256, read_metadata  # noqa: F401  (re-exported: callers import them from here)
from dfscan.train.config import ModelConfig
from dfscan.train.model import PGFDD, PGFDDDeploy, single_pass_exact


def _kind(model: nn.Module) -> str:
    if isinstance(model, PGFDD):
        return "full"
    if isinstance(model, PGFDDDeploy):
        return "deploy"
    raise TypeError(f"save_checkpoint: expected PGFDD or PGFDDDeploy, got {type(model).__name__}")


def save_checkpoint(path: str | Path, model: PGFDD | PGFDDDeploy, config: ModelConfig | None = None, *,
                    threshold: float = 0.5, provenance: dict | None = None, half: bool = False,
                    caveat: str | None = None) -> Path:
    """Write weights (float32, contiguous, CPU) and metadata atomically; returns the path.

    `half=True` stores floating tensors as float16 (half the file: shipped weights);
    `load_checkpoint` casts them back to float32. `caveat` is the model card's one-line
    warning (e.g. research-only data terms); scans show it beside every verdict summary.
    """
    from safetensors.torch import save_file

    config = config or model.config
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", store if v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "kind": _kind(model),
        "config": config.to_json(),
        "threshold": str(float(threshold)),
        "provenance": json.dumps(provenance or {}, sort_keys=True, default=str),
        "dtype": "float16" if half else "float32",
    }
    if caveat:
        metadata["caveat"] = " ".join(caveat.split())
    if isinstance(model, PGFDDDeploy):  # which inference graph the file holds, and why
        metadata["deploy_graph"] = "single_pass" if model.single_pass else "two_pass"
        metadata["deploy_note"] = single_pass_exact(config)[1]
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    make_public(tmp)  # safetensors writes 0600
    tmp.replace(path)
    return path


def _few(what: str, keys: list[str], limit: int = 5) -> str:
    """A count and the first few names: a foreign file can miss hundreds of keys."""
    return f"{what} ({len(keys)}): {', '.join(keys[:limit])}{', ...' if len(keys) > limit else ''}"


def _check_keys(path: Path, module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(_few("missing keys", missing))
    if unexpected:
        problems.append(_few("unexpected keys", unexpected))
    if shapes:
        problems.append(_few("wrong shapes", [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in shapes], 3))
    if problems:
        raise CheckpointError(f"{path}: weights do not match the model ({'; '.join(problems)})")


def load_checkpoint(path: str | Path, *, deploy: bool = True, device: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, ModelConfig, dict[str, Any]]:
    """Rebuild the model in eval mode from a checkpoint.

    deploy=True returns a PGFDDDeploy (from either kind); deploy=False needs a full checkpoint.
    The returned dict has threshold, provenance, kind and the file's sha256.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    kind = meta.get("kind")
    if kind not in ("full", "deploy"):
        raise CheckpointError(f"{path}: unknown checkpoint kind {kind!r}")
    try:
        config = ModelConfig.from_dict(json.loads(meta["config"]))
        threshold = float(meta["threshold"])
        provenance = json.loads(meta.get("provenance", "{}"))
    except (KeyError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: bad checkpoint metadata ({exc})") from None
    if kind == "deploy" and not deploy:
        raise CheckpointError(f"{path}: a deploy checkpoint holds only the inference weights; it cannot load as a full model")

    state = {k: v.float() if v.dtype == torch.float16 else v for k, v in load_file(str(path)).items()}
    full_cls = PGFDD if kind == "full" else PGFDDDeploy
    try:
        model = full_cls(config)
    except ValueError as exc:  # unknown backbone in the config
        raise CheckpointError(f"{path}: {exc}") from None
    if isinstance(model, PGFDDDeploy) and model.single_pass:
        # a two-pass deploy file (older dfscan) carries encoder_fair/block_fair: unused by the exact single pass
        state = {k: v for k, v in state.items() if k.split(".", 1)[0] in model.parts}
    _check_keys(path, model, state)
    model.load_state_dict(state)
    if deploy and isinstance(model, PGFDD):  # kind == "full"
        model = PGFDDDeploy.from_full(model)
    model = model.to(device).eval()
    info = {"threshold": threshold, "provenance": provenance, "kind": kind, "sha256": file_sha256(path),
            "format": meta["format"]}
    return model, config, info


def _official_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled code; anything else is not a state_dict
        # PyTorch's own message advises weights_only=False, i.e. running the file's code: never relay that
        raise CheckpointError(f"{path}: not a tensors-only PyTorch state_dict (the safe weights-only loader refused "
                              f"it: {type(exc).__name__}); dfscan never unpickles code") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in obj):  # saved from nn.DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def detect_backbone(state: dict[str, torch.Tensor]) -> str | None:
    """Which registered backbone a PG-FDD state_dict was built on, from its encoder_f key names."""
    from dfscan.train.backbones import BACKBONES

    return next((name for name, entry in BACKBONES.items() if entry.state_key in state), None)


def _config_from_state(path: Path, state: dict[str, torch.Tensor], base: ModelConfig | None) -> ModelConfig:
    """Head sizes and width from the tensors themselves: published checkpoints differ."""
    def rows(key: str) -> int | None:
        t = state.get(key)
        return int(t.shape[0]) if t is not None and t.ndim >= 1 else None

    detected = detect_backbone(state)
    if base is not None and detected is not None and detected != base.backbone:
        raise CheckpointError(f"{path}: the state_dict is a {detected} PG-FDD, not {base.backbone} "
                              f"(use backbone {detected})")
    d = (base or ModelConfig(backbone=detected or "xception")).to_dict()
    for field, key in (("num_spe", "head_spe.mlp.2.weight"), ("num_sha", "head_sha.mlp.2.weight"),
                       ("num_fair", "head_fair.mlp.2.weight"), ("num_fused", "head_fused.mlp.2.weight"),
                       ("feature_channels", "encoder_f.adjust_channel.0.weight")):
        n = rows(key)
        if n is not None and n != d[field]:
            d[field] = n
            if field == "num_fair" and len(d["group_names"]) != n:
                d["group_names"] = [f"group_{i}" for i in range(n)]
            if field == "num_spe" and len(d["method_names"]) != n:
                d["method_names"] = ["real"] + [f"fake_{i}" for i in range(1, n)]
    return ModelConfig.from_dict(d)


def import_official(pth_path: str | Path, out_path: str | Path, config: ModelConfig | None = None, *,
                    deploy: bool = False, threshold: float = 0.5) -> Path:
    """Convert an official PG-FDD state_dict (.pth) into a dfscan checkpoint.

    Loaded with torch.load(weights_only=True). Without a `config` the backbone is detected from
    the key names (official files are xception); head sizes and feature width are always read
    from the tensors, so published variants with other head sizes import too.
    Every missing or unexpected key is named when the layout does not match.
    """
    pth_path, out_path = Path(pth_path), Path(out_path)
    if not pth_path.is_file():
        raise CheckpointError(f"{pth_path}: file not found")
    state = _official_state(pth_path)
    cfg = _config_from_state(pth_path, state, config)
    model = PGFDD(cfg)
    _check_keys(pth_path, model, state)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.eval()
    provenance = {"source": "official PG-FDD state_dict", "imported_from": pth_path.name,
                  "source_sha256": file_sha256(pth_path)}
    target: PGFDD | PGFDDDeploy = model.deploy() if deploy else model
    return save_checkpoint(out_path, target, cfg, threshold=threshold, provenance=provenance)
