"""Training augmentations on uint8 RGB crops (numpy + OpenCV; no torchvision on these machines).

Each transform draws from a caller-supplied `numpy.random.Generator`, so a sample's
augmentation is fixed by its seed whichever DataLoader worker makes it. JPEG re-compression
and blur matter most for a deepfake detector: uploads are re-encoded, and a model that keys
on pristine high frequencies fails on the first WhatsApp-forwarded clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def hflip(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[:, ::-1])


def color_jitter(img: np.ndarray, rng: np.random.Generator, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue_deg: float = 6.0) -> np.ndarray:
    """Brightness/contrast/saturation factors in [1-x, 1+x] and a hue shift, in random order."""
    out = img.astype(np.float32)
    ops = rng.permutation(4)
    for op in ops:
        if op == 0 and brightness:
            out = out * rng.uniform(1 - brightness, 1 + brightness)
        elif op == 1 and contrast:
            mean = out.mean()
            out = (out - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
        elif op == 2 and saturation:
            grey = out @ np.array([0.299, 0.587, 0.114], np.float32)
            out = (out - grey[..., None]) * rng.uniform(1 - saturation, 1 + saturation) + grey[..., None]
        elif op == 3 and hue_deg:
            hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
            shift = int(round(rng.uniform(-hue_deg, hue_deg) / 2.0))  # OpenCV hue is 0..179 (2 degrees a step)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def scale_jitter(img: np.ndarray, rng: np.random.Generator, zoom: tuple[float, float] = (0.9, 1.2)) -> np.ndarray:
    """Zoom about the centre by a random factor (black outside the image, as the scanner's crop).

    Training crops cut from tight source crops carry black borders the scanner's crops of full
    frames do not; zooming in now and then shows the model the face without them.
    """
    z = rng.uniform(*zoom)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), 0.0, z)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def gaussian_blur(img: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float] = (0.3, 1.5)) -> np.ndarray:
    s = rng.uniform(*sigma)
    k = 2 * int(np.ceil(3 * s)) + 1
    return cv2.GaussianBlur(img, (k, k), s)


def jpeg(img: np.ndarray, rng: np.random.Generator, quality: tuple[int, int] = (40, 95)) -> np.ndarray:
    """Encode and decode as JPEG at a random quality (OpenCV works in BGR)."""
    q = int(rng.integers(quality[0], quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:  # OpenCV cannot fail on a valid uint8 image; keep the sample rather than crash a worker
        return img
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:  # as above: never on the bytes just encoded
        return img
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def h264(img: np.ndarray, crf: int) -> np.ndarray:
    """One frame through libx264 at `crf` (yuv420p: halved chroma, deblocked blocks), decoded by PyAV.

    A scanned upload has been through a video codec, often twice; JPEG alone does not show a
    model 4:2:0 chroma or H.264's deblocking, and reals re-encoded at CRF 30-36 otherwise read fake."""
    import io

    import av

    h, w = img.shape[:2]
    even = np.ascontiguousarray(img[: h - h % 2, : w - w % 2])
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = even.shape[1], even.shape[0], "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "stillimage"}
        for packet in stream.encode(av.VideoFrame.from_ndarray(even, format="rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf, "r") as inp:
        frame: np.ndarray = np.ascontiguousarray(next(inp.decode(video=0)).to_ndarray(format="rgb24"))
    return cv2.resize(frame, (w, h)) if frame.shape[:2] != (h, w) else frame


def half_scale(img: np.ndarray) -> np.ndarray:
    """Down to half size and back: the detail a small face in a wide shot has."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def video(img: np.ndarray, rng: np.random.Generator, crf: tuple[int, int] = (23, 38)) -> np.ndarray:
    """What a video upload does to a face: half the time a downscale, then H.264 at a random CRF."""
    if rng.random() < 0.5:
        img = half_scale(img)
    return h264(img, int(rng.integers(crf[0], crf[1] + 1)))


@dataclass
class Augment:
    """The training pipeline: each step applied with its probability, in a fixed order.

    Flip first (geometry), then colour, then the degradations in the order a real upload
    suffers them (blur from scaling, then compression).
    """

    p_flip: float = 0.5
    p_scale: float = 0.0
    p_color: float = 0.5
    p_blur: float = 0.2
    p_jpeg: float = 0.3
    p_video: float = 0.0

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.p_flip:
            img = hflip(img)
        if self.p_scale and rng.random() < self.p_scale:
            img = scale_jitter(img, rng)
        if rng.random() < self.p_color:
            img = color_jitter(img, rng)
        if rng.random() < self.p_blur:
            img = gaussian_blur(img, rng)
        if self.p_video and rng.random() < self.p_video:
            img = video(img, rng)
        elif rng.random() < self.p_jpeg:
            img = jpeg(img, rng)
        return np.ascontiguousarray(img)
