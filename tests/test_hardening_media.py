"""Issue 30, items 5, 6, 11 and 14: a decoy video stream, animated GIFs, non-finite float options,
and timestamps that jump back or stand still. Every file is made for real with PyAV or Pillow
(tiny, in tmp_path) and decoded by the code under test; no mocks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import IMAGES
from train.errors import InputError

runner = CliRunner()


def one_usage_error(result, option: str) -> None:
    """Exit 2, no traceback, and exactly one line that names the option."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if option in line]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output


# ---------------------------------------------------------------- 11. float options: finite, sane ranges

@pytest.mark.parametrize("command", ["scan", "extract-faces"])
@pytest.mark.parametrize("option, value", [("--fps", "nan"), ("--fps", "inf"), ("--fps", "1e308"),
                                           ("--timeout", "inf")])
def test_non_finite_float_options_are_one_line_exit_2(tmp_path, tiny_checkpoint, command, option, value):
    """`--fps nan` crashed the report writer (a traceback), `--fps 1e308` made every video an internal_error."""
    from scanner.cli import app

    shutil.copy(IMAGES / "single_face.jpg", tmp_path / "a.jpg")
    args = [command, str(tmp_path / "a.jpg"), option, value, "--workers", "1"]
    if command == "scan":
        args += ["--weights", str(tiny_checkpoint), "--backend", "torch", "--report", str(tmp_path / "r.json")]
    else:
        args += ["--out", str(tmp_path / "crops"), "--manifest", str(tmp_path / "m.csv")]
    one_usage_error(runner.invoke(app, args, terminal_width=200), option)
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e308, 0.0, -1.0])
def test_library_fps_is_checked_before_decoding(value):
    from scanner.media import iter_frames
    from scanner.options import ScanOptions

    with pytest.raises(InputError, match="fps"):
        ScanOptions(fps=value).check()
    with pytest.raises(InputError, match="fps"):
        next(iter_frames(IMAGES / "single_face.jpg", fps=value))


def test_other_float_options_refuse_non_finite_values():
    """Train's --lr inf and --pacing-start 1e308 trained on NaN weights; --workspace-gb inf failed after the export."""
    from engines.tensorrt import build_engine
    from train.loop import TrainOptions

    base = dict(train=Path("t.csv"), val=Path("v.csv"), out=Path("run"))
    for bad in (dict(lr=float("inf")), dict(lr=float("nan")), dict(pacing_start=1e308), dict(pacing_end=float("nan"))):
        with pytest.raises(InputError, match="--lr|--pacing"):
            TrainOptions(**base, **bad).check()
    TrainOptions(**base, pacing_start=-50, pacing_end=50).check()
    with pytest.raises(InputError, match="--workspace-gb"):
        build_engine("missing.safetensors", workspace_gb=float("inf"))
