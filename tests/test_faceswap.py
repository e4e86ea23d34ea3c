"""FaceSwap-style fakes for the cross-domain set: another person's face, inside the face mask only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dfscan.train.faceswap import DEGRADATIONS, degrade, face_swap, yaw
from tests.helpers import IMAGES


def _crop(name: str) -> tuple[np.ndarray, np.ndarray]:
    from dfscan.scanner.crop import crop_face, crop_keypoints
    from dfscan.scanner.faces import FaceDetector

    img = np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(IMAGES / name)), cv2.COLOR_BGR2RGB))
    with FaceDetector("full") as det:
        d = max(det.detect(img), key=lambda f: f.box[2] * f.box[3])
    return crop_face(img, d.keypoints, d.box, size=160), crop_keypoints(d.keypoints, d.box, size=160)


@pytest.fixture(scope="module")
def two_people():
    return _crop("single_face.jpg"), _crop("astronaut.png")


@pytest.mark.parametrize("blend", ["alpha", "poisson"])
def test_swap_changes_the_face_and_keeps_the_rest(two_people, blend):
    (target, t_kp), (source, s_kp) = two_people
    fake, mask = face_swap(target, t_kp, source, s_kp, np.random.default_rng(0), blend)
    assert fake.shape == target.shape and fake.dtype == np.uint8
    inside = mask > 0
    assert 0.05 < inside.mean() < 0.6, "the mask should cover a face, not the crop"
    x, y, w, h = cv2.boundingRect(mask)  # Poisson blending may touch the bounding box, feathering spreads it
    ring = np.zeros_like(inside)
    ring[max(0, y - 8):y + h + 8, max(0, x - 8):x + w + 8] = True
    diff = np.abs(fake.astype(int) - target.astype(int)).max(axis=2)
    assert diff[inside].mean() > 8, "the face was not replaced"
    assert (diff[~ring] == 0).all(), "pixels far from the face changed"
    # the eyes of the fake sit where the target's are (the warp follows the target's keypoints)
    eye = np.round(t_kp[0]).astype(int)
    assert inside[eye[1], eye[0]]


def test_yaw_reads_a_head_turn():
    frontal = np.array([[40, 50], [80, 50], [60, 70], [60, 90], [20, 55], [100, 55]], float)
    turned = frontal.copy()
    turned[2, 0] += 15
    assert abs(yaw(frontal)) < 1e-6 and yaw(turned) > 0.3


def test_video_augmentation_subsamples_chroma(two_people):
    from dfscan.train.augment import Augment, h264

    (img, _), _ = two_people
    coded = h264(img, 23)
    assert coded.shape == img.shape and coded.dtype == np.uint8
    chroma = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2YCrCb)[..., 1].astype(float)  # noqa: E731
    # 4:2:0 halves the chroma resolution: its fine detail (differences between neighbours) drops
    assert np.abs(np.diff(chroma(coded), axis=1)).mean() < 0.8 * np.abs(np.diff(chroma(img), axis=1)).mean()
    out = Augment(p_flip=0, p_color=0, p_blur=0, p_jpeg=0, p_video=1.0)(img, np.random.default_rng(0))
    assert out.shape == img.shape and not np.array_equal(out, img)


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_degrade_keeps_size_and_changes_pixels(two_people, kind):
    (img, _), _ = two_people
    out, how = degrade(img, kind, np.random.default_rng(1))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert how.startswith(kind)
    if kind == "clean":
        assert out is img
    else:
        err = np.abs(out.astype(int) - img.astype(int)).mean()
        assert 0.2 < err < 20, f"{how}: mean error {err:.2f}"
