"""dfscan.scanner.media: input collection, probing, frame sampling, rotation, memory bounds, error codes.

Synthetic clips are encoded with PyAV (libx264, lossless) with each frame's index written into
its grey level, so a test can tell from the decoded pixels which frame it got.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest

from dfscan.core.errors import InputError
from dfscan.scanner import media
from dfscan.scanner.media import MediaError, collect_inputs, iter_frames, probe, sample_indices
from tests.helpers import FACE_CLIP, IMAGES, VIDEOS, damage_packets, face_frame, two_stream_mkv

PEXELS = VIDEOS / "WolfgangLanger_Pexels.mp4"


def grey(i: int) -> int:
    return 10 + 3 * i


def make_video(path: Path, n: int = 80, size: tuple[int, int] = (64, 48), rate: int = 25,
               gop: int | None = None, fill=None) -> Path:
    """A lossless H.264 clip whose frame i is flat grey(i) (or fill(i) -> RGB array)."""
    opts = {"qp": "0", "preset": "ultrafast"}
    if gop:
        opts.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=rate, options=opts)
        s.width, s.height = size
        s.pix_fmt = "yuv420p"
        for i in range(n):
            img = fill(i) if fill else np.full((size[1], size[0], 3), grey(i), np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def decoded_index(image: np.ndarray) -> int:
    """Which synthetic frame this is, from its grey level (3 levels apart; codec error ~1)."""
    v = float(image.mean())
    i = int(round((v - 10) / 3))
    assert abs(v - grey(i)) < 1.5, v
    return i


# ---------------------------------------------------------------------------------------------
# sampling


def test_default_samples_32_evenly_spaced_frames(tmp_path):
    clip = make_video(tmp_path / "c.mp4", n=80)
    frames = list(iter_frames(clip))
    assert [f.index for f in frames] == sample_indices(80, 32)
    assert len(frames) == 32
    assert frames[0].index == 0 and frames[-1].index == 79
    for f in frames:  # the pixels really are the frame the index names
        assert decoded_index(f.image) == f.index
        assert f.t == pytest.approx(f.index / 25, abs=1e-6)
        assert f.image.dtype == np.uint8 and f.image.flags["C_CONTIGUOUS"] and f.image.shape == (48, 64, 3)
    gaps = np.diff([f.index for f in frames])
    assert gaps.min() >= 2 and gaps.max() <= 3


def test_frames_n_and_short_clips(tmp_path):
    clip = make_video(tmp_path / "c.mp4", n=10)
    assert [f.index for f in iter_frames(clip, frames=4)] == [0, 3, 6, 9]
    assert [decoded_index(f.image) for f in iter_frames(clip)] == list(range(10))  # fewer than 32
    assert sample_indices(0, 32) == [] and sample_indices(5, 0) == []


def test_fps_sampling(tmp_path):
    clip = make_video(tmp_path / "c.mp4", n=80, rate=25)
    frames = list(iter_frames(clip, fps=5))
    assert [f.index for f in frames] == list(range(0, 80, 5))
    assert [decoded_index(f.image) for f in frames] == list(range(0, 80, 5))
    assert [round(f.t, 3) for f in frames] == [round(i / 25, 3) for i in range(0, 80, 5)]
    with pytest.raises(InputError):
        next(iter_frames(clip, fps=0))


def test_keyframes_only(tmp_path):
    clip = make_video(tmp_path / "k.mp4", n=80, gop=10)
    frames = list(iter_frames(clip, keyframes=True))
    assert [decoded_index(f.image) for f in frames] == list(range(0, 80, 10))
    assert [f.index for f in frames] == list(range(0, 80, 10))


def test_image_yields_one_frame_and_exif_rotation(tmp_path):
    from PIL import Image

    src = IMAGES / "single_face.jpg"
    (frame,) = list(iter_frames(src))
    assert frame.index == 0 and frame.t == 0.0 and frame.image.shape[2] == 3
    # store the photo sideways with EXIF orientation 6 ("rotate 90 CW to display")
    img = Image.open(src)
    exif = Image.Exif()
    exif[0x0112] = 6
    img.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "side.jpg", exif=exif, quality=95)
    info = probe(tmp_path / "side.jpg")
    assert (info.width, info.height) == img.size and info.rotation != 0
    (upright,) = list(iter_frames(tmp_path / "side.jpg"))
    assert upright.image.shape[:2] == frame.image.shape[:2]
    assert np.abs(upright.image.astype(float) - frame.image).mean() < 6


def test_probe_real_clip():
    info = probe(PEXELS)
    assert (info.width, info.height) == (640, 360)
    assert info.codec == "h264" and info.rotation == 0
    assert 19 < info.duration < 20.5 and info.fps > 20 and info.frames_total > 400


# ---------------------------------------------------------------------------------------------
# rotation metadata


def _set_display_matrix(path: Path, a: int, b: int, c: int, d: int) -> None:
    """Write the track header (tkhd) matrix of an MP4, as a phone does for portrait video."""
    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    version = data[i + 4]
    off = i + 8 + (20 if version == 0 else 32) + 16  # times/ids, then reserved/layer/group/volume
    one = 0x10000
    data[off:off + 36] = struct.pack(">9i", a * one, b * one, 0, c * one, d * one, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))


def _rotated_copy(tmp_path: Path, n: int = 8) -> tuple[Path, list[np.ndarray]]:
    """The Pexels clip re-encoded stored sideways (head to the left) + an iPhone portrait matrix."""
    originals = []
    with av.open(str(PEXELS)) as inp, av.open(str(tmp_path / "rot.mp4"), "w") as out:
        s = out.add_stream("libx264", rate=5, options={"crf": "12", "preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 360, 640, "yuv420p"
        for i, f in enumerate(inp.decode(video=0)):
            if i % 50:
                continue
            rgb = f.to_ndarray(format="rgb24")
            originals.append(np.ascontiguousarray(rgb))
            sideways = np.ascontiguousarray(np.rot90(rgb, 1))
            for p in s.encode(av.VideoFrame.from_ndarray(sideways, format="rgb24")):
                out.mux(p)
            if len(originals) == n:
                break
        for p in s.encode():
            out.mux(p)
    path = tmp_path / "rot.mp4"
    _set_display_matrix(path, 0, 1, -1, 0)  # display = stored rotated 90 degrees clockwise
    return path, originals


def test_rotation_metadata_is_honoured(tmp_path):
    from dfscan.scanner.faces import FaceDetector

    path, originals = _rotated_copy(tmp_path)
    info = probe(path)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (640, 360)  # displayed (upright) size
    frames = list(iter_frames(path, frames=len(originals)))
    assert len(frames) == len(originals)
    with FaceDetector() as det:
        upright = 0
        for f, orig in zip(frames, originals):
            assert f.image.shape == (360, 640, 3) and f.image.flags["C_CONTIGUOUS"]
            # the same picture as the source frame, not a 180-degree or mirrored version
            assert np.abs(f.image.astype(float) - orig).mean() < 6
            faces = det.detect(f.image)
            if faces:
                kp = faces[0].keypoints
                eyes_y = kp[:2, 1].mean()
                dx, dy = kp[1] - kp[0]
                upright += int(kp[2, 1] > eyes_y and kp[3, 1] > kp[2, 1] and abs(np.degrees(np.arctan2(dy, dx))) < 20)
        assert upright >= len(frames) - 1


# ---------------------------------------------------------------------------------------------
# memory


def test_only_sampled_frames_are_converted(tmp_path, monkeypatch):
    clip = make_video(tmp_path / "c.mp4", n=60)
    calls = []
    real = media._to_rgb
    monkeypatch.setattr(media, "_to_rgb", lambda fr: calls.append(1) or real(fr))
    frames = list(iter_frames(clip, frames=5))
    assert len(frames) == 5 and len(calls) == 5


_RSS_SCRIPT = """
import resource, sys, weakref
from dfscan.scanner.media import iter_frames
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
previous, alive, n = None, 0, 0
for f in iter_frames(sys.argv[1], frames=int(sys.argv[2])):
    alive += previous is not None and previous() is not None  # the generator kept the last one?
    previous = weakref.ref(f.image)
    n += 1
    del f
print(n, alive, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_large_resolution_memory_stays_bounded(tmp_path):
    """A 4K clip with every frame sampled: memory grows by a few frames, not by the clip.

    Measured in a fresh process (peak RSS is per process): 48 RGB 4K frames are 1.2 GB if
    kept; decoding one at a time costs the decoder's frame pool (~0.2 GB) and one RGB frame.
    """
    import subprocess
    import sys

    w, h, n = 3840, 2160, 48
    clip = make_video(tmp_path / "4k.mp4", n=n, size=(w, h))
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(clip), str(n)], capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    count, alive, grown = int(out[0]), int(out[1]), int(out[2])
    assert count == n and alive == 0
    assert grown < 0.4 * n * w * h * 3, f"peak RSS grew {grown / 1e6:.0f} MB"


def test_frames_are_not_kept_between_yields(tmp_path):
    import weakref

    clip = make_video(tmp_path / "c.mp4", n=30)
    refs = []
    for f in iter_frames(clip, frames=10):
        refs.append(weakref.ref(f.image))
        del f
        assert all(r() is None for r in refs[:-1])
    assert len(refs) == 10


# ---------------------------------------------------------------------------------------------
# collecting inputs


def test_collect_inputs_walks_and_skips(tmp_path):
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.mp4").write_bytes(b"x")
    (root / "sub" / "b.JPG").write_bytes(b"x")
    (root / "sub" / "deeper" / "c.webm").write_bytes(b"x")
    (root / "notes.txt").write_text("n")
    (root / ".hidden.mp4").write_bytes(b"x")
    (root / "x.mp4").mkdir()  # a folder named like a video
    (root / "x.mp4" / "inside.mp4").write_bytes(b"x")
    os.symlink(root, root / "sub" / "loop")  # symlinked folder loop
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.mp4").write_bytes(b"x")
    os.symlink(outside, root / "out")  # symlinked folder out of the tree
    os.symlink(root / "a.mp4", root / "same.mp4")  # the same file twice
    os.symlink(tmp_path / "gone.mp4", root / "broken.mp4")

    files, skipped = collect_inputs([root])
    names = sorted(p.relative_to(root).as_posix() for p in files)
    assert names == ["a.mp4", "sub/b.JPG", "sub/deeper/c.webm", "x.mp4"]
    reasons = {p.relative_to(root).as_posix(): r for p, r in skipped}
    assert "symlinked folder" in reasons["out"] and "symlinked folder" in reasons["sub/loop"]
    assert "already listed" in reasons["same.mp4"]
    assert "broken symlink" in reasons["broken.mp4"]
    assert ".txt" in reasons["notes.txt"]
    assert not any("hidden" in k or "inside" in k or "o.mp4" in k for k in reasons)

    # explicit files and folders, in the order given; a missing path is a usage error
    files, _ = collect_inputs([root / "sub" / "b.JPG", str(root / "x.mp4")])
    assert files == [root / "sub" / "b.JPG", root / "x.mp4"]
    with pytest.raises(InputError, match="no such file"):
        collect_inputs([tmp_path / "nope"])


# ---------------------------------------------------------------------------------------------
# broken inputs: one error code each, never a crash


def _png_claiming(path: Path, w: int, h: int) -> Path:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    return path


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=16000)
        s.layout = "mono"
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    d = tmp_path_factory.mktemp("broken")
    (d / "zero.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    (d / "text.mov").write_text("this is not a video\n" * 40)
    data = PEXELS.read_bytes()  # moov at the start: the index points past the cut
    (d / "cut_head.mp4").write_bytes(data[: len(data) // 2])
    tail = make_video(d / "tail_src.mp4", n=30).read_bytes()  # PyAV writes moov at the end
    (d / "cut_tail.mp4").write_bytes(tail[: len(tail) // 2])
    (d / "x.mp4").mkdir()
    return {
        "zero": (d / "zero.mp4", "empty_file"),
        "random": (d / "random.mp4", "not_media"),
        "text": (d / "text.mov", "not_media"),
        "cut_head": (d / "cut_head.mp4", "truncated"),
        "cut_tail": (d / "cut_tail.mp4", "truncated"),
        "huge_png": (_png_claiming(d / "huge.png", 100_000, 100_000), "too_large"),
        "big_png": (_png_claiming(d / "big.png", 12_000, 12_000), "too_large"),  # under PIL's bomb limit
        "audio": (_audio_only(d / "audio.mp4"), "no_video_stream"),
        "folder": (d / "x.mp4", "is_directory"),
    }


@pytest.mark.parametrize("name", ["zero", "random", "text", "cut_head", "cut_tail", "huge_png",
                                  "big_png", "audio", "folder"])
def test_broken_input_error_codes(broken, name):
    path, code = broken[name]
    for action in (probe, lambda p: list(iter_frames(p))):
        with pytest.raises(MediaError) as info:
            action(path)
        assert info.value.code == code, str(info.value)
        assert isinstance(info.value, InputError)
        message = str(info.value)
        assert "\n" not in message and path.name in message


def test_truncated_keeps_nothing_silently(tmp_path):
    """A clip cut mid-stream with its index intact at the start is an error, not 'fewer frames'."""
    src = make_video(tmp_path / "s.mp4", n=40)
    # move moov to the front by remuxing with faststart, then cut
    fast = tmp_path / "fast.mp4"
    with av.open(str(src)) as inp, av.open(str(fast), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream_from_template(inp.streams.video[0])
        for p in inp.demux(inp.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                out.mux(p)
    data = fast.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(MediaError) as info:
        list(iter_frames(cut))
    assert info.value.code == "truncated"


def test_edit_list_clip_still_gives_32_frames():
    """no_face.mp4 counts 98 frames in its header, 3 of them pre-roll the decoder never outputs."""
    clip = VIDEOS / "no_face.mp4"
    with av.open(str(clip)) as c:
        header = c.streams.video[0].frames
        decoded = sum(1 for _ in c.decode(video=0))
    assert header > decoded  # the situation this guards against
    assert probe(clip).frames_total == decoded
    indices = [f.index for f in iter_frames(clip, frames=32)]
    assert len(indices) == 32 and indices == sample_indices(decoded, 32)


# ---------------------------------------------------------------------------------------------
# damaged streams and odd media (issue 11)


def _packet_frames(path: Path) -> list[int]:
    """The frame number (pts at 30 fps) each packet holds, in decode order."""
    with av.open(str(path)) as c:
        return [round(p.pts * p.time_base * 30) for p in c.demux(c.streams.video[0]) if p.size > 0]


def _expected_sampling(positions: list[int], decodable: list[int], end: int) -> list[list[int]]:
    """Per sampled position, the frame it should get: the first decodable one in its stretch up
    to the next position (none: an undecodable position)."""
    stretches = zip(positions, positions[1:] + [end])
    return [[i for i in sorted(decodable) if a <= i < b][:1] for a, b in stretches]


@pytest.mark.parametrize("damage, damaged", [
    ("packet 10", False),  # issue 11.1: used to end sampling at 0.23 s with 4 frames
    ("every other packet", False),  # a position whose frame is lost takes a neighbour
    ("packets 10 on", True),  # most positions gone: said, not a silent verdict
])
def test_damaged_packets_are_skipped_not_the_end(tmp_path, damage, damaged):
    which = {"packet 10": lambda i: i == 10, "every other packet": lambda i: i % 2 == 1,
             "packets 10 on": lambda i: i >= 10}[damage]
    clip = damage_packets(FACE_CLIP, tmp_path / "dmg.mp4", which)
    decodable = [f for i, f in enumerate(_packet_frames(FACE_CLIP)) if not which(i)]
    stats = media.SampleStats()
    frames = list(iter_frames(clip, frames=32, stats=stats))
    expected = _expected_sampling(sample_indices(72, 32), decodable, 72)
    assert [f.index for f in frames] == [i for e in expected for i in e]
    assert [f.t for f in frames] == pytest.approx([f.index / 30 for f in frames])
    assert stats.decode_errors == sum(not e for e in expected) and stats.sampled == len(frames)
    assert stats.damaged is damaged
    if damage == "packet 10":
        assert len(frames) == 32 and frames[-1].t > 2.3 and stats.decode_errors == 0
    if damage == "packets 10 on":
        assert stats.decode_errors > 16 and all(f.t < 0.5 for f in frames)
        # --fps 5: only the 0.2 s slots holding a decodable frame are sampled, the rest are lost
        stats = media.SampleStats()
        slots = {i * 5 // 30 for i in decodable}
        assert [f.index * 5 // 30 for f in iter_frames(clip, fps=5, stats=stats)] == sorted(slots)
        assert stats.decode_errors == 12 - len(slots) and stats.damaged


class _FailingDemux:
    """An opened container whose demuxer fails on reaching frames `bad` (a damaged container)."""

    def __init__(self, container, bad: range, rate: int = 25):
        self._c, self._bad, self._rate, self.seeks = container, bad, rate, 0

    def __getattr__(self, name):
        return getattr(self._c, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._c.__exit__(*exc)

    def seek(self, *args, **kwargs):
        self.seeks += 1
        return self._c.seek(*args, **kwargs)

    def demux(self, *args, **kwargs):
        for packet in self._c.demux(*args, **kwargs):
            if packet.pts is not None and round(packet.pts * packet.time_base * self._rate) in self._bad:
                raise av.error.InvalidDataError(-1094995529, "Invalid data found when processing input")
            yield packet


def test_demuxer_failure_seeks_past_the_damage(tmp_path, monkeypatch):
    """A container the demuxer cannot read past frame 20: seek on to the next readable key frame."""
    clip = make_video(tmp_path / "c.mp4", n=80, gop=10)
    real = media._open_container
    opened = []

    def failing(path):
        opened.append(_FailingDemux(real(path), bad=range(20, 27)))
        return opened[-1]

    monkeypatch.setattr(media, "_open_container", failing)
    stats = media.SampleStats()
    frames = list(iter_frames(clip, frames=40, stats=stats))
    assert max(c.seeks for c in opened) == 2  # the next key frame (20) is damaged too: on to 30
    # frames 20-29 are lost (up to the next key frame); a position takes the first frame left in
    # its stretch up to the next position, and is an error when there is none
    positions = sample_indices(80, 40)
    decodable = [i for i in range(80) if not 20 <= i < 30]
    stretches = zip(positions, positions[1:] + [80])
    expected = [[i for i in decodable if a <= i < b][:1] for a, b in stretches]
    assert [f.index for f in frames] == [i for e in expected for i in e]
    assert stats.decode_errors == sum(not e for e in expected) == 5 and not stats.damaged  # 20 22 24 26 28
    for f in frames:
        assert decoded_index(f.image) == f.index  # indices after the seek still name the right frame


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    """Issue 11.5: an I;16 PNG became almost all white (values clipped at 255) and had no face."""
    from PIL import Image

    from dfscan.scanner.faces import FaceDetector

    grey8 = np.asarray(Image.fromarray(face_frame()).convert("L"))
    Image.fromarray(grey8).save(tmp_path / "g8.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    (f8,) = list(iter_frames(tmp_path / "g8.png"))
    (f16,) = list(iter_frames(tmp_path / "g16.png"))
    assert f16.image.dtype == np.uint8 and f16.image.shape == f8.image.shape
    assert np.abs(f16.image.astype(int) - f8.image).max() <= 1
    with FaceDetector() as det:
        assert len(det.detect(f8.image)) == 1 and len(det.detect(f16.image)) == 1


def test_largest_video_stream_is_scanned(tmp_path):
    """Issue 11.5: a small faceless first stream hid the face in the second (as ffmpeg picks: the largest)."""
    from dfscan.scanner.faces import FaceDetector

    path = two_stream_mkv(tmp_path / "two.mkv")
    info = probe(path)
    assert (info.width, info.height, info.stream_index) == (640, 360, 1)
    assert info.frames_total == 20 and info.duration == pytest.approx(20 / 30, abs=0.01)
    stats = media.SampleStats()
    frames = list(iter_frames(path, frames=4, stats=stats))
    assert stats.stream_index == 1 and len(frames) == 4
    with FaceDetector() as det:
        assert all(f.image.shape == (360, 640, 3) and det.detect(f.image) for f in frames)


def test_animated_webp_is_sampled_like_a_video(tmp_path):
    """Issue 11.5: only the first frame of an animated WebP was scanned."""
    from PIL import Image

    pictures = [Image.fromarray(np.full((48, 64, 3), grey(i), np.uint8)) for i in range(12)]
    path = tmp_path / "anim.webp"
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=200, loop=0, lossless=True)
    info = probe(path)
    assert info.frames_total == 12 and info.duration == pytest.approx(2.4) and info.fps == pytest.approx(5.0)
    frames = list(iter_frames(path, frames=4))
    assert [f.index for f in frames] == [0, 4, 7, 11] == [decoded_index(f.image) for f in frames]
    assert [f.t for f in frames] == pytest.approx([0.0, 0.8, 1.4, 2.2])
    assert [f.index for f in iter_frames(path, fps=2.5)] == [0, 2, 4, 6, 8, 10]
    assert len(list(iter_frames(path))) == 12 and all(f.image.shape == (48, 64, 3) for f in iter_frames(path))


def test_duration_of_a_stream_starting_late(tmp_path):
    """Issue 11.6: a 2.4 s MKV starting at t = 1e6 s was reported as 1,000,002.4 s long."""
    from fractions import Fraction

    path = tmp_path / "late.mkv"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25, options={"qp": "0", "preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(60):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), grey(i), np.uint8), format="rgb24")
            f.pts, f.time_base = 25_000_000 + i, Fraction(1, 25)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    with av.open(str(path)) as c:
        assert c.start_time / av.time_base == pytest.approx(1e6)  # the situation this guards against
    info = probe(path)
    assert info.duration == pytest.approx(2.4, abs=0.05) and info.frames_total == 60
    frames = list(iter_frames(path, frames=4))
    assert [f.index for f in frames] == [0, 20, 39, 59] == [decoded_index(f.image) for f in frames]


def test_image_and_video_rotation_use_one_convention(tmp_path):
    """Issue 11.6: EXIF orientation 6 was -90 while the same sideways storage in a video is 270."""
    from PIL import Image

    video, _ = _rotated_copy(tmp_path, n=2)  # stored rotated 90 degrees counter-clockwise
    img = Image.open(IMAGES / "single_face.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    img.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "side.jpg", exif=exif)  # the same storage
    assert probe(tmp_path / "side.jpg").rotation == probe(video).rotation == 270
    exif[0x0112] = 8
    img.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "other.jpg", exif=exif)
    assert probe(tmp_path / "other.jpg").rotation == 90
