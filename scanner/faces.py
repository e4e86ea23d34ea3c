"""Face detection with the MediaPipe Tasks FaceDetector over the vendored .tflite models.

IMAGE running mode on purpose: VIDEO mode demands strictly increasing timestamps for the
detector's whole life, which breaks as soon as one detector serves several files.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

import numpy as np

from scanner.assets import face_model_path
from train.errors import InputError

# Keypoint order of the MediaPipe face detector (the subject's right eye is on the image left).
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
RIGHT_EYE, LEFT_EYE = 0, 1


@dataclass
class Detection:
    """One face: box (x, y, w, h) and keypoints (6, 2) in source pixels, score in [0, 1]."""

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the C++ start-up lines (XNNPACK delegate, absl warnings) MediaPipe writes to fd 2."""
    if os.environ.get("DFSCAN_DEBUG"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _import_mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    return mp, BaseOptions, vision


class FaceDetector:
    """MediaPipe face detector; use as a context manager so close() always runs.

    `model` is "full" (full-range sparse, default: faces a few metres away, 192x192 input)
    or "short" (close-ups within ~2 m, 128x128 input).
    """

    def __init__(self, model: str = "full", min_score: float = 0.5) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise InputError(f"min_score must be in [0, 1], got {min_score}")
        path = face_model_path(model)
        if not path.is_file():
            raise InputError(f"face model file missing: {path}")
        mp, BaseOptions, vision = _import_mediapipe()
        self._mp = mp
        self.model = model
        self.min_score = min_score
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_score,
        )
        with _quiet_stderr():
            self._detector = vision.FaceDetector.create_from_options(options)
            # the first inference builds the XNNPACK graph and logs: warm up while silenced
            self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8)))

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one uint8 RGB (H, W, 3) image, best first."""
        if self._detector is None:
            raise RuntimeError("FaceDetector is closed")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
        # mp.Image copies the buffer as if packed: a row-padded view would be read skewed.
        data = np.ascontiguousarray(image)
        h, w = data.shape[:2]
        result = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=data))
        out: list[Detection] = []
        for det in result.detections:
            bb = det.bounding_box
            score = float(det.categories[0].score) if det.categories else 0.0
            kps = np.full((len(KEYPOINT_NAMES), 2), np.nan, dtype=np.float32)
            for i, kp in enumerate((det.keypoints or [])[: len(KEYPOINT_NAMES)]):
                kps[i] = (kp.x * w, kp.y * h)
            out.append(Detection((float(bb.origin_x), float(bb.origin_y), float(bb.width), float(bb.height)), kps, score))
        out.sort(key=lambda d: -d.score)
        return out

    def close(self) -> None:
        """Release the native graph now; its __del__ can raise at interpreter exit otherwise."""
        det, self._detector = getattr(self, "_detector", None), None
        if det is not None:
            with _quiet_stderr():  # it logs "DestroyAccelerator" lines on the way out
                det.close()

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
