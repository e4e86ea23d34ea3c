"""Where the package's vendored files live, so no code hard-codes a path."""

from __future__ import annotations

from pathlib import Path

from dfscan.core.errors import InputError

ASSETS = Path(__file__).resolve().parent / "assets"
FACE_MODELS = {
    "full": ASSETS / "mediapipe" / "face_detection_full_range_sparse.tflite",
    "short": ASSETS / "mediapipe" / "face_detection_short_range.tflite",
}
DEFAULT_WEIGHTS = ASSETS / "detector" / "pgfdd_efficientnet_lite0_dfdc_utk.safetensors"


def face_model_path(name: str = "full") -> Path:
    """The vendored MediaPipe model for `--face-model full|short`."""
    if name not in FACE_MODELS:
        raise InputError(f"unknown face model {name!r}: choose one of {', '.join(FACE_MODELS)}")
    return FACE_MODELS[name]


def default_weights() -> Path:
    """The shipped detector; a clear error if this install lacks it."""
    if not DEFAULT_WEIGHTS.is_file():
        raise InputError(
            f"the default detector weights are missing ({DEFAULT_WEIGHTS}); pass --weights PATH "
            "or rebuild them with python recipes/build_detector.py (see MODEL_CARD.md)"
        )
    return DEFAULT_WEIGHTS
