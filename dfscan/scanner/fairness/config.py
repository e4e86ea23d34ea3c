"""Settings from a config file or pyproject.toml, merged under the command line's options."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from dfscan.core.errors import InputError
from dfscan.scanner.fairness.gates import CheckOptions

_TYPES = {"attrs": list, "threshold": float, "min_group": int, "allow_small_groups": bool,
          "bootstrap": int, "seed": int, "max_ffpr": float, "max_fmeo": float, "max_fdp": float,
          "max_foae": float, "min_auc": float, "max_fpr": float, "min_tpr": float}


def read_config(path: str | Path | None = None, *, cwd: Path | None = None) -> dict[str, Any]:
    """Settings from `--config FILE` or, without one, `[tool.dfscan.fairness]` of ./pyproject.toml.

    A --config file may hold `[tool.dfscan.fairness]`, `[fairness]` or the keys at top level.
    Keys use the option names, with - or _ (`max-ffpr = 5`, `min_group = 50`).
    """
    if path is None:
        candidate = (cwd or Path.cwd()) / "pyproject.toml"
        if not candidate.is_file():
            return {}
        data = _load_toml(candidate)
        table = data.get("tool", {}).get("dfscan", {}).get("fairness", {})
        where = f"{candidate.name} [tool.dfscan.fairness]"
    else:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"config file not found: {path}")
        data = _load_toml(path)
        if "tool" in data:
            table = data.get("tool", {}).get("dfscan", {}).get("fairness")
            if table is None:
                raise InputError(f"{path.name}: no [tool.dfscan.fairness] table")
        elif "fairness" in data:
            table = data["fairness"]
        else:
            table = data
        where = path.name
    if not isinstance(table, dict):
        raise InputError(f"{where}: expected a table of settings")
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        kind = _TYPES.get(name)
        if kind is None:
            raise InputError(f"{where}: unknown setting {key!r} (known: "
                             f"{', '.join(k.replace('_', '-') for k in _TYPES)})")
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        elif kind is list and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InputError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
        out[name] = value
    return out


def _load_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib parses nested arrays recursively: a hostile file exhausts the stack
        raise InputError(f"{path.name}: not valid TOML (arrays or tables nested too deep)") from None


def merge_options(cli: dict[str, Any], config: dict[str, Any]) -> CheckOptions:
    """Options given on the command line (not None) win over the config file's."""
    merged: dict[str, Any] = {}
    for f in fields(CheckOptions):
        if cli.get(f.name) is not None:
            merged[f.name] = cli[f.name]
        elif f.name in config:
            merged[f.name] = config[f.name]
    return CheckOptions(**merged).validate()
