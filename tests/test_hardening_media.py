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


# ---------------------------------------------------------------- 6. animated GIFs are sampled like a video

def grey(i: int) -> int:
    return 10 + 3 * i


def face_gif(path: Path, *, duration: int | None = 200) -> Path:
    """12 frames: 6 flat grey (level grey(i)), then 6 of the face clip (as a GIF, 256 colours)."""
    import numpy as np
    from PIL import Image

    from tests.helpers import face_frame

    face = np.asarray(Image.fromarray(face_frame(30)).resize((320, 180)))
    pictures = [Image.new("RGB", (320, 180), (grey(i),) * 3) for i in range(6)]
    pictures += [Image.fromarray(np.roll(face, 4 * k, axis=1)).quantize(256) for k in range(6)]  # distinct frames
    timing = {} if duration is None else {"duration": duration}
    pictures[0].save(path, save_all=True, append_images=pictures[1:], loop=0, disposal=1, **timing)
    assert Image.open(path).n_frames == 12 and np.asarray(Image.open(path).convert("L")).max() == grey(0)
    return path


@pytest.mark.parametrize("name", ["anim.gif", "gif_named.png"])
def test_animated_gif_is_sampled_like_a_video(tmp_path, detector, name):
    """Only frame 0 of an animated GIF was read: a face from its second half on was never seen."""
    import numpy as np

    from scanner.media import collect_inputs, iter_frames, probe

    path = face_gif(tmp_path / name)
    assert collect_inputs([tmp_path])[0] == [path]
    info = probe(path)
    assert info.frames_total == 12 and info.duration == pytest.approx(2.4) and info.fps == pytest.approx(5.0)
    frames = list(iter_frames(path, frames=4))
    assert [f.index for f in frames] == [0, 4, 7, 11]
    assert [f.t for f in frames] == pytest.approx([0.0, 0.8, 1.4, 2.2])
    assert [round(float(f.image.mean())) for f in frames[:2]] == [grey(0), grey(4)]
    assert [bool(detector.detect(f.image)) for f in frames] == [False, False, True, True]
    assert [f.index for f in iter_frames(path, fps=2.5)] == [0, 2, 4, 6, 8, 10]
    assert all(f.image.shape == (180, 320, 3) and f.image.dtype == np.uint8 for f in iter_frames(path))


def test_animation_without_frame_durations_plays_at_100_ms(tmp_path):
    """Frames without a delay all started at 0 s: --fps sampled the first frame only."""
    from scanner.media import iter_frames, probe

    path = face_gif(tmp_path / "nodelay.gif", duration=None)
    assert probe(path).duration == pytest.approx(1.2)
    assert [f.index for f in iter_frames(path, fps=5)] == [0, 2, 4, 6, 8, 10]
