"""scanner.faces: the MediaPipe detector on the shared real media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner.faces import KEYPOINT_NAMES, FaceDetector
from scanner.media import iter_frames
from train.errors import InputError

MEDIA = Path(__file__).parent / "data" / "media"


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as d:
        yield d


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
