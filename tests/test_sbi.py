"""Self-blended pseudo-fakes: changes confined to the mask, size kept, seeded, mask on the face."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dfscan.train.sbi import base_mask, blend_mask, face_polygon, self_blend

MEDIA = Path(__file__).parent / "data" / "media" / "images"


@pytest.fixture(scope="module")
def real_crop() -> tuple[np.ndarray, np.ndarray]:
    """A real face: MediaPipe on a test photo, cropped by THE crop function, keypoints mapped in."""
    from dfscan.scanner.crop import crop_face, crop_keypoints
    from dfscan.scanner.faces import FaceDetector

    img = np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(MEDIA / "single_face.jpg")), cv2.COLOR_BGR2RGB))
    with FaceDetector("full") as det:
        faces = det.detect(img)
    assert faces, "MediaPipe found no face in single_face.jpg"
    d = max(faces, key=lambda f: f.score)
    return crop_face(img, d.keypoints, d.box), crop_keypoints(d.keypoints, d.box)


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


@pytest.mark.parametrize("seed", range(12))
def test_fake_differs_only_inside_mask(real_crop, seed):
    crop, kp = real_crop
    fake, mask = self_blend(crop, kp, np.random.default_rng(seed), p_freq=0.5)
    assert fake.shape == crop.shape and fake.dtype == np.uint8 and mask.shape == crop.shape[:2]
    changed = _changed(fake, crop)
    assert changed.any()
    assert not (changed & (mask <= 0)).any(), "pixels changed outside the blend mask"
    dilated = cv2.dilate((mask > 0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert not (changed & ~dilated).any()
    # the change is a face-sized region, not the whole crop
    assert 0.05 < changed.mean() < 0.7


def test_frequency_mixing_is_subtler_and_confined(real_crop):
    crop, kp = real_crop

    def highfreq(img: np.ndarray) -> np.ndarray:
        f = img.astype(np.float32)
        return f - cv2.GaussianBlur(f, (0, 0), 1.0)

    err_plain = err_mixed = 0.0
    for seed in range(8):  # same seed: same mask and source, only the mixing differs
        plain, m_plain = self_blend(crop, kp, np.random.default_rng(seed), p_freq=0.0)
        mixed, m_mixed = self_blend(crop, kp, np.random.default_rng(seed), p_freq=1.0)
        assert not (_changed(mixed, crop) & (m_mixed <= 0)).any()
        assert (m_mixed > 0).sum() >= (m_plain > 0).sum()  # the low-pass spreads the support a little
        inside = m_plain > 0
        err_plain += float(np.abs(highfreq(plain) - highfreq(crop))[inside].mean())
        err_mixed += float(np.abs(highfreq(mixed) - highfreq(crop))[inside].mean())
    # the real image's high frequencies are put back: the mixed fakes are closer to it there
    assert err_mixed < 0.8 * err_plain


def test_fallback_ellipse_without_keypoints(real_crop):
    crop, _ = real_crop
    for kp in (None, np.full((6, 2), np.nan)):
        fake, mask = self_blend(crop, kp, np.random.default_rng(1))
        assert fake.shape == crop.shape and not (_changed(fake, crop) & (mask <= 0)).any()
        ys, xs = np.nonzero(mask > 0.5)
        assert abs(xs.mean() - 128) < 25 and abs(ys.mean() - 134) < 30  # a centred face region
        assert mask[0, 0] == 0 and mask[-1, -1] == 0


def test_mask_covers_the_face_keypoints(real_crop):
    crop, kp = real_crop
    m = base_mask(crop.shape[:2], kp, np.random.default_rng(0))
    for x, y in kp[:4]:  # eyes, nose, mouth are inside the hull
        assert m[int(round(y)), int(round(x))] == 1
    chin = face_polygon(kp)[6]
    assert chin[1] > kp[3, 1]  # the chin point lies below the mouth
    soft = blend_mask(crop.shape[:2], kp, np.random.default_rng(0))
    assert soft.min() >= 0 and soft.max() <= 1 and 0 < soft.mean() < 0.6


def test_seeded_and_varied(real_crop):
    crop, kp = real_crop
    a, ma = self_blend(crop, kp, np.random.default_rng(7))
    b, mb = self_blend(crop, kp, np.random.default_rng(7))
    c, _ = self_blend(crop, kp, np.random.default_rng(8))
    assert np.array_equal(a, b) and np.array_equal(ma, mb) and not np.array_equal(a, c)


def test_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8 RGB"):
        self_blend(np.zeros((256, 256, 3), np.float32), None, np.random.default_rng(0))


def test_scale_jitter_zooms_about_the_centre():
    from dfscan.train.augment import Augment, scale_jitter

    img = np.zeros((64, 64, 3), np.uint8)
    img[24:40, 24:40] = 200  # a centred square
    rng = np.random.default_rng(0)
    outs = [scale_jitter(img, rng) for _ in range(20)]
    areas = [int((o[..., 0] > 100).sum()) for o in outs]
    assert min(areas) < 256 < max(areas)  # zoomed out and in (0.9-1.2x)
    for o in outs:
        ys, xs = np.nonzero(o[..., 0] > 100)
        assert abs(ys.mean() - 31.5) < 1 and abs(xs.mean() - 31.5) < 1  # about the centre
    assert Augment().p_scale == 0.0  # off unless asked for (--scale-jitter)
