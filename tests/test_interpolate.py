"""Detection skipping: which frames skip, interpolation between detections, and the stage on real video."""

from __future__ import annotations

import numpy as np
import pytest

from dfscan.core.errors import InputError
from dfscan.scanner.faces import Detection, FaceDetector
from dfscan.scanner.interpolate import MAX_SKIP_SECONDS, between, fill, match, skipped
from dfscan.scanner.options import ScanOptions
from dfscan.scanner.stage import CropSink, StageConfig, process_file
from dfscan.scanner.track import _iou
from tests.helpers import VIDEOS

CLOSE = 0.1  # seconds since the last detected frame: close enough to skip


def det(x: float, y: float = 100.0, size: float = 40.0, score: float = 0.9) -> Detection:
    kp = np.array([[x + 10, y + 15], [x + 30, y + 15], [x + 20, y + 25], [x + 20, y + 32], [x, y + 18], [x + 40, y + 18]],
                  np.float32)
    return Detection((x, y, size, size), kp, score)


def test_skip_schedule_keeps_tiled_and_distant_frames():
    assert [p for p in range(10) if skipped(p, CLOSE, 2, 8)] == [1, 3, 5, 7, 9]
    assert [p for p in range(10) if skipped(p, CLOSE, 3, 8)] == [1, 2, 4, 5, 7]  # 8 is tiled: detected
    assert [p for p in range(10) if skipped(p, CLOSE, 3, 0)] == [1, 2, 4, 5, 7, 8]
    assert not any(skipped(p, CLOSE, 1, 8) for p in range(10))
    assert not any(skipped(p, MAX_SKIP_SECONDS + 0.01, 2, 0) for p in range(10))  # frames far apart: all detected


def test_detect_every_bounds():
    for bad in (0, 5):
        with pytest.raises(InputError, match="--detect-every"):
            ScanOptions(detect_every=bad).check()
    ScanOptions(detect_every=4).check()


def test_between_is_linear_in_box_and_keypoints():
    a, b = det(100.0, score=0.9), det(120.0, y=110.0, score=0.8)
    mid = between(a, b, 0.5)
    assert mid.box == (110.0, 105.0, 40.0, 40.0) and mid.interpolated and not a.interpolated
    np.testing.assert_allclose(mid.keypoints, (a.keypoints + b.keypoints) / 2)
    assert mid.score == pytest.approx(0.8)
    assert between(a, b, 0.0).box == a.box


def test_match_and_fill_place_only_faces_seen_on_both_sides():
    near, far = det(100.0), det(900.0)
    moved = det(130.0)
    assert match([near, far], [moved], 2) == [(near, moved)]  # the far face left: nothing to place between
    assert match([near], [], 2) == [] and match([], [moved], 2) == []
    (one, two) = fill([near, far], [moved], 4, 7, [5, 6])
    assert [d.box[0] for d in one] == [110.0] and [d.box[0] for d in two] == [120.0]


class ScriptedDetector:
    """Detections by sampled position from a script, counting the frames it is asked to search."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def detect_sampled(self, image, pos, tile_every):
        self.calls.append(pos)
        return list(self.script(pos)), 0.0


class CountingDetector(ScriptedDetector):
    """The real detector, counting the frames it is asked to search."""

    def __init__(self, detector: FaceDetector):
        super().__init__(None)
        self.detector = detector

    def detect_sampled(self, image, pos, tile_every):
        self.calls.append(pos)
        return self.detector.detect_sampled(image, pos, tile_every)


def run_stage(name: str, detector, every: int, frames: int = 32) -> dict:
    cfg = StageConfig(frames=frames, fps=None, keyframes=False, crops=False, face_model="full", min_face_score=0.5,
                      size=64, tile_every=8, detect_every=every)
    crops = []
    payload = process_file(str(VIDEOS / name), "video", detector, cfg, CropSink(8, lambda first, c: crops.append(c)))
    assert sum(len(c) for c in crops) == payload["crops"]
    return payload


def frames_of(payload: dict) -> dict[int, list[float]]:
    return {f["index"]: f["box"] for s in payload["subjects"] for f in s["frames"]}


def test_real_video_detects_half_the_frames_and_keeps_the_subject(detector):
    every_frame = run_stage("WolfgangLanger_Pexels.mp4", counting_1 := CountingDetector(detector), 1)
    skipping = run_stage("WolfgangLanger_Pexels.mp4", counting_2 := CountingDetector(detector), 2)
    assert len(counting_1.calls) == 32
    assert counting_2.calls == list(range(0, 32, 2)) + [31]  # and the last frame, which has nothing after it
    assert len(skipping["subjects"]) == len(every_frame["subjects"]) == 1
    assert skipping["media"]["frames_sampled"] == 32
    seen, placed = frames_of(every_frame), frames_of(skipping)
    assert len(placed) >= len(seen) - 2
    flagged = [f for s in skipping["subjects"] for f in s["frames"] if f.get("interpolated")]
    assert 10 <= len(flagged) <= 15 and not any(f.get("interpolated") for s in every_frame["subjects"] for f in s["frames"])
    ious = [_iou(tuple(placed[i]), tuple(seen[i])) for i in placed if i in seen]
    assert min(ious) > 0.6 and np.mean(ious) > 0.85  # interpolated boxes sit on the detected face


def test_held_frames_at_the_end_are_filled(detector):
    """K=4 on a 72-frame clip sampled 30 times: the last frames are held, then the last one detected."""
    counting = CountingDetector(detector)
    payload = run_stage("single_face.mp4", counting, 4, frames=30)
    assert counting.calls == list(range(0, 30, 4)) + [29]
    (subject,) = payload["subjects"]
    assert len(subject["frames"]) >= 28


def test_a_face_that_leaves_is_not_placed_where_it_is_gone(detector):
    """face_noface.mov: a face, then a cartoon; no interpolated face lands on a frame without one."""
    seen = frames_of(run_stage("face_noface.mov", detector, 1))
    placed = frames_of(run_stage("face_noface.mov", detector, 2))
    assert len(placed) >= len(seen) - 1 and set(placed) <= set(seen)


def test_skipped_frames_count_as_misses_so_two_people_stay_two():
    """Person A until position 10, nobody for 5 frames, person B at the same place from 16: the
    frames skipped between count as misses as detected ones do, so B does not join A's track."""
    a, b = det(300.0, score=0.95), det(305.0, score=0.93)
    script = lambda pos: [a] if pos <= 10 else ([b] if pos >= 16 else [])  # noqa: E731
    subjects = {every: run_stage("WolfgangLanger_Pexels.mp4", ScriptedDetector(script), every)["subjects"]
                for every in (1, 2)}
    assert len(subjects[1]) == 2
    assert len(subjects[2]) == 2
