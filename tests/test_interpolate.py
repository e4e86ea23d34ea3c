"""Detection skipping: which frames skip, interpolation between detections, and the stage on real video."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.faces import Detection, FaceDetector
from scanner.interpolate import between, match, skipped
from scanner.stage import CropSink, StageConfig, process_file
from scanner.track import _iou
from tests.helpers import VIDEOS


def det(x: float, y: float = 100.0, size: float = 40.0, score: float = 0.9) -> Detection:
    kp = np.array([[x + 10, y + 15], [x + 30, y + 15], [x + 20, y + 25], [x + 20, y + 32], [x, y + 18], [x + 40, y + 18]],
                  np.float32)
    return Detection((x, y, size, size), kp, score)


def test_skip_schedule_keeps_tiled_frames():
    assert [p for p in range(10) if skipped(p, 2, 8)] == [1, 3, 5, 7, 9]
    assert [p for p in range(10) if skipped(p, 3, 8)] == [1, 2, 4, 5, 7]  # 8 is tiled: detected
    assert [p for p in range(10) if skipped(p, 3, 0)] == [1, 2, 4, 5, 7, 8]
    assert not any(skipped(p, 1, 8) for p in range(10))


def test_between_is_linear_in_box_and_keypoints():
    a, b = det(100.0, score=0.9), det(120.0, y=110.0, score=0.8)
    mid = between(a, b, 0.5)
    assert mid.box == (110.0, 105.0, 40.0, 40.0)
    np.testing.assert_allclose(mid.keypoints, (a.keypoints + b.keypoints) / 2)
    assert mid.score == pytest.approx(0.8)
    assert between(a, b, 0.0).box == a.box


def test_match_pairs_the_same_face_only():
    near, far = det(100.0), det(900.0)
    moved = det(110.0)
    assert match([near, far], [moved], 2) == [(near, moved)]  # the far face left: nothing to place between
    assert match([near], [], 2) == [] and match([], [moved], 2) == []


class CountingDetector:
    """The real detector, counting the frames it is asked to search."""

    def __init__(self, detector: FaceDetector):
        self.detector, self.calls = detector, 0

    def detect_sampled(self, image, pos, tile_every):
        self.calls += 1
        return self.detector.detect_sampled(image, pos, tile_every)


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as d:
        yield d


def scan_file(name: str, detector: FaceDetector, every: int) -> tuple[dict, int, int]:
    counting = CountingDetector(detector)
    cfg = StageConfig(frames=32, fps=None, keyframes=False, crops=False, face_model="full", min_face_score=0.5,
                      size=64, tile_every=8, detect_every=every)
    crops = []
    payload = process_file(str(VIDEOS / name), "video", counting, cfg, CropSink(8, lambda first, c: crops.append(c)))
    assert sum(len(c) for c in crops) == payload["crops"]
    return payload, counting.calls, payload["crops"]


def frames_of(payload: dict) -> dict[int, list[float]]:
    return {f["index"]: f["box"] for s in payload["subjects"] for f in s["frames"]}


def test_real_video_detects_half_the_frames_and_keeps_the_subject(detector):
    every_frame, calls_1, _ = scan_file("WolfgangLanger_Pexels.mp4", detector, 1)
    skipping, calls_2, crops_2 = scan_file("WolfgangLanger_Pexels.mp4", detector, 2)
    assert calls_1 == 32 and calls_2 == 17  # 0, 2, ..., 30 and the last frame, which has nothing after it
    assert len(skipping["subjects"]) == len(every_frame["subjects"]) == 1
    assert skipping["media"]["frames_sampled"] == 32
    seen, placed = frames_of(every_frame), frames_of(skipping)
    assert len(placed) >= len(seen) - 2 and crops_2 >= len(placed)
    ious = [_iou(tuple(placed[i]), tuple(seen[i])) for i in placed if i in seen]
    assert min(ious) > 0.6 and np.mean(ious) > 0.85  # interpolated boxes sit on the detected face


def test_a_face_that_leaves_is_not_placed_where_it_is_gone(detector):
    """face_noface.mov: a face, then a cartoon; no interpolated face lands on a frame without one."""
    seen = frames_of(scan_file("face_noface.mov", detector, 1)[0])
    placed = frames_of(scan_file("face_noface.mov", detector, 2)[0])
    assert len(placed) >= len(seen) - 1 and set(placed) <= set(seen)
