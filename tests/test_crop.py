"""dfscan.scanner.crop: the shared face crop (square, 1.3x, eye-levelled, 256x256) and its keypoints."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfscan.scanner.crop import crop_face, crop_keypoints, crop_transform
from dfscan.scanner.media import iter_frames

MEDIA = Path(__file__).parent / "data" / "media"


def load(name: str) -> np.ndarray:
    (frame,) = list(iter_frames(MEDIA / "images" / name))
    return frame.image


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre into a canvas big enough to keep every pixel."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    side = int(math.hypot(w, h)) + 2
    m[:, 2] += (side / 2 - w / 2, side / 2 - h / 2)
    return cv2.warpAffine(img, m, (side, side), flags=cv2.INTER_LINEAR)


def test_crops_are_256_rgb_uint8_for_every_face(detector):
    img = load("multi_face.jpg")
    faces = detector.detect(img)
    assert len(faces) == 5
    for f in faces:
        crop = crop_face(img, f.keypoints, f.box)
        assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8 and crop.flags["C_CONTIGUOUS"]
        kp = crop_keypoints(f.keypoints, f.box)
        assert abs(kp[0, 1] - kp[1, 1]) < 1e-3  # eyes level in the crop
        assert kp[0, 0] < 128 < kp[1, 0] and kp[0, 1] < kp[2, 1] < kp[3, 1]  # face upright, centred
    assert crop_face(img, None, faces[0].box, size=128).shape == (128, 128, 3)


def eye_angle(kp: np.ndarray) -> float:
    dx, dy = kp[1] - kp[0]
    return math.degrees(math.atan2(dy, dx))


def test_rotated_image_gives_the_same_upright_crop(detector):
    """Tilt the photo; the crop's pixels show the face level again (checked by re-detecting)."""
    img = load("single_face.jpg")
    (base,) = detector.detect(img)
    ref = crop_face(img, base.keypoints, base.box).astype(np.float32)
    for degrees in (-25, 20):
        tilted = rotate(img, degrees)
        (face,) = detector.detect(tilted)
        assert abs(eye_angle(face.keypoints)) > 12  # the source really is tilted
        crop = crop_face(tilted, face.keypoints, face.box)
        unaligned = crop_face(tilted, None, face.box)
        (again,) = detector.detect(crop)
        assert abs(eye_angle(again.keypoints)) < 5
        assert again.keypoints[:2, 1].mean() < again.keypoints[2, 1] < again.keypoints[3, 1]
        # closer to the crop of the untilted photo than the unaligned crop is (box size varies a bit)
        same = np.abs(crop.astype(np.float32) - ref)[32:-32, 32:-32].mean()
        assert same < 0.8 * np.abs(unaligned.astype(np.float32) - ref)[32:-32, 32:-32].mean()


def test_square_enlarged_1_3x_around_the_box():
    img = np.zeros((400, 600, 3), np.uint8)
    box = (200.0, 100.0, 80.0, 160.0)  # a tall box: the square side is 1.3 x its height
    x, y, w, h = (int(v) for v in box)
    img[y:y + h, x:x + w] = 255
    crop = crop_face(img, None, box)
    rows = np.where(crop[:, :, 0].max(axis=1) > 127)[0]
    cols = np.where(crop[:, :, 0].max(axis=0) > 127)[0]
    assert rows[-1] - rows[0] + 1 == pytest.approx(256 / 1.3, abs=2)
    assert cols[-1] - cols[0] + 1 == pytest.approx(256 / 1.3 / 2, abs=2)
    assert (rows[0] + rows[-1]) / 2 == pytest.approx(127.5, abs=1.5)
    assert (cols[0] + cols[-1]) / 2 == pytest.approx(127.5, abs=1.5)
    # scale=1.0 fills the crop's height with the box
    assert (crop_face(img, None, box, scale=1.0)[2:-2, 128, 0] > 127).all()


def test_outside_the_frame_is_black():
    img = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_face(img, None, (0.0, 0.0, 50.0, 50.0))
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[-1, -1].tolist() == [200, 200, 200]


def test_keypoints_map_onto_the_same_pixels():
    """Coloured dots at the keypoints land where crop_keypoints says, for a tilted face."""
    img = np.zeros((500, 500, 3), np.uint8)
    angle = math.radians(30)
    c = np.array([250.0, 260.0])
    offsets = np.array([[-40, -30], [40, -30], [0, 0], [0, 45], [-90, -10], [90, -10]], np.float64)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    kps = (offsets @ rot.T + c).astype(np.float32)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]
    for (px, py), col in zip(kps, colours):
        cv2.circle(img, (int(round(px)), int(round(py))), 4, col, -1)
    box = (150.0, 150.0, 200.0, 200.0)
    crop = crop_face(img, kps, box)
    mapped = crop_keypoints(kps, box)
    assert mapped.shape == (6, 2)
    assert abs(mapped[0, 1] - mapped[1, 1]) < 1e-3 and mapped[0, 0] < mapped[1, 0]
    for (mx, my), col in zip(mapped, colours):
        assert crop[int(round(my)), int(round(mx))].tolist() == list(col)
    # the same matrix as the warp; unknown keypoints mean no rotation
    m = crop_transform(kps, box)
    np.testing.assert_allclose(mapped, kps @ m[:, :2].T + m[:, 2], atol=1e-3)
    nan_kp = np.full((6, 2), np.nan, np.float32)
    np.testing.assert_allclose(crop_transform(nan_kp, box), crop_transform(None, box))


def test_bad_inputs():
    with pytest.raises(ValueError):
        crop_face(np.zeros((10, 10), np.uint8), None, (0, 0, 5, 5))
    with pytest.raises(ValueError):
        crop_face(np.zeros((10, 10, 3), np.uint8), None, (0, 0, 0, 5))
