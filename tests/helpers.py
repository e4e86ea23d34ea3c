"""Plain helpers and constants several test modules share (fixtures are in conftest.py).

Test modules import from here, never from each other. Heavy libraries (torch, PyAV, OpenCV, the
scanner's pipeline) are imported inside the functions that need them, so a module that wants
only a path or a CSV writer does not load them.
"""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

# The fixture models take 128-px crops: the code under test does not depend on the size (the
# shipped model's is in its config), and inference and scans cost a quarter of 256 px.
TEST_SIZE = 128

MEDIA = Path(__file__).parent / "data" / "media"
IMAGES = MEDIA / "images"
VIDEOS = MEDIA / "videos"
FACE_CLIP = VIDEOS / "single_face.mp4"  # 72 frames, 30 fps, H.264 in MP4


# ---------------------------------------------------------------------------------------------
# CSV files


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """Write `header` then `rows` to `path` as CSV."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def read_rows(path: Path) -> list[dict]:
    """A CSV file's rows as dicts keyed by its header."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------------------------
# generated training crops


def face_like(rng: np.random.Generator, fake: bool = False, group: tuple[int, int] | None = None
              ) -> tuple[np.ndarray, list[float]]:
    """A 256x256 RGB crop with a face-shaped ellipse and eyes, and its 6 keypoints.

    Fakes carry a blurred, brightened square over the face: a blending-like artefact a model
    can learn in a few steps. `group` (two binary attributes) sets the background and face
    tones, so the demographic head has something to learn too."""
    import cv2

    if group is None:
        bg, face = rng.integers(60, 200, 3), rng.integers(120, 230, 3)
    else:
        bg = np.array([60, 170, 80] if group[0] else [70, 90, 190]) + rng.integers(-15, 16, 3)
        face = np.array([225, 190, 160] if group[1] else [150, 105, 80]) + rng.integers(-15, 16, 3)
    img = np.full((256, 256, 3), bg, np.uint8)
    img = (img.astype(np.float32) + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
    cx, cy = 128 + int(rng.integers(-8, 9)), 136 + int(rng.integers(-8, 9))
    cv2.ellipse(img, (cx, cy), (70, 90), 0, 0, 360, tuple(int(v) for v in face), -1)
    for dx in (-28, 28):
        cv2.circle(img, (cx + dx, cy - 25), 8, (30, 30, 30), -1)
    cv2.ellipse(img, (cx, cy + 40), (18, 6), 0, 0, 360, (150, 60, 60), -1)
    if fake:
        patch = img[100:170, 90:170].astype(np.int16)
        img[100:170, 90:170] = np.clip(cv2.GaussianBlur(patch.astype(np.uint8), (9, 9), 3).astype(np.int16) + 25, 0, 255)
    kp = [cx - 28, cy - 25, cx + 28, cy - 25, cx, cy + 5, cx, cy + 40, cx - 70, cy - 5, cx + 70, cy - 5]
    return img, [float(v) for v in kp]


def make_crops(root: Path, n: int = 24, *, seed: int = 0, fakes: bool = True, name: str = "manifest.csv",
               groups: list[str] | None = None) -> Path:
    """Write n generated crops (every other one fake when `fakes`) and a dfscan manifest.

    Attribute columns gender (i%3==0 male) and race (i%4<2 asian) are shown by the background
    and face tones; with `groups` a `group` column is written instead and the background shows
    the group (sorted index parity)."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    (root / "crops").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        fake = fakes and i % 2 == 1
        cue = (int(i % 3 == 0), int(i % 4 >= 2)) if groups is None else (sorted(set(groups)).index(groups[i]) % 2, 0)
        img, kp = face_like(rng, fake, cue)
        rel = f"crops/{seed}_{i:03d}.png"
        cv2.imwrite(str(root / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        row = {"path": rel, "label": "fake" if fake else "real", "gender": "female" if i % 3 else "male",
               "race": "asian" if i % 4 < 2 else "white", "source": f"video{i // 4}.mp4", "subject": "0",
               "frame": str(i), "kp": " ".join(f"{v:.2f}" for v in kp)}
        if groups is not None:
            row = {"path": rel, "label": row["label"], "group": groups[i], "kp": row["kp"]}
        rows.append(row)
    path = root / name
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def train_options(sets: tuple[Path, Path], out: Path, **kw):
    """TrainOptions for a short CPU run on (train, val) manifests; `kw` overrides any field.

    64-px crops: the loop's behaviour does not depend on the input size, the run time does."""
    from dfscan.train.loop import TrainOptions

    base = dict(train=sets[0], val=sets[1], out=out, epochs=2, batch_size=2, device="cpu",
                max_steps_per_epoch=3, pretrained=False, num_workers=0, lr=0.02, seed=0, input_size=64)
    base.update(kw)
    return TrainOptions(**base)


# ---------------------------------------------------------------------------------------------
# crops of the shared face photos and a checkpoint whose scores spread

FACE_IMAGES = ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "single_face.jpg",
               "astronaut.png"]


def real_crops(n: int | None = None, size: int = TEST_SIZE) -> np.ndarray:
    """Face photos from tests/data/media (aligned portraits), resized to the fixture models' input, uint8 RGB."""
    import cv2

    names = FACE_IMAGES if n is None else [FACE_IMAGES[i % len(FACE_IMAGES)] for i in range(n)]
    out = []
    for i, name in enumerate(names):
        img = cv2.imread(str(IMAGES / name), cv2.IMREAD_COLOR)[:, :, ::-1]
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        out.append(np.roll(img, 7 * (i // len(FACE_IMAGES)), axis=1))  # repeats differ a little
    return np.ascontiguousarray(np.stack(out))


def sharpen_checkpoint(src: Path, dst: Path) -> Path:
    """A random-init checkpoint gives p_fake ≈ 0.47 for everything, which would hide graph errors.

    Rebuild head_fused's last layer as ±d/2 with d = s·(l1 - l0) centred on these crops, so p
    spreads (~0.02 to ~0.95) while each logit stays small, as in a trained model.
    """
    import torch

    from dfscan.engines.export import torch_reference
    from dfscan.train.checkpoint import load_checkpoint, save_checkpoint

    model, config, info = load_checkpoint(src)
    crops = real_crops()
    p = torch_reference(model, crops, config).astype(np.float64)
    logit = np.log(p / (1 - p))
    scale = 2.0 / logit.std()
    last = model.head_fused.mlp[2]
    with torch.no_grad():
        w = (last.weight[1] - last.weight[0]) * scale / 2
        b = ((last.bias[1] - last.bias[0]) - float(logit.mean())) * scale / 2
        last.weight.copy_(torch.stack([-w, w]))
        last.bias.copy_(torch.stack([-b, b]))
    return save_checkpoint(dst, model, config, threshold=info["threshold"], provenance={"note": "sharpened test"})


# ---------------------------------------------------------------------------------------------
# scans


def scan_options(weights: Path, **kw):
    """ScanOptions for a small test scan (torch backend, 12 frames, 2 workers); `kw` overrides any field."""
    from dfscan.scanner.pipeline import ScanOptions

    base = dict(weights=weights, backend="torch", frames=12, workers=2, batch_size=16, timeout=120)
    base.update(kw)
    return ScanOptions(**base)


def by_name(report: dict) -> dict[str, dict]:
    """A report's items keyed by their file name."""
    return {Path(i["path"]).name: i for i in report["items"]}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# The error code the scan gives each file make_broken_inputs writes.
EXPECTED_CODES = {"zero.mp4": "empty_file", "random.mp4": "not_media", "notes.mov": "not_media",
                  "truncated.mp4": "truncated", "huge.png": "too_large", "audio_only.mp4": "no_video_stream",
                  "x.mp4": "is_directory"}


def make_broken_inputs(folder: Path) -> dict[str, Path]:
    """The broken files of issue 3, each made for real (no mocks)."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    out["zero"] = folder / "zero.mp4"
    out["zero"].write_bytes(b"")
    out["random"] = folder / "random.mp4"
    out["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    out["text"] = folder / "notes.mov"
    out["text"].write_text("this is not a movie\n" * 50)
    src = FACE_CLIP.read_bytes()  # its moov atom is at the end: cutting it loses the index
    out["truncated"] = folder / "truncated.mp4"
    out["truncated"].write_bytes(src[: len(src) // 2])
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    out["huge_png"] = folder / "huge.png"
    out["huge_png"].write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
                                + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))
    out["audio_only"] = folder / "audio_only.mp4"
    with av.open(str(out["audio_only"]), "w") as c:
        stream = c.add_stream("aac", rate=44100)
        t = np.arange(1024 * 40) / 44100
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for i in range(40):
            frame = av.AudioFrame.from_ndarray(samples[:, i * 1024:(i + 1) * 1024], format="fltp", layout="mono")
            frame.sample_rate = 44100
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    out["folder"] = folder / "x.mp4"
    out["folder"].mkdir()
    return out


# ---------------------------------------------------------------------------------------------
# damaged and odd media (issue 11)


def damage_packets(src: Path, dst: Path, which) -> Path:
    """Copy `src` with the 4-byte NAL length of each packet `which(i)` picks set to ff ff ff f0."""
    import av

    with av.open(str(src)) as c:
        positions = [p.pos for p in c.demux(c.streams.video[0]) if p.size > 0]
    data = bytearray(src.read_bytes())
    for i, pos in enumerate(positions):
        if which(i):
            data[pos:pos + 4] = b"\xff\xff\xff\xf0"
    dst.write_bytes(bytes(data))
    return dst


def face_frame(i: int = 30) -> np.ndarray:
    """Frame i of FACE_CLIP, RGB."""
    import av

    with av.open(str(FACE_CLIP)) as c:
        for n, f in enumerate(c.decode(video=0)):
            if n == i:
                return f.to_ndarray(format="rgb24")
    raise AssertionError("clip too short")


def two_stream_mkv(path: Path) -> Path:
    """An MKV whose first video stream is small and faceless, its second the face clip (20 frames)."""
    return two_stream_video(path, decoy_size=(160, 90), face_size=(640, 360), frames=20, decoy_grey=lambda i: 40 + i)


def two_stream_video(path: Path, *, decoy_size: tuple[int, int], face_size: tuple[int, int], frames: int,
                     decoy_grey: Callable[[int], int], face_default: bool = False) -> Path:
    """H.264 video whose stream 0 is a flat grey decoy (grey level decoy_grey(i) at frame i) and
    stream 1 the face clip; with `face_default` the face stream alone has the default disposition."""
    from fractions import Fraction

    import av

    with av.open(str(FACE_CLIP)) as inp, av.open(str(path), "w") as out:
        decoy = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        decoy.width, decoy.height, decoy.pix_fmt = *decoy_size, "yuv420p"
        main = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        main.width, main.height, main.pix_fmt = *face_size, "yuv420p"
        if face_default:
            decoy.disposition, main.disposition = 0, av.stream.Disposition.default
        for i, f in enumerate(inp.decode(video=0)):
            if i == frames:
                break
            flat = np.full((decoy_size[1], decoy_size[0], 3), decoy_grey(i), np.uint8)
            for picture, stream in ((av.VideoFrame.from_ndarray(flat, format="rgb24"), decoy),
                                    (f.reformat(width=face_size[0], height=face_size[1], format="yuv420p"), main)):
                picture.pts, picture.time_base = i, Fraction(1, 30)
                for p in stream.encode(picture):
                    out.mux(p)
        for st in (decoy, main):
            for p in st.encode():
                out.mux(p)
    return path


# ---------------------------------------------------------------------------------------------
# close-ups (issue 31): tight face crops, as DFDC's 224-px face crops and passport photos are


def tight_face_crops(detector, pictures, *, sizes=(112, 160, 224), scales=(1.0, 1.1)) -> list[tuple[np.ndarray, tuple]]:
    """(crop, face box in crop px) for each face the whole-picture pass finds in each RGB picture:
    a square `scale` x the face box's longer side around its centre, resized to `size` px (the
    picture's edge pixels repeated where the square leaves it, so no black border gives it away)."""
    import cv2

    out = []
    for picture in pictures:
        for face in detector.detect(picture):
            x, y, w, h = face.box
            for scale in scales:
                side = scale * max(w, h)
                x0, y0 = x + w / 2 - side / 2, y + h / 2 - side / 2
                for size in sizes:
                    s = size / side
                    m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]])
                    crop = cv2.warpAffine(picture, m, (size, size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REPLICATE)
                    out.append((np.ascontiguousarray(crop), ((x - x0) * s, (y - y0) * s, w * s, h * s)))
    return out


def box_iou(a: tuple, b: tuple) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)
