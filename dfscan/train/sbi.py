"""Self-blended images (Shiohara & Yamasaki, CVPR 2022): pseudo-fakes made from one real face.

A face swap pastes one face onto another through a soft mask; what betrays it is the blending
boundary and the colour/sharpness mismatch between the two. SBI reproduces exactly that from a
single real crop: a *source* (the real face, colour/sharpness shifted and slightly moved or
rescaled) is blended into the *target* (the untouched real crop) through a deformed, blurred
face mask at a random ratio. The detector learns the artefacts, not any one method's look.

The target is the real image itself, so a pseudo-fake differs from its real crop only where the
returned mask is non-zero. Optionally the real image's high frequencies are put back
(fake = lowpass(fake) + highpass(real)): the boundary and colour mismatch remain but the
high-frequency traces are subtler, i.e. a harder fake.

Keypoints are MediaPipe's 6 (right eye, left eye, nose tip, mouth centre, right ear, left
ear) in crop pixels; without them a centred face ellipse stands in.
"""

from __future__ import annotations

from typing import TypeGuard

import cv2
import numpy as np

from dfscan.train.augment import color_jitter

RIGHT_EYE, LEFT_EYE, NOSE, MOUTH, RIGHT_EAR, LEFT_EAR = range(6)


def _odd(k: float) -> int:
    k = max(1, int(round(k)))
    return k if k % 2 else k + 1


def face_polygon(kp: np.ndarray) -> np.ndarray:
    """Points whose convex hull covers the face: the 6 keypoints plus a chin and a brow point.

    The MediaPipe points stop at the mouth and the eyes; the chin lies about half the
    eye-to-mouth distance below the mouth and the brows about a third of it above the eyes.
    """
    kp = np.asarray(kp, np.float64).reshape(6, 2)
    eyes = (kp[RIGHT_EYE] + kp[LEFT_EYE]) / 2.0
    down = kp[MOUTH] - eyes
    chin = kp[MOUTH] + 0.6 * down
    brow = eyes - 0.45 * down
    ear_mid = (kp[RIGHT_EAR] + kp[LEFT_EAR]) / 2.0
    jaw_r = kp[RIGHT_EAR] + 0.55 * down + 0.25 * (ear_mid - kp[RIGHT_EAR])
    jaw_l = kp[LEFT_EAR] + 0.55 * down + 0.25 * (ear_mid - kp[LEFT_EAR])
    return np.vstack([kp, chin, brow, jaw_r, jaw_l])


def _usable(kp: np.ndarray | None, size: tuple[int, int]) -> TypeGuard[np.ndarray]:
    if kp is None:
        return False
    kp = np.asarray(kp, np.float64).reshape(-1)
    if kp.size != 12 or not np.isfinite(kp).all():
        return False
    pts = kp.reshape(6, 2)
    h, w = size
    eyes = np.linalg.norm(pts[LEFT_EYE] - pts[RIGHT_EYE])
    inside = (pts[:, 0] > -0.25 * w) & (pts[:, 0] < 1.25 * w) & (pts[:, 1] > -0.25 * h) & (pts[:, 1] < 1.25 * h)
    return bool(eyes > 0.05 * w and inside.all())


def base_mask(shape: tuple[int, int], kp: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Binary (H, W) float32 face mask: the keypoints' hull, or a centred ellipse without them."""
    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    if _usable(kp, shape):
        hull = cv2.convexHull(np.round(face_polygon(kp)).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
    else:  # crop_face puts the face box centred and 1/1.3 of the crop wide
        centre = (int(round(w * rng.uniform(0.48, 0.52))), int(round(h * rng.uniform(0.50, 0.56))))
        axes = (int(round(w * rng.uniform(0.25, 0.31))), int(round(h * rng.uniform(0.33, 0.39))))
        cv2.ellipse(mask, centre, axes, 0.0, 0.0, 360.0, 1, -1)
    return mask.astype(np.float32)


def elastic(mask: np.ndarray, rng: np.random.Generator, alpha: float = 12.0, sigma: float = 12.0) -> np.ndarray:
    """Deform a mask with a smooth random displacement field (amplitude ~alpha px)."""
    h, w = mask.shape
    k = _odd(6 * sigma)
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (k, k), sigma)
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (k, k), sigma)
    scale = alpha / max(float(np.abs(dx).max()), float(np.abs(dy).max()), 1e-6)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, xs + dx * scale, ys + dy * scale, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def blend_mask(shape: tuple[int, int], kp: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """The soft blending mask in [0, 1]: hull/ellipse → elastic deformation → dilate or erode →
    Gaussian blur (random width, so boundaries range from sharp to smooth)."""
    h, w = shape
    m = base_mask(shape, kp, rng)
    m = (elastic(m, rng, alpha=rng.uniform(0.02, 0.06) * w, sigma=rng.uniform(0.04, 0.08) * w) > 0.5)
    m = m.astype(np.uint8)
    k = int(rng.integers(1, max(2, w // 25)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    m = cv2.dilate(m, kernel) if rng.random() < 0.5 else cv2.erode(m, kernel)
    m = m.astype(np.float32)
    for _ in range(int(rng.integers(1, 3))):
        ks = _odd(rng.uniform(0.02, 0.12) * w)
        m = cv2.GaussianBlur(m, (ks, ks), 0)
    return np.clip(m, 0.0, 1.0)


def _sharpness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur or unsharp-mask: the two faces of a swap rarely share their sharpness."""
    f = img.astype(np.float32)
    blurred = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.6, 1.8))
    if rng.random() < 0.5:
        return blurred
    return f + rng.uniform(0.3, 1.2) * (f - blurred)


def _rgb_shift(img: np.ndarray, rng: np.random.Generator, limit: float = 20.0) -> np.ndarray:
    return img.astype(np.float32) + rng.uniform(-limit, limit, 3).astype(np.float32)


def _affine(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift by up to 3% and rescale by 0.95-1.05 about the centre (reflect border: no black)."""
    h, w = img.shape[:2]
    s = rng.uniform(0.95, 1.05)
    tx, ty = rng.uniform(-0.03, 0.03, 2) * (w, h)
    m = np.array([[s, 0, (1 - s) * w / 2 + tx], [0, s, (1 - s) * h / 2 + ty]], np.float64)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def make_source(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The face to paste: colour, sharpness and geometry changed, each with some probability;
    at least one colour-type change always, so there is a mismatch to learn."""
    src = img.astype(np.float32)
    changed = False
    if rng.random() < 0.5:
        src = _rgb_shift(src, rng)
        changed = True
    if rng.random() < 0.5 or not changed:
        src = color_jitter(np.clip(src, 0, 255).astype(np.uint8), rng, 0.1, 0.1, 0.2, 10.0).astype(np.float32)
    if rng.random() < 0.5:
        src = _sharpness(src, rng)
    if rng.random() < 0.6:
        src = _affine(src, rng)
    return src


def self_blend(img: np.ndarray, kp: np.ndarray | None, rng: np.random.Generator, *,
               p_freq: float = 0.3, freq_sigma: tuple[float, float] = (0.8, 2.0)
               ) -> tuple[np.ndarray, np.ndarray]:
    """One pseudo-fake of a real uint8 RGB crop; returns (fake uint8 same shape, mask float32 (H, W)).

    The mask is non-zero exactly where the fake may differ from `img` (after frequency mixing it
    is the blend mask spread by the same low-pass filter). The blend ratio is drawn from
    {0.25, 0.5, 0.75, 1, 1, 1}: partial blends mimic swaps whose edges were smoothed.
    """
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"self_blend: expected a uint8 RGB image, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    mask = blend_mask((h, w), kp, rng)
    mask *= float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0]))
    real = img.astype(np.float32)
    src = make_source(img, rng)
    m3 = mask[..., None]
    fake = src * m3 + real * (1.0 - m3)
    if rng.random() < p_freq:
        # lowpass(fake) + highpass(real) = real + G*(fake - real): the change stays within the
        # mask spread by the kernel (finite support), so the real pixels elsewhere are untouched.
        s = rng.uniform(*freq_sigma)
        k = _odd(6 * s)
        diff = cv2.GaussianBlur(fake - real, (k, k), s, borderType=cv2.BORDER_CONSTANT)
        fake = real + diff
        mask = cv2.GaussianBlur(mask, (k, k), s, borderType=cv2.BORDER_CONSTANT)
    out = np.clip(np.rint(fake), 0, 255).astype(np.uint8)
    return out, mask.astype(np.float32)


def amplitude_mix(fake: np.ndarray, real: np.ndarray, rng: np.random.Generator, *,
                  band: tuple[float, float] = (0.02, 0.08), ratio: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """A low-quality fake made more realistic: the low-frequency Fourier amplitude of a real crop
    mixed into it, its phase (the structure: face, edges, blending seam) kept.

    Colour casts, illumination mismatch and the smooth gradients of a poor swap live in the
    lowest frequencies' amplitude; taking them from a real face (the fake's source real where
    known) removes those easy cues while the forgery's structure stays, i.e. a harder fake
    (the frequency augmentation of quality-centric training, after Fourier domain adaptation,
    Yang & Soatto 2020). Unlike `self_blend`'s high-pass mixing it needs no pixel-aligned pair.
    `band` is the half-width of the centred low-frequency square as a fraction of the side,
    `ratio` the real's share there; both drawn per call.
    """
    if fake.shape != real.shape or fake.dtype != np.uint8:
        raise ValueError(f"amplitude_mix: expected two uint8 images of one shape, got {fake.shape} and {real.shape}")
    h, w = fake.shape[:2]
    b = max(1, int(round(rng.uniform(*band) * min(h, w))))
    lam = float(rng.uniform(*ratio))
    f = np.fft.fftshift(np.fft.fft2(fake.astype(np.float32), axes=(0, 1)), axes=(0, 1))
    r = np.fft.fftshift(np.fft.fft2(real.astype(np.float32), axes=(0, 1)), axes=(0, 1))
    amp, phase = np.abs(f), np.angle(f)
    cy, cx = h // 2, w // 2
    win = (slice(cy - b, cy + b + 1), slice(cx - b, cx + b + 1))
    amp[win] = (1.0 - lam) * amp[win] + lam * np.abs(r[win])
    out = np.fft.ifft2(np.fft.ifftshift(amp * np.exp(1j * phase), axes=(0, 1)), axes=(0, 1)).real
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
