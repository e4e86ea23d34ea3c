"""THE face preprocessing: square, 1.3x enlarged, eye-levelled, 256x256 RGB.

Training crops and scan-time crops both come from `crop_face`, so the detector sees at run
time exactly the geometry it learned from. One affine warp does the rotation, scaling and
translation (a single interpolation, no intermediate full-frame copies). Pixels outside the
frame are filled with black (constant border): replicating edge pixels would smear skin or
background into streaks that look like blending artefacts to a deepfake detector.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from dfscan.scanner.faces import LEFT_EYE, RIGHT_EYE


def _eye_angle(keypoints: np.ndarray | None) -> float:
    """Angle (radians) of the line from the subject's right eye to the left eye; 0 when unknown."""
    if keypoints is None:
        return 0.0
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape[0] <= max(LEFT_EYE, RIGHT_EYE) or not np.all(np.isfinite(kp[[RIGHT_EYE, LEFT_EYE]])):
        return 0.0
    dx, dy = kp[LEFT_EYE] - kp[RIGHT_EYE]
    if math.hypot(dx, dy) < 1e-3:
        return 0.0
    return math.atan2(dy, dx)


def crop_transform(
    keypoints: np.ndarray | None,
    box: tuple[float, float, float, float],
    *,
    size: int = 256,
    scale: float = 1.3,
) -> np.ndarray:
    """The 2x3 affine matrix mapping source pixels into the crop.

    The square is centred on the box centre, its side is `scale` x the longer box side, and it
    is rotated by the eye angle so the eyes come out level.
    """
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0):
        raise ValueError(f"face box must have a positive size, got {box}")
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(w, h) * scale
    s = size / side
    a = _eye_angle(keypoints)
    cos_a, sin_a = math.cos(a) * s, math.sin(a) * s
    # crop = s * R(-a) @ (p - c) + size/2
    return np.array(
        [
            [cos_a, sin_a, size / 2.0 - (cos_a * cx + sin_a * cy)],
            [-sin_a, cos_a, size / 2.0 - (-sin_a * cx + cos_a * cy)],
        ],
        dtype=np.float64,
    )


def crop_face(
    image: np.ndarray,
    keypoints: np.ndarray | None,
    box: tuple[float, float, float, float],
    *,
    size: int = 256,
    scale: float = 1.3,
) -> np.ndarray:
    """(size, size, 3) uint8 RGB crop of one face (see the module docstring for the geometry)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    m = crop_transform(keypoints, box, size=size, scale=scale)
    out = cv2.warpAffine(
        image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)
    )
    return np.ascontiguousarray(out)


def crop_keypoints(
    keypoints: np.ndarray,
    box: tuple[float, float, float, float],
    *,
    size: int = 256,
    scale: float = 1.3,
) -> np.ndarray:
    """The keypoints (N, 2) in crop pixels, for the crop `crop_face` makes from the same inputs."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    m = crop_transform(keypoints, box, size=size, scale=scale)
    return (kp @ m[:, :2].T + m[:, 2]).astype(np.float32)
