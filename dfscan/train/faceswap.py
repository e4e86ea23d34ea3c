"""A landmark-warped face swap between two different people: the classic "FaceSwap" forgery.

DFDC's fakes come from its own GAN/autoencoder swappers and SBI's pseudo-fakes blend a face with
itself, so neither shows what the graphics-based FaceSwap method (FaceForensics++'s "FaceSwap")
leaves: another person's face, warped onto the target's landmarks, colour-matched and blended in. The project makes such fakes itself to validate on a forgery
domain it never trains on (`recipes/build_detector.py crossdomain`).

Landmarks are the scanner's own: MediaPipe's 6 detector keypoints (no 68-point landmarker ships
with MediaPipe 1.x). So the warp is one affine map fitted to the eyes, nose and mouth rather than
dlib-based FaceSwap's per-triangle warp, and the mask is the hull of the face outline that
`dfscan.train.sbi.face_polygon` extends those points to; pairs are drawn with a similar head turn. Colour transfer is Reinhard's (mean and std in Lab
inside the face), blending Poisson (`cv2.seamlessClone`) or a feathered alpha mask.

`degrade` makes the re-encoded copies every item of such a set is shown in (H.264 at a CRF,
JPEG at a quality, half-scale and back), so compression alone cannot tell real from fake.
"""

from __future__ import annotations

import cv2
import numpy as np

from dfscan.train.augment import h264, half_scale, jpeg
from dfscan.train.sbi import face_polygon

BLENDS = ("poisson", "alpha")


INNER = [0, 1, 2, 3]  # eyes, nose tip, mouth centre: the keypoints that move with the face, not the head


def warp_face(source: np.ndarray, source_kp: np.ndarray, target_kp: np.ndarray,
              shape: tuple[int, int]) -> np.ndarray:
    """The source face moved onto the target's landmarks by the affine map that best fits the
    inner keypoints (a piecewise warp needs dense landmarks: on 6 points it tears the face)."""
    s = np.asarray(source_kp).reshape(6, 2)[INNER].astype(np.float32)
    t = np.asarray(target_kp).reshape(6, 2)[INNER].astype(np.float32)
    m, _ = cv2.estimateAffine2D(s, t, method=cv2.LMEDS)
    if m is None:
        m = cv2.getAffineTransform(s[:3], t[:3])
    h, w = shape
    return cv2.warpAffine(source, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def yaw(kp: np.ndarray) -> float:
    """How far the nose sits off the eyes' midline, in eye distances: a head-turn measure for pairing."""
    kp = np.asarray(kp, np.float64).reshape(6, 2)
    eyes = kp[1] - kp[0]
    d = float(np.linalg.norm(eyes)) + 1e-6
    return float(np.dot(kp[2] - (kp[0] + kp[1]) / 2.0, eyes / d) / d)


def face_outline(kp: np.ndarray) -> np.ndarray:
    """The swapped region's corners: outer eye corners, brow, jaw and chin (not the ears or hair)."""
    pts = face_polygon(kp)
    r_eye, l_eye = pts[0], pts[1]
    outer = np.vstack([r_eye + 0.4 * (r_eye - l_eye), l_eye + 0.4 * (l_eye - r_eye)])
    return np.vstack([outer, pts[[3, 6, 7, 8, 9]]])


def face_mask(points: np.ndarray, shape: tuple[int, int], shrink: float) -> np.ndarray:
    """uint8 mask (0/255) of the face outline's convex hull, shrunk towards its centre by `shrink`."""
    centre = points.mean(axis=0)
    hull = cv2.convexHull((centre + (points - centre) * (1.0 - shrink)).astype(np.float32))
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(hull.reshape(-1, 2)).astype(np.int32), 255)
    return mask


def colour_transfer(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer: the face's Lab mean and std inside the mask set to the target's."""
    inside = mask > 0
    f = cv2.cvtColor(np.clip(face, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    t = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    fm, fs = f[inside].mean(0), f[inside].std(0) + 1e-3
    tm, ts = t[inside].mean(0), t[inside].std(0) + 1e-3
    out = (f - fm) / fs * ts + tm
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def face_swap(target: np.ndarray, target_kp: np.ndarray, source: np.ndarray, source_kp: np.ndarray,
              rng: np.random.Generator, blend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fake, mask): `source`'s face on `target`'s head. Both are RGB uint8 face crops with their
    6 MediaPipe keypoints in their own pixels; the fake has the target's size."""
    h, w = target.shape[:2]
    outline = face_outline(target_kp)
    warped = warp_face(source, source_kp, target_kp, (h, w))
    mask = face_mask(outline, (h, w), shrink=float(rng.uniform(0.0, 0.1)))
    face = colour_transfer(warped, target, mask)
    blend = blend or BLENDS[int(rng.integers(len(BLENDS)))]
    if blend == "poisson":
        ys, xs = np.nonzero(mask)
        centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
        inner = cv2.erode(mask, np.ones((3, 3), np.uint8))
        fake = cv2.seamlessClone(face, target, inner, centre, cv2.NORMAL_CLONE)
        return fake, mask
    if blend != "alpha":
        raise ValueError(f"unknown blend {blend!r} (choose from {', '.join(BLENDS)})")
    k = max(3, int(round(0.06 * w)) | 1)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (k, k), 0)[..., None]
    fake = alpha * face.astype(np.float32) + (1.0 - alpha) * target.astype(np.float32)
    return np.clip(np.round(fake), 0, 255).astype(np.uint8), mask


DEGRADATIONS = ("clean", "jpeg", "h264", "half")


def degrade(img: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """(copy, what was done): JPEG at quality 50-90, H.264 at CRF 23/30/36, half scale and back, or none."""
    if kind == "clean":
        return img, "clean"
    if kind == "jpeg":
        q = int(rng.integers(50, 91))
        return jpeg(img, rng, quality=(q, q)), f"jpeg{q}"
    if kind == "h264":
        crf = int(rng.choice([23, 30, 36]))
        return h264(img, crf), f"h264crf{crf}"
    if kind == "half":
        return half_scale(img), "half"
    raise ValueError(f"unknown degradation {kind!r} (choose from {', '.join(DEGRADATIONS)})")
