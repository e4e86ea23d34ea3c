"""Close-ups (issue 31): a picture the face fills is looked at again on a black margin.

Real MediaPipe on tight crops cut from the shared face photos and a frame of the face clip, as
DFDC's 224-px face crops, passport photos and selfies are; the shared no-face clips must stay
no-face.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dfscan.scanner.crop import crop_face
from dfscan.scanner.faces import MAX_SHOWN
from dfscan.scanner.media import iter_frames
from dfscan.scanner.pipeline import scan
from tests.helpers import FACE_IMAGES, IMAGES, VIDEOS, box_iou, by_name, face_frame, scan_options, tight_face_crops

pytestmark = pytest.mark.usefixtures("shared_cache")  # any exported ONNX model stays out of the user's cache


@pytest.fixture(scope="module")
def crops(detector):
    """42 tight crops (7 faces x 1.0/1.1 the face box x 112/160/224 px) and which the whole-picture pass misses."""
    pictures = [np.ascontiguousarray(cv2.imread(str(IMAGES / n))[:, :, ::-1]) for n in FACE_IMAGES] + [face_frame()]
    out = tight_face_crops(detector, pictures)
    return out, [not detector.detect(c) for c, _ in out]


def test_tight_crops_and_no_face_clips_through_a_scan(crops, tmp_path, tiny_checkpoint):
    """The crops the whole-picture pass misses are scanned, each as one face with its box on the
    face; the no-face clips stay no_face (no new false positives)."""
    made, missed = crops
    assert len(made) == 42 and sum(missed) >= 5  # the retry has something to do
    names = {}
    for i, (crop, truth) in enumerate(made):
        if missed[i]:
            names[f"crop{i:02d}.png"] = truth
            cv2.imwrite(str(tmp_path / f"crop{i:02d}.png"), crop[:, :, ::-1])
    for name in ("no_face.mp4", "bigbuckbunny.mp4"):
        (tmp_path / name).symlink_to(VIDEOS / name)
    items = by_name(scan([tmp_path], scan_options(tiny_checkpoint, workers=1)))
    for name in ("no_face.mp4", "bigbuckbunny.mp4"):
        assert items[name]["status"] == "no_face" and items[name]["subjects"] == [], name
    for name, truth in names.items():
        item = items[name]
        assert item["status"] == "ok", (name, item["status"])
        (subject,) = item["subjects"]
        box = subject["frames"][0]["box"]
        assert box_iou(box, truth) > 0.6, (name, box, truth)


def test_a_margin_box_crops_as_the_bordered_picture_does(detector, crops):
    """Box and keypoints come back in the picture's pixels: crop_face cuts from the picture what
    it cuts from the bordered picture (black outside), i.e. what training crops have."""
    made, missed = crops
    crop, truth = made[missed.index(True)]
    h, w = crop.shape[:2]
    (face,) = detector.detect_on_margin(crop)
    bordered = cv2.copyMakeBorder(crop, w, w, w, w, cv2.BORDER_CONSTANT, value=0)
    (direct,) = detector.detect(bordered)
    np.testing.assert_allclose(face.box, np.array(direct.box) - (w, w, 0, 0), atol=1e-4)
    np.testing.assert_allclose(face.keypoints, direct.keypoints - w, atol=1e-3)
    a, b = crop_face(crop, face.keypoints, face.box, size=128), crop_face(bordered, direct.keypoints, direct.box, size=128)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    x, y, bw, bh = face.box  # not clipped, but on the picture: the face box of a tight crop may overhang it a little
    assert box_iou(face.box, truth) > 0.6 and -0.25 * w < x < w and -0.25 * h < y < h and bw < 1.5 * w


def test_a_large_picture_is_shrunk_before_its_margin_pass(detector, crops):
    made, missed = crops
    crop, _ = made[missed.index(True)]
    big = cv2.resize(crop, (600, 600), interpolation=cv2.INTER_CUBIC)
    assert 3 * 600 > MAX_SHOWN  # the bordered picture (1800 px) is shown at 1024
    (small_face,) = detector.detect_on_margin(crop)
    (big_face,) = detector.detect_on_margin(big)
    s = 600 / crop.shape[1]
    np.testing.assert_allclose(np.array(big_face.box) / s, small_face.box, atol=0.06 * small_face.box[2])
    np.testing.assert_allclose(big_face.keypoints / s, small_face.keypoints, atol=0.06 * small_face.box[2])


def test_the_retry_runs_only_where_no_face_was_found(detector, monkeypatch):
    picture = np.ascontiguousarray(cv2.imread(str(IMAGES / "single_face.jpg"))[:, :, ::-1])
    monkeypatch.setattr(detector, "detect_closeup", lambda image: pytest.fail("retried on a picture with a face"))
    (face,), _ = detector.detect_sampled(picture, 0, 8)
    assert face.score > 0.8


@pytest.mark.parametrize("name", ["no_face.mp4", "bigbuckbunny.mp4"])
def test_no_close_up_faces_in_the_no_face_clips(detector, name):
    """More frames than the scan samples: clouds and cartoon characters fire on the margin, the
    size, inside and two-model checks turn them all down."""
    frames = [f.image for f in iter_frames(VIDEOS / name, frames=24) if not detector.detect(f.image)]
    assert len(frames) >= 12  # the retry's frames (the whole-frame pass fires on a few: tracking drops those)
    assert [i for i, f in enumerate(frames) if detector.detect_closeup(f)] == []
