"""Face detection with the MediaPipe Tasks FaceDetector over the vendored .tflite models.

IMAGE running mode on purpose: VIDEO mode demands strictly increasing timestamps for the
detector's whole life, which breaks as soon as one detector serves several files.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from dfscan.core.errors import InputError
from dfscan.scanner.assets import face_model_path

# Keypoint order of the MediaPipe face detector (the subject's right eye is on the image left).
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
RIGHT_EYE, LEFT_EYE = 0, 1


@dataclass
class Detection:
    """One face: box (x, y, w, h) and keypoints (6, 2) in source pixels, score in [0, 1].

    `interpolated`: placed between two detections on a frame the detector skipped (dfscan.scanner.interpolate).
    """

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float
    interpolated: bool = False


# Model input side (the model sees the frame letterboxed to this square).
MODEL_INPUT = {"full": 192, "short": 128}
# Smallest face width, in model-input pixels, found reliably: measured on the 22 faces of the
# group photos cut out at set sizes, "full" finds 22/22 at 20 px, 21/22 at 16, 17/22 at 12, 6/22
# at 8; "short" 22/22 at 24, 21/22 at 20, 18/22 at 16, 7/22 at 12.
MIN_FACE_MODEL_PX = {"full": 16, "short": 20}
# Tiles overlap by this share of their side: any face up to this size lies whole in one tile.
TILE_OVERLAP = 0.25
# Tile candidates are cut at this score (more small faces), then confirmed in a close crop
# (bench/small_faces.py, shrunk group photos: 39/44 faces with candidates from 0.3, 38/44 from 0.5).
TILE_SCORE = 0.3
# The confirmation crop, in face sizes: the face is then ~192/3 = 64 model px.
CONFIRM_SPAN = 3.0
# Score the confirmation must reach. Measured over 218 tile candidates that were faces (group
# photos shrunk 3-5x) and ~360 under 150 px on the shared media that were not (tiles of a third
# and a quarter of every file): at 0.5, 217 faces and 14 non-faces pass; at 0.65, 207 faces and
# one non-face (cloud-shaped letters); a stair railing in group_sample5.jpg confirms at 0.61.
CONFIRM_SCORE = 0.65
# Two boxes are one face when they overlap by this share of the smaller one.
NMS_OVERLAP = 0.5
# Tiles across the longer side: the tiled pass then sees faces ~2.5x smaller than the whole-frame
# pass, at a fixed number of tiles (6 on 16:9, 9 on 4:3) whatever the resolution.
TILES_ACROSS = 3
# Smallest tile side: tiles find faces down to ~side/20 (tiles of 640, 768 and 960 px found 42,
# 39 and 28 of 44 faces of 42-66 px); smaller tiles would add faces under ~32 px, too small to score.
MIN_TILE = 640

# Close-ups. The detector learnt faces with a head and shoulders around them: a face that fills
# the picture (a tight crop, a passport photo, a selfie) is mostly missed (298 of 400 tight
# 224-px DFDC crops, 164 of 300 UTKFace crops, none reserved; bench/closeups.py). Where a
# picture yields no face it is looked at again on a black margin as wide as itself on every
# side, so a face filling it fills a third of what the model sees (the recipe's training crops
# are located the same way, recipes/build_detector.py `locate_face`). Margin width, in picture
# sides:
MARGIN = 1.0
# A picture the detector is shown is first shrunk to this longer side: the model sees 192 (128)
# px of it anyway, and a 720p frame on its margin would be a 38 MB copy. Pictures up to a third
# of this (training crops: 200-224 px) are shown as they are.
MAX_SHOWN = 1024
# A margin face is kept only if it is a close-up the whole-picture pass could miss: its box's
# longer side at least this share of the picture's shorter side (the whole-picture pass finds
# faces down to a twelfth)...
CLOSEUP_MIN_SIZE = 0.3
# ...with at least this share of its box inside the picture (no_face.mp4's clouds fire as a
# face twice the frame's height, mostly over the black margin)...
CLOSEUP_INSIDE = 0.5
# ...and confirmed by both detectors: the full-range one on a square this many box sides wide
# and the short-range one (close-ups) on one this wide, the mean of their scores (0 where a
# model sees no face overlapping the box, scored from CLOSEUP_FLOOR) at least CLOSEUP_SCORE.
# Chosen on 1,652 no-face pictures (no-face frames of the four shared clips with no-face parts,
# square patches of them and face-free patches of the photos, 112-320 px) against 319 tight
# crops of the shared faces (0.9-2x the face box, 112 and 224 px) and 298 tight DFDC crops
# (not reserved), all missed by the whole-picture pass: 48 no-face pictures give a margin face
# passing the size and inside checks, none is confirmed (the best at 0.599); 282 of 319 shared
# crops and 289 of 298 DFDC crops are. Checked on 342 other no-face pictures (portrait-shaped,
# flipped, grey patches, shrunk frames): none confirmed; on 164 UTKFace crops (not reserved)
# the whole-picture pass missed: all found.
CLOSEUP_SPANS = {"full": 2.5, "short": 2.0}
CLOSEUP_SCORE = 0.6
CLOSEUP_FLOOR = 0.3


def reach(side: float, model: str = "full") -> float:
    """Smallest face (frame px) one pass over a square of `side` px finds reliably."""
    return side * MIN_FACE_MODEL_PX[model] / MODEL_INPUT[model]


def tiled_pass_due(pos: int, tile_every: int) -> bool:
    """Whether sampled position `pos` is on the tiled pass's schedule (for frames large enough to tile)."""
    return tile_every > 0 and pos % tile_every == 0


def tile_size(width: int, height: int, model: str = "full") -> int | None:
    """Tile side for a frame, or None when tiles would not at least halve the smallest face found.

    TILES_ACROSS tiles span the longer side; their overlap (a quarter of a tile, a tenth of the
    longer side) holds whole any face the whole-frame pass can miss (under `reach`, a twelfth),
    so a face cut by every tile containing it is one the whole-frame pass finds. Only the
    full-range model tiles: the short-range one is for close-ups, not crowds.
    """
    if model != "full":
        return None
    longer = max(width, height)
    side = max(MIN_TILE, int(np.ceil(longer / (TILES_ACROSS - (TILES_ACROSS - 1) * TILE_OVERLAP))))
    return side if 2 * side <= longer else None


def _axis_origins(length: int, side: int, overlap: float) -> list[int]:
    """Evenly spaced tile starts covering [0, length) with at least `overlap` shared between neighbours."""
    if side >= length:
        return [0]
    n = int(np.ceil((length - side) / (side * (1.0 - overlap)))) + 1
    return [int(round(i * (length - side) / (n - 1))) for i in range(n)]


def tile_grid(width: int, height: int, side: int, overlap: float = TILE_OVERLAP) -> list[tuple[int, int, int, int]]:
    """Square tiles (x0, y0, x1, y1) inside the frame, overlapping by >= `overlap` of their side."""
    if side < 1 or not 0.0 <= overlap < 1.0:
        raise InputError(f"tile side must be >= 1 and overlap in [0, 1), got {side}, {overlap}")
    xs, ys = _axis_origins(width, side, overlap), _axis_origins(height, side, overlap)
    return [(x, y, min(x + side, width), min(y + side, height)) for y in ys for x in xs]


def _shifted(det: Detection, dx: float, dy: float) -> Detection:
    """A tile's detection in frame coordinates."""
    x, y, w, h = det.box
    return Detection((x + dx, y + dy, w, h), det.keypoints + np.array([dx, dy], np.float32), det.score)


def _cut_by_tile(det: Detection, tile: tuple[int, int, int, int], width: int, height: int) -> bool:
    """True when the box crosses a tile edge inside the frame: a part face, whole in another tile."""
    x, y, w, h = det.box
    x0, y0, x1, y1 = tile
    return (x < 0 < x0) or (y < 0 < y0) or (x + w > x1 - x0 and x1 < width) or (y + h > y1 - y0 and y1 < height)


def box_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over the smaller box: a part-face box inside its whole face's box counts as 1."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    smaller = min(aw * ah, bw * bh)
    return iw * ih / smaller if smaller > 0 else 0.0


def _shown(image: np.ndarray, x0: int, y0: int, width: int, height: int,
           max_side: int | None = None) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The image's window [x0, x0 + width) x [y0, y0 + height) (black outside the image), shrunk
    to `max_side` when longer, and its mapping (ox, oy, fx, fy): shown pixel q is image pixel
    (q + o) / f.

    Shrinking resizes the image itself to whole pixels (so the scale is exact) before the black is
    added; an unshrunk window is an exact copy.
    """
    H, W = image.shape[:2]
    fx = fy = 1.0
    if max_side and max(width, height) > max_side:
        import cv2

        f = max_side / max(width, height)
        sw, sh = max(1, int(round(W * f))), max(1, int(round(H * f)))
        fx, fy = sw / W, sh / H
        while image.shape[1] >= 2 * sw and image.shape[0] >= 2 * sh:
            image = cv2.pyrDown(image)  # halvings smooth as they go (INTER_AREA at odd factors is ~10x slower)
        image = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_LINEAR)
        x0, y0 = int(round(x0 * fx)), int(round(y0 * fy))
        width, height = max(1, int(round(width * fx))), max(1, int(round(height * fy)))
        H, W = sh, sw
    out = np.zeros((height, width, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + width, W), min(y0 + height, H)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out, (float(x0), float(y0), fx, fy)


def _square_crop(image: np.ndarray, box: tuple[float, ...], span: float,
                 max_side: int | None = None) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A square `span` box sizes wide around the box's centre (black outside the frame), and its mapping (see _shown)."""
    x, y, w, h = box
    side = max(int(round(max(w, h) * span)), 1)
    x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
    return _shown(image, x0, y0, side, side, max_side)


def _unshown(det: Detection, mapping: tuple[float, float, float, float]) -> Detection:
    """A detection in a shown window (see _shown) in the image's pixels."""
    ox, oy, fx, fy = mapping
    x, y, w, h = det.box
    kp = ((det.keypoints.astype(np.float64) + (ox, oy)) / (fx, fy)).astype(np.float32)
    return Detection(((x + ox) / fx, (y + oy) / fy, w / fx, h / fy), kp, det.score)


def inside_share(box: tuple[float, ...], width: int, height: int) -> float:
    """The share of the box's area inside a width x height picture."""
    x, y, w, h = box
    iw = max(0.0, min(x + w, width) - max(x, 0.0))
    ih = max(0.0, min(y + h, height) - max(y, 0.0))
    return iw * ih / (w * h) if w > 0 and h > 0 else 0.0


def merge_detections(dets: list[Detection], threshold: float = NMS_OVERLAP) -> list[Detection]:
    """Greedy NMS, best score first: one face seen by the whole-frame pass and by tiles is kept once."""
    kept: list[Detection] = []
    for det in sorted(dets, key=lambda d: -d.score):
        if all(box_overlap(det.box, k.box) < threshold for k in kept):
            kept.append(det)
    return kept


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


# The MediaPipe modules the face detector uses. `import mediapipe` runs package __init__s that
# import every task, and matplotlib (drawing utils) and sounddevice (audio) with them: 0.40 s of
# each scan worker's start-up on the 2-core dev box, against 0.04 s for these modules alone.
_MP_PACKAGES = ("mediapipe", "mediapipe.tasks", "mediapipe.tasks.python", "mediapipe.tasks.python.vision")
_MP_MODULES = {
    "Image": ("mediapipe.tasks.python.vision.core.image", "Image"),
    "ImageFormat": ("mediapipe.tasks.python.vision.core.image", "ImageFormat"),
    "BaseOptions": ("mediapipe.tasks.python.core.base_options", "BaseOptions"),
    "FaceDetector": ("mediapipe.tasks.python.vision.face_detector", "FaceDetector"),
    "FaceDetectorOptions": ("mediapipe.tasks.python.vision.face_detector", "FaceDetectorOptions"),
    "RunningMode": ("mediapipe.tasks.python.vision.core.vision_task_running_mode", "VisionTaskRunningMode"),
}
_MP_LOCK = threading.Lock()


def _is_mediapipe(name: str) -> bool:
    return name == "mediapipe" or name.startswith("mediapipe.")


@functools.cache
def _import_mediapipe() -> SimpleNamespace:
    """The face detector's MediaPipe classes: its own modules only where that works, else the normal import."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _MP_LOCK:
        if "mediapipe" not in sys.modules:
            try:
                return _face_detector_modules()
            except Exception:  # another layout of the package (a version this was not written for)
                pass
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    return SimpleNamespace(Image=mp.Image, ImageFormat=mp.ImageFormat, BaseOptions=BaseOptions,
                           FaceDetector=vision.FaceDetector, FaceDetectorOptions=vision.FaceDetectorOptions,
                           RunningMode=vision.RunningMode)


def _face_detector_modules() -> SimpleNamespace:
    """Load _MP_MODULES with the packages above them entered bare (their __init__ not run).

    Every mediapipe entry of sys.modules is put back as it was afterwards, so a later
    `import mediapipe` (by a user of this process) loads the whole package as usual. Another
    thread importing mediapipe meanwhile would see a bare package: dfscan makes its detectors
    on one thread.
    """
    saved = {name: module for name, module in sys.modules.items() if _is_mediapipe(name)}
    try:
        for name in _MP_PACKAGES:  # each parent is in sys.modules, so find_spec runs no __init__
            spec = importlib.util.find_spec(name)
            if spec is None or spec.submodule_search_locations is None:
                raise ImportError(f"{name} is not a package")
            sys.modules[name] = importlib.util.module_from_spec(spec)
        # the native library is found through its package: load it now (an older layout fails
        # here, before the rest is loaded for nothing)
        importlib.import_module("mediapipe.tasks.python.core.mediapipe_c_bindings").load_raw_library()
        return SimpleNamespace(**{key: getattr(importlib.import_module(module), attr)
                                  for key, (module, attr) in _MP_MODULES.items()})
    finally:
        for name in [name for name in sys.modules if _is_mediapipe(name)]:
            del sys.modules[name]
        sys.modules.update(saved)


class FaceDetector:
    """MediaPipe face detector; use as a context manager so close() always runs.

    `model` is "full" (full-range sparse, default: faces a few metres away, 192x192 input)
    or "short" (close-ups within ~2 m, 128x128 input). `tile_score` is the cut for tile
    candidates of `detect_tiled`, which must then be confirmed at `min_score`.
    """

    def __init__(self, model: str = "full", min_score: float = 0.5, tile_score: float = TILE_SCORE) -> None:
        if not 0.0 <= min_score <= 1.0 or not 0.0 <= tile_score <= 1.0:
            raise InputError(f"min_score and tile_score must be in [0, 1], got {min_score}, {tile_score}")
        path = face_model_path(model)
        if not path.is_file():
            raise InputError(f"face model file missing: {path}")
        self._mp = _import_mediapipe()
        self.model = model
        self.min_score = min_score
        self.tile_score = tile_score
        self._path = path
        self._loose = None  # the tile candidates' detector, made on first use
        self._closeup: dict = {}  # model name → the close-up confirmation's detector, made on first use
        self._detector = self._create(min_score)

    def _create(self, score: float, path=None):
        """A MediaPipe detector at this score cut (of model file `path`, default ours), warmed up
        while its start-up chatter is silenced."""
        mp = self._mp
        options = mp.FaceDetectorOptions(
            base_options=mp.BaseOptions(model_asset_path=str(path or self._path)),
            running_mode=mp.RunningMode.IMAGE,
            min_detection_confidence=score,
        )
        with _quiet_stderr():
            detector = mp.FaceDetector.create_from_options(options)
            # the first inference builds the XNNPACK graph and logs: warm up while silenced
            detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8)))
        return detector

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one uint8 RGB (H, W, 3) image, best first (one pass over the whole picture)."""
        self._check(image)
        return self._run(self._detector, image)

    def _check(self, image: np.ndarray) -> None:
        if self._detector is None:
            raise RuntimeError("FaceDetector is closed")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")

    def detect_on_margin(self, image: np.ndarray) -> list[Detection]:
        """Faces of the picture shown on a black margin MARGIN picture sides wide all round, best first.

        A face filling the picture then fills about a third of what the model sees. The bordered
        picture is shrunk to MAX_SHOWN first when longer. Boxes and keypoints come back in the
        picture's pixels, shifted (and scaled) back and not clipped to it: a tight crop's face box
        is often larger than the crop, and crop_face's square around the box is then exactly the
        one it would cut from the bordered picture (black outside), as training crops are cut.
        Nothing here checks that a face is a close-up (see detect_closeup): the recipe's
        `locate_face` calls this on pictures known to be face crops.
        """
        self._check(image)
        h, w = image.shape[:2]
        pad = int(round(MARGIN * max(h, w)))
        shown, mapping = _shown(image, -pad, -pad, w + 2 * pad, h + 2 * pad, MAX_SHOWN)
        return [_unshown(d, mapping) for d in self._run(self._detector, shown)]

    def detect_closeup(self, image: np.ndarray) -> list[Detection]:
        """The close-up faces of a picture, for one in which the whole-picture pass found none.

        detect_on_margin's faces that are large in the picture, lie mostly inside it and are
        confirmed by both models (the CLOSEUP_* constants), best first. Costs one pass over the
        shrunk bordered picture, plus up to two small ones per face that passes the size checks
        (rare on pictures without faces: 48 of 1,652 measured).
        """
        h, w = image.shape[:2]
        kept = []
        for d in self.detect_on_margin(image):
            if max(d.box[2], d.box[3]) < CLOSEUP_MIN_SIZE * min(h, w) or inside_share(d.box, w, h) < CLOSEUP_INSIDE:
                continue
            total = 0.0
            for i, model in enumerate(CLOSEUP_SPANS):
                total += self._closeup_score(image, d, model)
                if total + (len(CLOSEUP_SPANS) - 1 - i) < CLOSEUP_SCORE * len(CLOSEUP_SPANS):
                    break  # the mean can no longer reach the cut
            else:
                kept.append(d)
        return kept

    def _closeup_score(self, image: np.ndarray, candidate: Detection, model: str) -> float:
        """`model`'s best score for a face overlapping the candidate, in a square CLOSEUP_SPANS[model]
        box sides wide around it; 0 if none."""
        if model not in self._closeup:
            self._closeup[model] = self._create(CLOSEUP_FLOOR, face_model_path(model))
        crop, mapping = _square_crop(image, candidate.box, CLOSEUP_SPANS[model], MAX_SHOWN)
        scores = [d.score for d in self._run(self._closeup[model], crop)
                  if box_overlap(_unshown(d, mapping).box, candidate.box) >= NMS_OVERLAP]
        return max(scores, default=0.0)

    def detect_tiled(self, image: np.ndarray, tile: int | None = None, overlap: float = TILE_OVERLAP) -> list[Detection]:
        """The whole-frame faces plus the small faces found in overlapping square tiles, best first.

        The model sees the frame letterboxed to its input, so faces under ~1/12 of the longer
        side are missed; a tile is seen at tile/input instead. Whole-frame faces are kept as
        they are (tiled and plain frames of a video give the same boxes); tile candidates
        (score >= tile_score, not cut by an inner tile edge, merged by NMS) that add a face are
        kept only once confirmed at CONFIRM_SCORE in a close crop, which rejects the textures
        (railings, hands, cartoons) tiles fire on. `tile=None` takes `tile_size(...)`; without
        tiles (a frame small enough already) this is `detect`.
        """
        plain = self.detect(image)
        h, w = image.shape[:2]
        side = tile_size(w, h, self.model) if tile is None else tile
        if not side:
            return plain
        if self._loose is None:
            self._loose = self._create(self.tile_score)
        candidates: list[Detection] = []
        for box in tile_grid(w, h, side, overlap):
            x0, y0, x1, y1 = box
            found = self._run(self._loose, image[y0:y1, x0:x1])
            candidates += [_shifted(d, x0, y0) for d in found if not _cut_by_tile(d, box, w, h)]
        new = [c for c in merge_detections(candidates) if all(box_overlap(c.box, p.box) < NMS_OVERLAP for p in plain)]
        confirmed = [d for d in (self._confirm(image, c) for c in new) if d is not None]
        return plain + [d for d in merge_detections(confirmed) if all(box_overlap(d.box, p.box) < NMS_OVERLAP for p in plain)]

    def detect_sampled(self, image: np.ndarray, pos: int, tile_every: int) -> tuple[list[Detection], float]:
        """Faces of sampled frame `pos` and the smallest face size searched there (track_faces' reach).

        Frames that need tiles get the tiled pass on every `tile_every`-th position (0: never) and
        the plain pass between, so tiles cost 1/tile_every of the frames; the tracker joins the
        small faces across the plain frames, where they were not looked for (reach > their size).
        A frame where these find no face is looked at for close-ups (detect_closeup). The scan's
        stage detects only through here, so scan, extract-faces and doctor all get the same faces.
        """
        h, w = image.shape[:2]
        side = tile_size(w, h, self.model) if tile_every > 0 else None
        if side is None:
            dets, searched = self.detect(image), 0.0
        elif tiled_pass_due(pos, tile_every):
            dets, searched = self.detect_tiled(image, side), 0.0
        else:
            dets, searched = self.detect(image), reach(max(w, h), self.model)
        return (dets or self.detect_closeup(image)), searched

    def _confirm(self, image: np.ndarray, candidate: Detection) -> Detection | None:
        """The candidate re-detected at CONFIRM_SCORE in a crop CONFIRM_SPAN face sizes wide, or None.

        In the crop the face is ~input/CONFIRM_SPAN model px, well above the reliable size; the
        re-detection (sharper box and keypoints) replaces the candidate.
        """
        crop, mapping = _square_crop(image, candidate.box, CONFIRM_SPAN)
        for d in self._run(self._detector, crop):  # best first
            d = _unshown(d, mapping)
            if box_overlap(d.box, candidate.box) >= NMS_OVERLAP:
                return d if d.score >= max(self.min_score, CONFIRM_SCORE) else None
        return None

    def _run(self, detector, image: np.ndarray) -> list[Detection]:
        """One MediaPipe pass; boxes and keypoints in this image's pixels, best first."""
        # mp.Image copies the buffer as if packed: a row-padded view would be read skewed.
        data = np.ascontiguousarray(image)
        h, w = data.shape[:2]
        result = detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=data))
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
        """Release the native graphs now; their __del__ can raise at interpreter exit otherwise."""
        dets = (getattr(self, "_detector", None), getattr(self, "_loose", None), *getattr(self, "_closeup", {}).values())
        self._detector = self._loose = None
        self._closeup = {}
        for det in dets:
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
