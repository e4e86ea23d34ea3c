"""Issue 30, items 5, 6, 11 and 14: a decoy video stream, animated GIFs, non-finite float options,
and timestamps that jump back or stand still. Every file is made for real with PyAV or Pillow
(tiny, in tmp_path) and decoded by the code under test; no mocks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfscan.core.errors import InputError
from tests.helpers import IMAGES

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
    from dfscan.scanner.cli import app

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
    from dfscan.scanner.media import iter_frames
    from dfscan.scanner.options import ScanOptions

    with pytest.raises(InputError, match="fps"):
        ScanOptions(fps=value).check()
    with pytest.raises(InputError, match="fps"):
        next(iter_frames(IMAGES / "single_face.jpg", fps=value))


def test_other_float_options_refuse_non_finite_values():
    """Train took --lr inf and --pacing-start 1e308 (weights exp(k/2) overflow); build-engine took --workspace-gb inf."""
    from dfscan.engines.tensorrt import build_engine
    from dfscan.train.loop import TrainOptions

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

    from dfscan.scanner.media import collect_inputs, iter_frames, probe

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
    from dfscan.scanner.media import iter_frames, probe

    path = face_gif(tmp_path / "nodelay.gif", duration=None)
    assert probe(path).duration == pytest.approx(1.2)
    assert [f.index for f in iter_frames(path, fps=5)] == [0, 2, 4, 6, 8, 10]


# ---------------------------------------------------------------- 5. a decoy video stream

def decoy_file(path: Path, n: int = 10) -> Path:
    """Stream 0: flat grey 640x360, not default; stream 1: the face clip at 320x180, the default stream."""
    import av

    from tests.helpers import two_stream_video

    two_stream_video(path, decoy_size=(640, 360), face_size=(320, 180), frames=n, decoy_grey=lambda i: 128,
                     face_default=True)
    with av.open(str(path)) as c:  # the situation this guards against
        assert [(int(s.disposition), s.codec_context.width) for s in c.streams.video] == [(0, 640), (1, 320)]
    return path


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_default_stream_is_scanned_and_every_stream_listed(tmp_path, detector, ext):
    """A larger grey non-default stream was read instead of the default face stream: `no_face`, exit 0."""
    from dfscan.scanner.media import SampleStats, iter_frames, probe

    path = decoy_file(tmp_path / f"decoy.{ext}")
    info = probe(path)
    assert (info.stream_index, info.width, info.height) == (1, 320, 180)
    assert info.video_streams == [{"index": 0, "width": 640, "height": 360, "default": False},
                                  {"index": 1, "width": 320, "height": 180, "default": True}]
    stats = SampleStats()
    frames = list(iter_frames(path, frames=3, stats=stats))
    assert stats.stream_index == 1 and len(frames) == 3
    assert all(f.image.shape == (180, 320, 3) and detector.detect(f.image) for f in frames)


# ---------------------------------------------------------------- 14. timestamps that jump back or stand still

def grey_clip(path: Path, first: int, n: int, fmt: str | None = None, zero: bool = False) -> Path:
    """n lossless frames, frame i flat grey(first + i), 25 fps; `zero`: every packet at pts = dts = 0."""
    from fractions import Fraction

    import av
    import numpy as np

    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream("libx264", rate=25, options={"qp": "0", "preset": "ultrafast", "bframes": "0"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"

        def mux(packets) -> None:
            for p in packets:
                if zero:
                    p.pts = p.dts = 0
                out.mux(p)

        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), grey(first + i), np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 25)
            mux(s.encode(f))
        mux(s.encode())
    return path


def concatenated_ts(path: Path) -> Path:
    """Two 30-frame MPEG-TS segments joined byte for byte (as `cat a.ts b.ts`): the second starts again at 0 s."""
    a = grey_clip(path.with_name("a.ts"), 0, 30, "mpegts")
    b = grey_clip(path.with_name("b.ts"), 30, 30, "mpegts")
    path.write_bytes(a.read_bytes() + b.read_bytes())
    return path


def content(image) -> int:
    """Which grey frame this is (3 levels apart; lossless)."""
    return int(round((float(image.mean()) - 10) / 3))


@pytest.mark.parametrize("kind", ["jump back", "all zero"])
def test_broken_timestamps_are_sampled_by_frame_order(tmp_path, kind):
    """After a jump back (or with every timestamp 0) --fps sampled half the file (or one frame), `ok`, 0 errors."""
    import av

    from dfscan.scanner.media import SampleStats, iter_frames

    if kind == "jump back":
        path = concatenated_ts(tmp_path / "joined.ts")
    else:
        path = grey_clip(tmp_path / "zero.mkv", 0, 60, zero=True)
    with av.open(str(path)) as c:  # the situation this guards against
        pts = [p.pts for p in c.demux(video=0) if p.size]
    assert len(pts) == 60 and (pts[30] == pts[0] if kind == "jump back" else set(pts) == {0})
    for mode, want in [(dict(fps=5.0), list(range(0, 60, 5))), (dict(frames=8), [0, 8, 17, 25, 34, 42, 51, 59])]:
        stats = SampleStats()
        frames = list(iter_frames(path, stats=stats, **mode))
        assert [f.index for f in frames] == want == [content(f.image) for f in frames], mode
        assert [f.t for f in frames] == pytest.approx([i / 25 for i in want]), mode
        assert stats.decode_errors == 0 and stats.timestamps_repaired == (1 if kind == "jump back" else 59)
    stats = SampleStats()
    keys = list(iter_frames(path, keyframes=True, stats=stats))
    assert [(f.index, content(f.image)) for f in keys] == ([(0, 0), (30, 30)] if kind == "jump back" else [(0, 0)])


def test_good_timestamps_are_not_repaired(tmp_path):
    from dfscan.scanner.media import SampleStats, iter_frames
    from tests.helpers import FACE_CLIP

    for path in (grey_clip(tmp_path / "ok.ts", 0, 30, "mpegts"), FACE_CLIP):
        stats = SampleStats()
        assert len(list(iter_frames(path, fps=10, stats=stats))) > 5 and stats.timestamps_repaired == 0


# ---------------------------------------------------------------- 5 and 14 in the report

def test_report_lists_streams_and_flags_what_was_not_scanned(tmp_path, detector):
    """The stage's media (what a worker returns) as report items: schema-valid, listed, flagged, in CSV too."""
    from dfscan.scanner import report as rp
    from dfscan.scanner.items import file_item
    from dfscan.scanner.stage import CropSink, StageConfig, process_file

    decoy_file(tmp_path / "decoy.mkv")
    grey_clip(tmp_path / "zero.mkv", 0, 60, zero=True)
    shutil.copy(IMAGES / "single_face.jpg", tmp_path / "face.jpg")
    cfg = StageConfig(frames=32, fps=5.0, keyframes=False, crops=False, face_model="full", min_face_score=0.5, size=64)
    items = {}
    for name, kind in (("decoy.mkv", "video"), ("zero.mkv", "video"), ("face.jpg", "image")):
        path = str(tmp_path / name)
        payload = process_file(path, kind, detector, cfg, CropSink(32, lambda first, crops: None))
        items[name] = file_item(path, kind, payload, rp.file_fingerprint(path), rp.file_fingerprint(path))
        assert bool(payload["subjects"]) == (name != "zero.mkv")
    header = rp.make_header(model={"name": "m.safetensors", "sha256": "ab" * 32, "backbone": "b", "threshold": 0.5},
                            backend={"name": "torch", "device": "cpu", "precision": "fp32"}, settings={"fps": 5.0})
    report = rp.build_report(header, list(items.values()), rp.summarize(list(items.values()), seconds=1.0))
    rp.validate_report(report)
    decoy, zero, still = (items[n]["media"] for n in ("decoy.mkv", "zero.mkv", "face.jpg"))
    assert decoy["stream_index"] == 1 and [s["index"] for s in decoy["video_streams"]] == [0, 1]
    assert decoy["warnings"] == ["1 other video stream(s) not scanned: #0 (640x360, not default); "
                                 "scanned stream #1 (320x180, default)"]
    assert zero["frames_sampled"] == 12 and zero["timestamps_repaired"] == 59 and zero["decode_errors"] == 0
    assert zero["duration"] == pytest.approx(2.4) and "timed by their order, at 25 fps" in zero["warnings"][0]
    assert still["video_streams"] is None and "warnings" not in still and "timestamps_repaired" not in still
    rows = {Path(r["path"]).name: r for r in rp.csv_rows(report)}
    assert rows["decoy.mkv"]["warnings"] == decoy["warnings"][0] and rows["face.jpg"]["warnings"] == ""
    bad = {**report, "items": [{**items["decoy.mkv"], "media": {**decoy, "warnings": ["two\nlines"]}}]}
    assert any("warnings" in e for e in rp.validation_errors(bad))
