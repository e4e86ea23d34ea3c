"""dfscan.scanner.faces: the MediaPipe detector on the shared real media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dfscan.core.errors import InputError
from dfscan.scanner.faces import (
    KEYPOINT_NAMES,
    MIN_TILE,
    TILE_OVERLAP,
    Detection,
    FaceDetector,
    _cut_by_tile,
    merge_detections,
    reach,
    tile_grid,
    tile_size,
)
from dfscan.scanner.media import iter_frames

MEDIA = Path(__file__).parent / "data" / "media"


def image(name: str) -> np.ndarray:
    (frame,) = list(iter_frames(MEDIA / "images" / name))
    return frame.image


def test_multi_face_gives_five_faces(detector):
    img = image("multi_face.jpg")
    h, w = img.shape[:2]
    faces = detector.detect(img)
    assert len(faces) == 5
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    centres = []
    for f in faces:
        x, y, bw, bh = f.box
        assert 0.5 <= f.score <= 1.0
        assert bw > 20 and bh > 20 and -bw < x < w and -bh < y < h
        assert f.keypoints.shape == (len(KEYPOINT_NAMES), 2) and np.isfinite(f.keypoints).all()
        eyes, nose, mouth = f.keypoints[:2], f.keypoints[2], f.keypoints[3]
        # keypoints sit inside their box, in face order: subject's right eye on the image left
        assert (f.keypoints[:4, 0] > x - 0.1 * bw).all() and (f.keypoints[:4, 0] < x + 1.1 * bw).all()
        assert eyes[0, 0] < eyes[1, 0] and eyes[:, 1].mean() < nose[1] < mouth[1]
        centres.append((x + bw / 2, y + bh / 2))
    c = np.array(centres)
    assert min(np.linalg.norm(c[i] - c[j]) for i in range(5) for j in range(i)) > 30  # five different people


def test_single_face_images(detector):
    for name in ("single_face.jpg", "astronaut.png", "0-f1-su-ph.jpg"):
        faces = detector.detect(image(name))
        assert len(faces) == 1, name
        assert faces[0].score > 0.8


def test_short_range_model_on_a_close_up():
    with FaceDetector(model="short") as d:
        assert d.model == "short"
        faces = d.detect(image("single_face.jpg"))
    assert len(faces) == 1


WORKER_START = """
import sys
from dfscan.scanner.options import ScanOptions
from dfscan.scanner.stage import CropSink, StageConfig, close_detector, open_detector, process_file
import dfscan.scanner.worker

stage = StageConfig.of(ScanOptions(), 128, 32)
detector = open_detector(stage)
payload = process_file(sys.argv[1], "video", detector, stage, CropSink(32, lambda first, crops: None))
close_detector(detector)
print("subjects:", len(payload["subjects"]))
print("heavy:", sorted(m for m in ("matplotlib", "sounddevice", "mediapipe", "scipy", "torch") if m in sys.modules))
import mediapipe as mp  # a user's own import afterwards gets the whole package
from mediapipe.tasks.python import vision
import numpy as np
from dfscan.scanner.faces import FaceDetector
with FaceDetector() as d:
    print("full:", callable(mp.Image), hasattr(vision, "FaceLandmarker"), d.detect(np.zeros((64, 64, 3), np.uint8)) == [])
"""


def test_a_scan_worker_loads_only_what_it_uses():
    """A worker's start-up is paid by every scan: no matplotlib and the audio tasks that `import
    mediapipe` pulls in (0.40 s), no scipy.optimize (0.29 s), no torch (1.6 s)."""
    out = run_python(WORKER_START, str(MEDIA / "videos" / "WolfgangLanger_Pexels.mp4"))
    assert "subjects: 1" in out
    assert "heavy: []" in out
    assert "full: True True True" in out


FALLBACK = """
import sys
import numpy as np
import dfscan.scanner.faces as faces
faces._MP_MODULES = {**faces._MP_MODULES, "FaceDetector": ("mediapipe.tasks.python.vision.no_such_module", "X")}
with faces.FaceDetector() as d:
    print("found:", len(d.detect(np.zeros((64, 64, 3), np.uint8))), type(d._detector).__module__)
print("whole package:", callable(sys.modules["mediapipe"].Image))
"""


def test_a_mediapipe_laid_out_otherwise_is_imported_whole():
    out = run_python(FALLBACK)
    assert "found: 0 mediapipe.tasks.python.vision.face_detector" in out
    assert "whole package: True" in out


def run_python(code: str, *args: str) -> str:
    """stdout of `python -c code args` in the repository root; its stderr in the failure message."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=180,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_no_face_video_gives_no_confident_detection(detector):
    """MediaPipe fires weakly (0.5-0.6) on clouds here; real faces score > 0.8 (the tracker's cut is 0.7)."""
    scores = []
    n = 0
    for frame in iter_frames(MEDIA / "videos" / "no_face.mp4", frames=32):
        scores += [d.score for d in detector.detect(frame.image)]
        n += 1
    assert n == 32
    assert max(scores, default=0.0) < 0.7
    assert len(scores) < n // 2


def test_detects_in_row_padded_frames(detector):
    """A non-contiguous view (as PyAV can hand out) must be read as the picture it shows."""
    img = image("single_face.jpg")
    h, w = img.shape[:2]
    padded = np.zeros((h, w + 7, 3), np.uint8)
    padded[:, :w] = img
    view = padded[:, :w]
    assert not view.flags["C_CONTIGUOUS"]
    a, b = detector.detect(img), detector.detect(view)
    assert len(a) == len(b) == 1
    np.testing.assert_allclose(a[0].box, b[0].box, atol=1)


def test_bad_image_and_options(detector):
    with pytest.raises(InputError):
        detector.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError):
        detector.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(InputError):
        FaceDetector(model="huge")
    with pytest.raises(InputError):
        FaceDetector(min_score=1.5)
    d = FaceDetector()
    d.close()
    d.close()  # idempotent
    with pytest.raises(RuntimeError):
        d.detect(image("single_face.jpg"))


# ---------------------------------------------------------------- tiled small-face detection

def shrunk_on_canvas(img: np.ndarray, factor: int, origin: tuple[int, int], size=(1080, 1920)) -> np.ndarray:
    """`img` shrunk `factor` x (INTER_AREA) and pasted at `origin` (x, y) on a black canvas."""
    import cv2

    small = cv2.resize(img, (img.shape[1] // factor, img.shape[0] // factor), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((*size, 3), np.uint8)
    x, y = origin
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def near(box, x: float, y: float) -> bool:
    bx, by, bw, bh = box
    return bx <= x <= bx + bw and by <= y <= by + bh


def test_tile_size_follows_the_frame_size():
    # the whole-frame pass finds faces from longer/12 up: tiles only where they at least halve that
    assert tile_size(1920, 1080) == 768 and tile_size(1080, 1920) == 768  # 3 across the longer side
    assert tile_size(1280, 720) == MIN_TILE
    assert tile_size(3840, 2160) == 1536
    assert tile_size(960, 540) is None and tile_size(1000, 667) is None
    assert tile_size(1920, 1080, "short") is None
    for w, h in ((1280, 720), (1920, 1080), (1920, 1350), (3840, 2160), (7680, 4320)):
        side = tile_size(w, h)
        # a face the whole-frame pass can miss fits whole in the overlap of two tiles
        assert side * TILE_OVERLAP >= reach(max(w, h))


@pytest.mark.parametrize("w,h,side", [(1920, 1080, 768), (1920, 1350, 768), (1280, 720, 640), (1000, 300, 640)])
def test_tile_grid_covers_the_frame_with_overlap(w, h, side):
    tiles = tile_grid(w, h, side)
    covered = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert x1 - x0 == min(side, w) and y1 - y0 == min(side, h)  # square unless the frame is smaller
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs, ys = sorted({t[0] for t in tiles}), sorted({t[1] for t in tiles})
    for starts in (xs, ys):
        assert all(b - a <= side * (1 - TILE_OVERLAP) for a, b in zip(starts, starts[1:]))
    with pytest.raises(InputError):
        tile_grid(w, h, 0)


def fake(box, score=0.9) -> Detection:
    x, y, w, h = box
    return Detection(box, np.array([[x + w * 0.3, y + h * 0.4]] * 6, np.float32), score)


def test_merge_keeps_one_box_per_face():
    whole = fake((100, 100, 50, 50), 0.8)
    part = fake((100, 100, 25, 50), 0.9)  # the left half, cut by a tile edge: IoU 0.5, inside the whole
    shifted = fake((103, 98, 50, 50), 0.7)  # the same face seen by the neighbouring tile
    neighbour = fake((160, 100, 50, 50), 0.6)  # another face, touching
    kept = merge_detections([shifted, whole, neighbour, part])
    assert [d.score for d in kept] == [0.9, 0.6]  # best first, one box per face
    assert merge_detections([whole, shifted, neighbour]) == [whole, neighbour]


def test_a_box_crossing_an_inner_tile_edge_is_cut():
    tile = (576, 0, 1344, 768)  # inner edges left and right, the frame's top edge above
    assert _cut_by_tile(fake((-10, 100, 50, 50)), tile, 1920, 1080)  # over the left edge
    assert _cut_by_tile(fake((740, 100, 50, 50)), tile, 1920, 1080)  # over the right edge
    assert _cut_by_tile(fake((300, 740, 50, 50)), tile, 1920, 1080)  # over the bottom edge (row 2 below)
    assert not _cut_by_tile(fake((300, -10, 50, 50)), tile, 1920, 1080)  # over the frame's own border
    assert not _cut_by_tile(fake((10, 10, 50, 50)), tile, 1920, 1080)


@pytest.fixture(scope="module")
def small_face_canvas():
    """single_face.jpg shrunk 4x (a ~55 px face) on 1920x1080, inside the overlap of the first two tiles."""
    return shrunk_on_canvas(image("single_face.jpg"), 4, (590, 60))


def test_tiled_boxes_are_in_frame_coordinates(detector, small_face_canvas):
    canvas = small_face_canvas
    assert detector.detect(canvas) == []  # too small for the whole-frame pass
    (face,) = detector.detect_tiled(canvas)
    x0, y0 = 560, 40  # a crop of the frame where the face is large enough to be found directly
    (direct,) = detector.detect(canvas[y0:y0 + 180, x0:x0 + 180])
    expected = np.array(direct.box) + (x0, y0, 0, 0)
    np.testing.assert_allclose(face.box, expected, atol=0.1 * expected[2])
    np.testing.assert_allclose(face.keypoints, direct.keypoints + (x0, y0), atol=0.1 * expected[2])
    assert face.score >= 0.65


def test_a_face_in_a_tile_overlap_is_reported_once(detector, small_face_canvas):
    canvas = small_face_canvas
    side = tile_size(1920, 1080)
    first, second = tile_grid(1920, 1080, side)[:2]
    assert second[0] < 590 and 590 + 143 < first[2]  # the photo lies whole in both tiles
    loose = FaceDetector(tile_score=0.3)
    try:
        loose_pass = FaceDetector(min_score=0.3)
        seen = [loose_pass.detect(canvas[t[1]:t[3], t[0]:t[2]]) for t in (first, second)]
        loose_pass.close()
        assert all(len(s) == 1 for s in seen)  # each tile finds it: two candidates...
        assert len(loose.detect_tiled(canvas, side)) == 1  # ...one face
    finally:
        loose.close()


def test_tiles_find_the_faces_of_a_shrunk_group_photo(detector):
    photo = image("group_sample4.jpg")  # 1920x1448, four faces of 168-201 px
    truth = [d.box for d in detector.detect(photo)]
    assert len(truth) == 4
    canvas = shrunk_on_canvas(photo, 4, (720, 543), size=photo.shape[:2])  # centred: faces 42-50 px
    centres = [(720 + (x + w / 2) / 4, 543 + (y + h / 2) / 4) for x, y, w, h in truth]
    plain, tiled = detector.detect(canvas), detector.detect_tiled(canvas)
    assert sum(any(near(d.box, *c) for d in plain) for c in centres) <= 1
    assert sum(any(near(d.box, *c) for d in tiled) for c in centres) >= 3
    assert all(any(near(d.box, *c) for c in centres) for d in tiled)  # nothing but faces


def test_tiles_add_nothing_on_frames_without_faces(detector):
    """Clouds (no_face.mp4) make MediaPipe fire weakly; tile candidates must not survive confirmation."""
    assert detector.detect_tiled(np.zeros((1080, 1920, 3), np.uint8)) == []
    for frame in iter_frames(MEDIA / "videos" / "no_face.mp4", frames=6):
        plain = detector.detect(frame.image)
        tiled = detector.detect_tiled(frame.image, 320)  # 8 tiles on 960x540
        assert [d.box for d in tiled] == [d.box for d in plain]


def test_detect_sampled_tiles_every_kth_large_frame(detector, small_face_canvas):
    canvas = small_face_canvas
    for pos, expect in ((0, 1), (3, 0), (4, 1)):
        dets, searched = detector.detect_sampled(canvas, pos, 4)
        assert len(dets) == expect
        assert searched == (0.0 if expect else reach(1920))  # plain frames did not look for it
    assert detector.detect_sampled(canvas, 0, 0) == ([], 0.0)  # 0: never
    small = image("single_face.jpg")  # too small to tile: plain pass, every size searched
    dets, searched = detector.detect_sampled(small, 0, 4)
    assert len(dets) == 1 and searched == 0.0


@pytest.mark.parametrize("detect_every", [1, 2])
def test_scan_step_tracks_small_faces_of_a_video_across_plain_frames(tmp_path, detector, detect_every):
    """process_file on a 1080p pan over the shrunk group photo: subjects only with tiles (tiled
    frames are never skipped, so detection skipping keeps them)."""
    import av

    from dfscan.scanner.stage import CropSink, StageConfig, process_file

    canvas = shrunk_on_canvas(image("group_sample4.jpg"), 4, (720, 359))
    path = tmp_path / "crowd.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        for i in range(16):
            frame = np.roll(canvas, 2 * i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    subjects = {}
    for every in (0, 5):  # 5: four plain frames between tiled ones, more than the tracker's max_gap (3)
        cfg = StageConfig(frames=16, fps=None, keyframes=False, crops=False, face_model="full",
                            min_face_score=0.5, size=64, tile_every=every, detect_every=detect_every)
        sink = CropSink(64, lambda first, crops: None)
        subjects[every] = process_file(str(path), "video", detector, cfg, sink)["subjects"]
    assert subjects[0] == []
    assert len(subjects[5]) >= 3
    for s in subjects[5]:
        assert len(s["frames"]) >= 3  # joined across the plain frames between tiled ones
