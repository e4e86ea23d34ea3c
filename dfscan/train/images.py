"""Crop files as model-sized uint8 pixels: the one reader for training and `dfscan scan --crops`.

Torch-free, so the scanner's workers can import it without loading torch.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dfscan.core.errors import InputError


def read_rgb(path: Path) -> np.ndarray:
    """The file's uint8 RGB pixels at its own size."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: cannot read the image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def centre_square(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(x0, y0, side) of the largest centred square of an (H, W, ...) image."""
    h, w = shape[:2]
    side = min(h, w)
    return (w - side) // 2, (h - side) // 2, side


def fit(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGB (size, size, 3): the centre square, resized to the model's input.

    The one way an already-cut crop becomes a model input, in training and in `dfscan scan
    --crops`, so that a non-square crop is cut, never squashed, on both sides.
    """
    x0, y0, side = centre_square(img.shape)
    img = img[y0:y0 + side, x0:x0 + side]
    if side != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
    return np.ascontiguousarray(img, dtype=np.uint8)


def fit_keypoints(kp: np.ndarray, shape: tuple[int, ...], size: int) -> np.ndarray:
    """Keypoints in a crop file's pixels → the same points in `fit(crop, size)`."""
    x0, y0, side = centre_square(shape)
    return (kp - np.array([x0, y0], dtype=kp.dtype)) * (size / side)


def load_image(path: Path, size: int) -> np.ndarray:
    """The crop at the model's input size (where its own size does not matter, e.g. no keypoints)."""
    return fit(read_rgb(path), size)


# What `dfscan scan --crops` and `dfscan train` take for "not a face crop": far from square (a
# crop is its face's square) or larger than any crop extract-faces writes (--size <= 1024).
CROP_MAX_ASPECT, CROP_MAX_SIDE = 1.25, 1024


def unlike_crop(width: int, height: int) -> bool:
    """True for a picture that is not a face crop: far from square, or much larger than a crop."""
    return bool(width and height) and (max(width, height) > CROP_MAX_ASPECT * min(width, height)
                                       or min(width, height) > CROP_MAX_SIDE)


def unlike_crops_sampled(paths: list[Path], limit: int = 32) -> tuple[int, list[tuple[Path, int, int]]]:
    """(images checked, those that do not look like face crops with their size), of up to `limit`
    paths spread evenly over `paths`; only headers are read, so it costs milliseconds."""
    from PIL import Image

    picked = paths if len(paths) <= limit else [paths[round(i * (len(paths) - 1) / (limit - 1))] for i in range(limit)]
    checked, odd = 0, []
    for path in picked:
        try:
            with Image.open(path) as img:
                w, h = img.size
        except (OSError, ValueError):  # unreadable: the data loader says so, with its row number
            continue
        checked += 1
        if unlike_crop(w, h):
            odd.append((path, w, h))
    return checked, odd
