"""Build dfscan's default detector from DFDC face crops and UTKFace, on folders you downloaded.

    python recipes/build_detector.py prepare --dfdc DFDC_DIR --utkface UTK_DIR --reserved RESERVED_DIR \\
        --work runs/detector
    python recipes/build_detector.py train --work runs/detector                    # 3 epochs, lr 3e-4
    python recipes/build_detector.py train --work runs/detector --run ft --init-from \
        runs/detector/run/last.safetensors --lr 1e-4 --cosine --epochs 4 --keep-epochs  # a fine-tuning stage
    python recipes/build_detector.py average --work runs/detector --run ft-avg \
        runs/detector/ft/epoch3.safetensors runs/detector/ft/epoch4.safetensors   # weight average of epochs
    python recipes/build_detector.py evaluate --work runs/detector --checkpoint runs/detector/ft/best.safetensors
    python recipes/build_detector.py fairness-set --work runs/detector
    python recipes/build_detector.py ship --work runs/detector --checkpoint runs/detector/ft/best.safetensors
    python recipes/build_detector.py ablation --work runs/detector --seeds 0 1 2 [--dry-run]  # issue 15
    python recipes/build_detector.py ablation-table --work runs/detector --seeds 0 1 2

DFDC_DIR holds `metadata.csv` (videoname,...,label,original) and `faces_224/<video>.jpg` (one
face crop per DFDC video, as in the public `i-Shreyansh/DeepFake-Detection` snapshot); UTK_DIR
holds UTKFace's aligned `age_gender_race_date.jpg.chip.jpg` files. RESERVED_DIR holds
`dfdc_sources.txt` and `utkface.txt`: data kept for the release evaluation, which this recipe
never trains, validates or selects a model on.

prepare:
1. Drops every reserved row: DFDC reals whose video is listed and fakes whose `original` is
   listed; UTKFace files listed by name.
2. Splits the rest: DFDC by source video (a fake stays on its source real's side), UTKFace by
   file (UTKFace has no identity labels; one file is one person-photo), 10 % to validation, by a
   seeded hash. Byte-identical images under different names tie their sources together: such a
   cluster stays on one side, is reserved as a whole when it touches a reserved row, and keeps
   one copy of each image (none where the copies' labels disagree).
3. Picks a compute-sized training set: every DFDC training real, as many DFDC fakes (one per
   source video in turn, so every source contributes before any contributes twice) and
   `--utk-train` UTKFace faces; validation keeps one fake per source.
4. Makes every crop with the scanner's own detector and `crop_face` (square, 1.3x the detected
   box, eye-levelled, `--size` pixels), the tight crop shown on a black margin so that the face
   fills a third of the picture as in a video frame; MediaPipe's short-range model, then the
   whole image, stand in where it finds no face. So training crops have the geometry the
   scanner feeds the model, black border included where the 1.3x square leaves the original
   tight crop.
5. Writes `train.csv`, `val.csv` (scanner-made crops) and `val_tight.csv` (the raw tight DFDC
   crops and UTKFace images of the same validation rows, resized), with `gender`/`race`
   attribute columns for UTKFace rows (empty for DFDC, whose crops carry no demographic labels).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "dfscan" / "scanner" / "assets" / "detector" / "pgfdd_efficientnet_lite0_dfdc_utk.safetensors"
UTK_GENDER = {"0": "male", "1": "female"}
UTK_RACE = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "others"}
COLUMNS = ["path", "label", "method", "domain", "gender", "race", "source", "kp"]


def _unit(key: str, seed: int) -> float:
    """A seeded hash of `key` mapped to [0, 1): stable splits without a random state."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:12], 16) / float(1 << 48)


def _read_lines(path: Path) -> set[str]:
    return {ln.strip() for ln in path.read_text().splitlines() if ln.strip()}


def dfdc_rows(dfdc: Path, reserved: set[str]) -> list[dict]:
    """DFDC rows (reserved ones even without an image file); each knows its source video and whether that is reserved."""
    out: list[dict] = []
    with open(dfdc / "metadata.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            video = r["videoname"].removesuffix(".mp4")
            fake = r["label"].upper() == "FAKE"
            source = (r["original"] if fake else r["videoname"]).removesuffix(".mp4")
            image = dfdc / "faces_224" / f"{video}.jpg"
            row = {"image": image, "label": "fake" if fake else "real", "source": source, "domain": "dfdc",
                   "method": "dfdc" if fake else "real", "gender": "", "race": "",
                   "reserved": source in reserved or video in reserved}
            if row["reserved"] or image.is_file():
                out.append(row)
    return out


def utk_rows(utk: Path, reserved: set[str]) -> tuple[list[dict], int]:
    """UTKFace rows with gender and race from the file name, and how many malformed names were skipped."""
    out: list[dict] = []
    malformed = 0
    for image in sorted(utk.glob("*.jpg")):
        parts = image.name.split("_")
        if len(parts) < 4 or parts[1] not in UTK_GENDER or parts[2] not in UTK_RACE:
            malformed += 1
            continue
        out.append({"image": image, "label": "real", "source": image.name, "domain": "utkface", "method": "real",
                    "gender": UTK_GENDER[parts[1]], "race": UTK_RACE[parts[2]], "reserved": image.name in reserved})
    return out, malformed


def split_by_content(rows: list[dict], val_fraction: float, seed: int) -> tuple[dict[str, list[dict]], dict]:
    """Rows by split ("train", "val", "reserved"), with byte-identical images counted as one.

    The public snapshots hold the same image under different names (DFDC videos uploaded twice,
    UTKFace faces filed twice, sometimes with different labels). Sources that share an image
    form one cluster: a cluster touching a reserved row is reserved as a whole (so no copy of a
    reserved image is trained or validated on), the others go to one side by a seeded hash of
    their first source. On each side one row per image remains; an image whose copies disagree
    on label or group is dropped, since one of its labels is wrong.
    """
    from dfscan.train.checkpoint_info import file_sha256

    digests = [file_sha256(r["image"]) if Path(r["image"]).is_file() else f"missing:{r['image']}" for r in rows]
    parent: dict[str, str] = {}

    def root(k: str) -> str:
        while parent.setdefault(k, k) != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    first_source: dict[str, str] = {}
    for r, d in zip(rows, digests):
        key = f"{r['domain']}:{r['source']}"
        if d in first_source:
            a, b = sorted((root(first_source[d]), root(key)))
            parent[b] = a
        else:
            first_source[d] = key
            root(key)
    reserved_roots = {root(f"{r['domain']}:{r['source']}") for r in rows if r["reserved"]}
    out: dict[str, list[dict]] = {"train": [], "val": [], "reserved": []}
    by_image: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r, d in zip(rows, digests):
        cluster = root(f"{r['domain']}:{r['source']}")
        if cluster in reserved_roots:
            out["reserved"].append(r)
            continue
        side = "val" if _unit(cluster.split(":", 1)[1], seed) < val_fraction else "train"
        by_image[(side, d)].append(r)
    dropped = {"copies": 0, "conflicting_labels": 0, "reserved_by_content": len(out["reserved"]) - sum(r["reserved"] for r in rows)}
    for (side, _), copies in by_image.items():
        if len({(r["label"], r["gender"], r["race"]) for r in copies}) > 1:
            dropped["conflicting_labels"] += len(copies)
            continue
        out[side].append(min(copies, key=lambda r: str(r["image"])))
        dropped["copies"] += len(copies) - 1
    for side in ("train", "val"):
        out[side].sort(key=lambda r: str(r["image"]))
    return out, dropped


def one_fake_per_source_in_turn(fakes: list[dict], n: int, seed: int) -> list[dict]:
    """Up to n fakes, round-robin over source videos (seeded order), so sources stay diverse."""
    by_source: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(fakes, key=lambda r: _unit(str(r["image"]), seed)):
        by_source[r["source"]].append(r)
    order = sorted(by_source, key=lambda s: _unit(s, seed + 1))
    picked: list[dict] = []
    depth = 0
    while len(picked) < n and any(len(v) > depth for v in by_source.values()):
        for s in order:
            if len(by_source[s]) > depth:
                picked.append(by_source[s][depth])
                if len(picked) == n:
                    break
        depth += 1
    return picked


# ---------------------------------------------------------------- scanner-made crops

_DET = None


def _init_worker() -> None:
    global _DET
    import cv2

    from dfscan.scanner.faces import FaceDetector
    from dfscan.scanner.options import ScanOptions

    cv2.setNumThreads(1)
    scan = ScanOptions()
    _DET = (FaceDetector(scan.face_model, min_score=scan.min_face_score), FaceDetector("short", min_score=0.5))


def locate_face(img, scanner_model, short_range) -> tuple[tuple[float, float, float, float], object, str]:
    """(box, keypoints or None, how) of the largest face in a tight face crop, in its pixels.

    The scanner's own detector sees the crop on a black margin as wide as the crop
    (`FaceDetector.detect_on_margin`, the scanner's own close-up retry), so the face fills a third
    of the picture as in a head-and-shoulders frame: its boxes are what the scanner crops from
    video (MediaPipe's short-range model draws them ~5 % smaller and lower). Where it finds
    nothing the short-range model tries the crop as it is, then the whole crop stands in as the
    face box.
    """
    import numpy as np

    h, w = img.shape[:2]
    for how, dets in (("scanner", lambda: scanner_model.detect_on_margin(img)), ("short", lambda: short_range.detect(img))):
        found = dets()
        if found:
            d = max(found, key=lambda d: d.box[2] * d.box[3])
            kp = None if d.keypoints is None else np.asarray(d.keypoints, np.float64)
            return tuple(float(v) for v in d.box), kp, how
    return (0.0, 0.0, float(w), float(h)), None, "none"


def _crop_one(job: tuple[str, str, int]) -> tuple[str, str, str]:
    """(image, out png, size) → (out png, keypoints text, how the face was found) with the scanner's crop."""
    import cv2
    import numpy as np

    from dfscan.scanner.crop import crop_face, crop_keypoints

    src, dst, size = job
    bgr = cv2.imread(src, cv2.IMREAD_COLOR)
    if bgr is None:
        return dst, "", "unreadable"
    img = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    box, kp, how = locate_face(img, *_DET)
    crop = crop_face(img, kp, box, size=size)
    cv2.imwrite(dst, cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    kp_text = "" if kp is None else " ".join(f"{v:.2f}" for v in crop_keypoints(kp, box, size=size).reshape(-1))
    return dst, kp_text, how


def make_crops(rows: list[dict], out_dir: Path, size: int, workers: int) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for r in rows:
        r["crop"] = out_dir / r["domain"] / (Path(r["image"]).name.split(".")[0] + ".png")
        r["crop"].parent.mkdir(parents=True, exist_ok=True)
        jobs.append((str(r["image"]), str(r["crop"]), size))
    by_dst = {str(r["crop"]): r for r in rows}
    found: dict[str, int] = defaultdict(int)
    unreadable: set[str] = set()
    t0 = time.time()
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        for i, (dst, kp, how) in enumerate(pool.imap_unordered(_crop_one, jobs, chunksize=64), 1):
            by_dst[dst]["kp"] = kp
            found[how] += 1
            if how == "unreadable":
                unreadable.add(dst)
                print(f"  skipped, cannot read: {by_dst[dst]['image']}", flush=True)
            if i % 5000 == 0:
                print(f"  {i}/{len(jobs)} crops, {time.time() - t0:.0f}s", flush=True)
    rows[:] = [r for r in rows if str(r["crop"]) not in unreadable]
    return {"crops": len(rows), "face_found_by": dict(sorted(found.items()))}


def write_manifest(path: Path, rows: list[dict], key: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "path": os.path.relpath(r[key], path.parent), "kp": r.get("kp", "") if key == "crop" else ""})


def _check_inputs(a: argparse.Namespace) -> None:
    """Every folder and file `prepare` reads, before it reads any (one line per problem, not a traceback)."""
    from dfscan.core.errors import InputError

    needed = [a.dfdc / "metadata.csv", a.dfdc / "faces_224", a.utkface, a.reserved / "dfdc_sources.txt",
              a.reserved / "utkface.txt"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise InputError(f"not found: {', '.join(missing)} (see `prepare --help` and this file's docstring)")
    with open(a.dfdc / "metadata.csv", newline="") as fh:
        absent = {"videoname", "label", "original"} - set(csv.DictReader(fh).fieldnames or [])
    if absent:
        raise InputError(f"{a.dfdc / 'metadata.csv'}: no {', '.join(sorted(absent))} column(s)")


def prepare(a: argparse.Namespace) -> None:
    _check_inputs(a)
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    utk_all, malformed = utk_rows(a.utkface, _read_lines(a.reserved / "utkface.txt"))
    every = dfdc_rows(a.dfdc, _read_lines(a.reserved / "dfdc_sources.txt")) + utk_all
    print(f"hashing {len(every)} images to find copies under other names", flush=True)
    splits, dropped = split_by_content(every, a.val_fraction, a.seed)
    dfdc = {k: [r for r in v if r["domain"] == "dfdc"] for k, v in splits.items()}
    utk = {k: [r for r in v if r["domain"] == "utkface"] for k, v in splits.items()}

    def split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
        return [r for r in rows if r["label"] == "real"], [r for r in rows if r["label"] == "fake"]

    tr_real, tr_fake = split(dfdc["train"])
    va_real, va_fake = split(dfdc["val"])
    train_rows = tr_real + one_fake_per_source_in_turn(tr_fake, round(len(tr_real) * a.fakes_per_real), a.seed)
    utk_train = sorted(utk["train"], key=lambda r: _unit(r["source"], a.seed + 2))[: a.utk_train]
    train_rows += utk_train
    val_rows = va_real + one_fake_per_source_in_turn(va_fake, len({r["source"] for r in va_fake}), a.seed)
    val_rows += utk["val"]

    train_sources = {r["source"] for r in train_rows if r["domain"] == "dfdc"}
    val_sources = {r["source"] for r in val_rows if r["domain"] == "dfdc"}
    assert not train_sources & val_sources, "DFDC source on both sides of the split"

    print(f"making {len(train_rows)} training and {len(val_rows)} validation crops at {a.size}px", flush=True)
    stats = {"train": make_crops(train_rows, work / "crops", a.size, a.workers),
             "val": make_crops(val_rows, work / "crops", a.size, a.workers)}
    write_manifest(work / "train.csv", train_rows, "crop")
    write_manifest(work / "val.csv", val_rows, "crop")
    write_manifest(work / "val_tight.csv", val_rows, "image")

    def counts(rows: list[dict]) -> dict:
        c: dict[str, int] = defaultdict(int)
        for r in rows:
            c[f"{r['domain']}:{r['label']}"] += 1
        return dict(sorted(c.items()))

    info = {
        "seed": a.seed, "size": a.size, "val_fraction": a.val_fraction, "fakes_per_real": a.fakes_per_real,
        "reserved_dropped": {"dfdc": len(dfdc["reserved"]), "utkface": len(utk["reserved"])},
        "utkface_malformed_names": malformed, "identical_images": dropped,
        "available": {"dfdc_train": len(dfdc["train"]), "dfdc_val": len(dfdc["val"]),
                      "utkface_train": len(utk["train"]), "utkface_val": len(utk["val"])},
        "train": counts(train_rows), "val": counts(val_rows),
        "dfdc_sources": {"train": len(train_sources), "val": len(val_sources)},
        "crops": stats, "seconds": round(time.time() - t0),
    }
    (work / "prepare.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))


# ---------------------------------------------------------------- train / evaluate / ship

TRAIN_SETTINGS = ["--backbone", "efficientnet_lite0", "--batch-size", "32", "--pseudo-fakes", "sbi",
                  "--optimizer", "adam", "--no-sam", "--scale-jitter", "0.5",
                  "--threshold-method", "fpr", "--target-fpr", "0.05", "--fp16-deploy"]


def dfscan_command() -> list[str]:
    """This environment's dfscan console script (or the CLI through this Python)."""
    exe = Path(sys.executable).parent / "dfscan"
    return [str(exe)] if exe.is_file() else [sys.executable, "-c", "from dfscan.scanner.cli import app; app()"]


def run(cmd: list[str]) -> None:
    """Run a dfscan command; a `kill` (TERM or HUP) of the recipe reaches it too, so that stopping
    a training run never leaves it going on in the background. A terminal's Ctrl-C reaches both."""
    print("$", " ".join(cmd), flush=True)
    child = subprocess.Popen(cmd)
    forwarded = (signal.SIGTERM, signal.SIGHUP)
    before = {s: signal.signal(s, lambda signum, _frame: child.send_signal(signum)) for s in forwarded}
    try:
        code = child.wait()
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    if code:
        raise subprocess.CalledProcessError(code, cmd)


def research_flags(curriculum: str, balance: str, target: int | None, pacing_start: float,
                   pacing_end: float) -> list[str]:
    """The `dfscan train` options of issue 15's methods (nothing for the plain recipe)."""
    flags: list[str] = []
    if curriculum != "none":
        flags += ["--curriculum", curriculum, "--pacing-start", str(pacing_start), "--pacing-end", str(pacing_end)]
    if balance != "none":
        flags += ["--balance-groups", balance] + (["--balance-target", str(target)] if target else [])
    return flags


def _prepared_size(work: Path) -> int:
    """The crop size `prepare` made (the model's input size)."""
    from dfscan.core.errors import InputError

    path = work / "prepare.json"
    if not path.is_file():
        raise InputError(f"{work}: no prepare.json; run `python recipes/build_detector.py prepare` first")
    return int(json.loads(path.read_text())["size"])


def _train_cmd(work: Path, out: Path, *, epochs: int, steps: int, seed: int, lr: float,
               init_from: Path | None) -> list[str]:
    """`dfscan train` on the prepared manifests with the recipe's settings (the same for every run)."""
    cmd = dfscan_command() + ["train", "--train", str(work / "train.csv"), "--val", str(work / "val.csv"),
                       "--out", str(out), "--epochs", str(epochs), "--max-steps-per-epoch", str(steps),
                       "--input-size", str(_prepared_size(work)), "--seed", str(seed), "--lr", str(lr),
                       *TRAIN_SETTINGS]
    return cmd + (["--init-from", str(init_from)] if init_from else [])


def train(a: argparse.Namespace) -> None:
    """`dfscan train` with the recipe's settings (see the model card for why each)."""
    from dfscan.core.errors import InputError

    if a.resume and a.init_from:
        raise InputError("--resume continues the run's own last.safetensors; drop --init-from")
    work = a.work.resolve()
    cmd = _train_cmd(work, work / a.run, epochs=a.epochs, steps=a.steps, seed=a.seed, lr=a.lr,
                     init_from=a.init_from)
    if a.keep_epochs:
        cmd.append("--keep-epochs")
    if a.no_fairness:
        cmd.append("--no-fairness")
    if a.cosine:
        cmd += ["--lr-schedule", "cosine"]
    cmd += research_flags(a.curriculum, a.balance_groups, a.balance_target, a.pacing_start, a.pacing_end)
    if a.resume:
        cmd.append("--resume")
    run(cmd)


def _subset(src: Path, dst: Path, per_cell: dict[str, int], seed: int) -> Path:
    """Rows of `src` drawn by a seeded hash, at most per_cell[domain] of each label in each domain
    whose name starts with a key ("*" for any): a compute-sized copy of a manifest."""
    with open(src, newline="") as fh:
        rows = list(csv.DictReader(fh))
    taken: dict[tuple[str, str], int] = defaultdict(int)
    keep = []
    for r in sorted(rows, key=lambda r: _unit(r["path"], seed)):
        cap = next((n for k, n in per_cell.items() if k != "*" and r["domain"].startswith(k)), per_cell.get("*", 0))
        if taken[(r["domain"], r["label"])] < cap:
            taken[(r["domain"], r["label"])] += 1
            keep.append({**r, "path": os.path.relpath(src.parent / r["path"], dst.parent)})
    with open(dst, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    return dst


def frozen(a: argparse.Namespace) -> None:
    """PG-FDD on a frozen pretrained trunk (dfscan.train.frozen), sized to a CPU session: seeded subsets of
    the prepared manifests; chosen by the mean AUC over the held-out domains of `crossdomain`
    (the external sets and the FaceSwap-style fakes), never by DFDC."""
    from dfscan.train.frozen import FrozenOptions, train_frozen

    work = a.work.resolve()
    out = work / a.run
    out.mkdir(parents=True, exist_ok=True)
    tr = _subset(work / "train.csv", out / "train.csv", {"dfdc": a.per_cell, "utkface": a.per_cell}, a.seed)
    va = _subset(work / "val.csv", out / "val.csv", {"dfdc": a.per_cell // 3, "utkface": a.per_cell // 3}, a.seed)
    held = [_subset(work / "xdomain.csv", out / "holdout_faceswap.csv", {"faceswap": a.per_cell // 20}, a.seed)]
    held += [_subset(work / "xdomain.csv", out / f"holdout_{d}.csv", {d: a.per_cell // 3}, a.seed)
             for d in a.holdout_domain]
    opts = FrozenOptions(train=tr, val=va, out=out, holdout=held, backbone=a.backbone, input_size=a.size,
                         epochs=a.epochs, steps=a.steps, lr=a.lr, seed=a.seed, fairness=not a.no_fairness)
    best = train_frozen(opts, log=lambda m: print(m, flush=True))
    print(json.dumps(best, indent=2))


def average(a: argparse.Namespace) -> None:
    """Weight-average checkpoints of one run, or with --soup fine-tunes of one parent
    (dfscan.train.average), into --run: validated and calibrated like a training epoch, so
    evaluate, fairness-check and ship read it as any run's best."""
    from dfscan.train.average import average_run
    from dfscan.train.loop import auc_line

    work = a.work.resolve()
    m = average_run(a.checkpoints, a.val or work / "val.csv", work / a.run, weights=a.weights, one_run=not a.soup)
    print(f"{work / a.run}: val AUC {m['val_auc']:.4f} AP {m['val_ap']:.4f} TPR {m['val_tpr']:.3f} at FPR "
          f"{m['val_fpr']:.3f} @ {m['threshold']:.4f} · {auc_line(m)}", flush=True)


def _scores(checkpoint: Path, manifest: Path, sbi: bool = True) -> tuple:
    """p_fake of every row and (with `sbi`) of one seeded pseudo-fake per real row: the items and
    loader of the training loop's own validation (dfscan.train.loop.validation_loader)."""
    import numpy as np
    import torch

    from dfscan.train.checkpoint import load_checkpoint
    from dfscan.train.data import read_manifest
    from dfscan.train.loop import item_columns, validation_loader

    model, cfg, info = load_checkpoint(checkpoint, deploy=True)
    m = read_manifest(manifest)
    keys, loader = validation_loader(m, cfg, sbi=sbi, batch_size=64, num_workers=1)
    p, y = [], []
    with torch.no_grad():
        for batch in loader:
            p.append(model(batch["image"]).numpy())
            y.append(batch["label"].numpy())
    kind, domain, group = (np.array(c) for c in item_columns(m, [i for i, _ in keys]))
    return np.concatenate(p), np.concatenate(y), kind, domain, group, info


def _metrics(y, p, threshold: float) -> dict:
    from dfscan.core.metrics import binary_metrics

    m = binary_metrics(y, p, threshold)
    return {k: round(float(m[k]), 4) for k in ("n", "auc", "ap", "eer", "acc", "tpr", "fpr")}


def rates_at(y, p, threshold: float, on: str) -> dict:
    """What the scanner's summary tells a user a verdict means: the share of validation reals called
    fake and of validation fakes caught at the shipped threshold (dfscan.scanner.pipeline.model_block)."""
    from dfscan.core.metrics import binary_metrics

    m = binary_metrics(y, p, threshold)
    return {"threshold": round(float(threshold), 6), "fpr": round(float(m["fpr"]), 4),
            "tpr": round(float(m["tpr"]), 4) if m["n_pos"] else None,
            "reals": int(m["n_neg"]), "fakes": int(m["n_pos"]), "on": on}


def domain_figures(ckpt: Path, manifest: Path) -> dict:
    """A checkpoint's AUC, TPR and FPR at its own threshold on every domain of a manifest with both
    labels (no pseudo-fakes), the FaceSwap-style and re-encoded DFDC parts pooled, and UTKFace
    reals' FPR by group with its range where the manifest has them."""
    import numpy as np

    p, y, kind, domain, group, info = _scores(ckpt, manifest, sbi=False)
    t = info["threshold"]
    res: dict = {"threshold": t}
    domain = domain.astype(str)
    for pooled, prefix in (("faceswap (pooled)", "faceswap-"), ("dfdc re-encoded (pooled)", "dfdc-")):
        sel = np.char.startswith(domain, prefix)
        if sel.any():
            res[pooled] = _metrics(y[sel], p[sel], t)
    for d in sorted(set(domain.tolist())):
        sel = domain == d
        if len(set(y[sel].tolist())) == 2:
            res[d] = _metrics(y[sel], p[sel], t)
        elif d == "utkface":
            fpr = {g: round(float((p[sel & (group == g)] >= t).mean()), 4) for g in sorted(set(group[sel].tolist()))}
            res["utkface reals: FPR by group"] = fpr
            res["utkface reals: FPR, range"] = [round(float((p[sel] >= t).mean()), 4),
                                                round(max(fpr.values()) - min(fpr.values()), 4)]
    return res


def compare(a: argparse.Namespace) -> None:
    """Candidates side by side (issue 31): each checkpoint's AUC, TPR and FPR at its own threshold on
    every domain of each manifest (no pseudo-fakes: real rows against real fakes only), plus the
    mean AUC over the held-out families that models are chosen by (each external set; the
    FaceSwap-style fakes pooled over their re-encodings), and UTKFace reals' FPR by group with its range."""
    import numpy as np

    table = {}
    for ckpt in a.checkpoints:
        res: dict = {}
        for manifest in a.manifest:
            res.update(domain_figures(ckpt, manifest))
        held = [v["auc"] for k, v in res.items() if isinstance(v, dict) and "auc" in v
                and not k.startswith(("dfdc", "utkface", "faceswap-"))]
        res["held-out mean AUC"] = round(float(np.mean(held)), 4) if held else None
        table[str(ckpt)] = res
    out = a.work.resolve() / "compare.json"
    out.write_text(json.dumps(table, indent=2))
    print(json.dumps(table, indent=2))


def evaluate(a: argparse.Namespace) -> None:
    """Validation figures of a checkpoint: scanner-made vs tight crops, per domain, per group."""
    work = a.work.resolve()
    ckpt = a.checkpoint or work / "run" / "best.safetensors"
    out: dict = {"checkpoint": str(ckpt)}
    for name, manifest in (("scanner_crops", work / "val.csv"), ("tight_crops", work / "val_tight.csv")):
        p, y, kind, domain, group, info = _scores(ckpt, manifest)
        t = info["threshold"]
        res = {"threshold": t, "all": _metrics(y, p, t)}
        dfdc = domain == "dfdc"
        res["dfdc (real vs DFDC fakes)"] = _metrics(y[dfdc & (kind != "sbi")], p[dfdc & (kind != "sbi")], t)
        utk = domain == "utkface"
        res["utkface (real vs SBI)"] = _metrics(y[utk], p[utk], t)
        res["real+DFDC fakes, both domains"] = _metrics(y[kind != "sbi"], p[kind != "sbi"], t)
        res["utkface reals called fake, by group"] = {
            g: round(float((p[utk & (y == 0) & (group == g)] >= t).mean()), 4)
            for g in sorted(set(group[utk].tolist()))}
        out[name] = res
    if (work / "xdomain.csv").exists():
        out["crossdomain"] = domain_figures(ckpt, work / "xdomain.csv")
    (work / f"eval-{ckpt.parent.name}-{ckpt.stem}.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


def fairness_set(a: argparse.Namespace) -> None:
    """A labelled set for `dfscan fairness-check`: UTKFace validation reals and one seeded
    pseudo-fake of each (the same the loop validates on), with gender and race columns."""
    import cv2

    from dfscan.train.data import FaceDataset, read_manifest, validation_keys

    work = a.work.resolve()
    m = read_manifest(work / "val.csv")
    keep = [i for i, s in enumerate(m.samples) if s.domain == "utkface"]
    ds = FaceDataset(m, group_names=["all"], method_names=["real", "sbi"], size=_prepared_size(work))
    keys = {k[0]: k for k in validation_keys(m, sbi=True)}
    folder = work / "fairness"
    (folder / "fake").mkdir(parents=True, exist_ok=True)
    n = len(m.samples)
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "gender", "race"])
        for i in keep:
            s = m.samples[i]
            w.writerow([os.path.relpath(s.path, folder), "real", s.attrs["gender"], s.attrs["race"]])
            img = ds.image(keys[n + i])[0]
            dst = folder / "fake" / s.path.name
            cv2.imwrite(str(dst), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            w.writerow([os.path.relpath(dst, folder), "fake", s.attrs["gender"], s.attrs["race"]])
    print(f"{folder / 'labels.csv'}: {2 * len(keep)} rows")


# ---------------------------------------------------------------- cross-domain validation (issue 31)

def _swap_pairs(reals: list, rng, pool_size: int = 40) -> list[tuple]:
    """(target, source) pairs of different people with a similar head turn (and, where the data
    tells it, the same gender): a swap across a large turn is a smear, not a FaceSwap fake."""
    from dfscan.train.faceswap import yaw

    turn = {s.row: yaw(s.kp) for s in reals}
    pairs = []
    for t in reals:
        same = [s for s in reals if s.source != t.source and s.attrs.get("gender", "") == t.attrs.get("gender", "")]
        picks = [same[i] for i in rng.choice(len(same), size=min(pool_size, len(same)), replace=False)]
        pairs.append((t, min(picks, key=lambda s: abs(turn[s.row] - turn[t.row]))))
    return pairs


def external_rows(labels: Path, work: Path, workers: int) -> list[dict]:
    """Rows of another deepfake set's `labels.csv` (path,label[,source][,method]; paths relative to
    it), cropped as `prepare` crops DFDC's tight crops: domain = the set's folder name."""
    from dfscan.train.data import read_manifest

    m = read_manifest(labels)
    domain = labels.resolve().parent.name
    rows = [{"image": s.path, "label": "fake" if s.label == 1 else "real", "method": s.method or "",
             "domain": domain, "gender": "", "race": "", "source": s.source or ""} for s in m.samples]
    print(f"{labels}: cropping {len(rows)} images", flush=True)
    make_crops(rows, work / "crops", _prepared_size(work), workers)
    for r in rows:
        r["path"] = os.path.relpath(r.pop("crop"), work)
        r.pop("image")
    return rows


def crossdomain(a: argparse.Namespace) -> None:
    """`xdomain.csv`: a forgery domain the detector never trains on, made from validation reals.

    FaceSwap-style fakes (dfscan.train.faceswap: another validation person's face, landmark-warped,
    colour-matched, Poisson- or alpha-blended) of `--pairs` UTKFace and as many DFDC validation
    reals, each real and its fake shown in the same re-encoding (clean, JPEG 50-90, H.264 CRF
    23/30/36, half scale); plus `--degraded` DFDC validation reals and fakes re-encoded alike
    (domain `dfdc-<kind>`). Only validation rows are used, so nothing here was trained on; the
    `domain` column says which part an item is in (`faceswap-<kind>`, `dfdc-<kind>`).
    """
    import cv2
    import numpy as np

    from dfscan.train.data import read_manifest
    from dfscan.train.faceswap import DEGRADATIONS, degrade, face_swap
    from dfscan.train.images import read_rgb

    work = a.work.resolve()
    m = read_manifest(work / "val.csv")
    rng = np.random.default_rng(a.seed)
    out_dir = work / "xdomain"
    rows: list[dict] = []

    def save(img, name: str, label: str, method: str, domain: str, s) -> None:
        dst = out_dir / label / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dst), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        rows.append({"path": os.path.relpath(dst, work), "label": label, "method": method, "domain": domain,
                     "gender": s.attrs.get("gender", ""), "race": s.attrs.get("race", ""), "source": s.source or "",
                     "kp": "" if s.kp is None else " ".join(f"{v:.2f}" for v in s.kp.reshape(-1))})

    t0 = time.time()
    for domain in ("utkface", "dfdc"):
        reals = [s for s in m.samples if s.label == 0 and s.domain == domain and s.kp is not None]
        reals = [reals[i] for i in rng.choice(len(reals), size=min(a.pairs, len(reals)), replace=False)]
        for k, (t, src) in enumerate(_swap_pairs(reals, rng)):
            target, source = read_rgb(t.path), read_rgb(src.path)
            if source.shape != target.shape:
                source = cv2.resize(source, target.shape[1::-1])
            fake, _ = face_swap(target, t.kp, source, src.kp, rng)
            kind = DEGRADATIONS[k % len(DEGRADATIONS)]
            real_copy, how = degrade(target, kind, rng)
            fake_copy, _ = degrade(fake, kind, rng)
            stem = f"{domain}-{t.path.stem}"
            save(real_copy, f"{stem}-{how}.png", "real", "real", f"faceswap-{kind}", t)
            save(fake_copy, f"{stem}-{how}.png", "fake", "faceswap", f"faceswap-{kind}", t)
    dfdc = [s for s in m.samples if s.domain == "dfdc"]
    picks = [dfdc[i] for i in rng.choice(len(dfdc), size=min(a.degraded, len(dfdc)), replace=False)]
    for k, s in enumerate(picks):
        kind = DEGRADATIONS[1 + k % (len(DEGRADATIONS) - 1)]
        img, how = degrade(read_rgb(s.path), kind, rng)
        label = "fake" if s.label == 1 else "real"
        save(img, f"dfdc-{s.path.stem}-{how}.png", label, s.method or label, f"dfdc-{kind}", s)
    for labels in a.external or []:
        rows += external_rows(labels, work, a.workers)
    with open(work / "xdomain.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[f"{r['domain']}:{r['label']}"] += 1
    print(json.dumps({"rows": len(rows), "seconds": round(time.time() - t0), **dict(sorted(counts.items()))}, indent=2))


# ---------------------------------------------------------------- ablation (issue 15)

VARIANTS = {"plain": ("none", "none"), "curriculum": ("quality", "none"), "balance": ("none", "synthetic"),
            "both": ("quality", "synthetic")}


def ablation_runs(a: argparse.Namespace) -> list[tuple[str, int, Path, list[str]]]:
    """(variant, seed, run folder, command) for every run: one budget (--epochs x --steps, lr) and
    the recipe's settings for all, only the two options and the seed differ."""
    work = a.work.resolve()
    init_from = a.init_from if a.init_from and str(a.init_from) != "none" else None
    runs = []
    for seed in a.seeds:
        for name, (curriculum, balance) in VARIANTS.items():
            folder = work / "ablation" / f"{name}-s{seed}"
            cmd = _train_cmd(work, folder, epochs=a.epochs, steps=a.steps, seed=seed, lr=a.lr, init_from=init_from)
            runs.append((name, seed, folder, cmd + research_flags(curriculum, balance, a.balance_target,
                                                                 a.pacing_start, a.pacing_end)))
    return runs


def ablation(a: argparse.Namespace) -> None:
    """Train plain vs --curriculum quality vs --balance-groups synthetic vs both, per seed; a run
    folder that already has a best checkpoint is skipped, so an interrupted ablation continues."""
    for name, seed, folder, cmd in ablation_runs(a):
        if a.dry_run:
            print(" ".join(cmd))
        elif (folder / "best.safetensors").is_file() and (folder / "metrics.csv").is_file():
            print(f"{folder}: done, skipped", flush=True)
        else:
            run(cmd)


def _run_scores(folder: Path, val: Path) -> tuple:
    """p_fake, label, method, domain and group of the run's best checkpoint on val.csv: the
    run's own val_predictions.csv when it wrote one (the same items), else scored afresh."""
    import numpy as np

    preds = folder / "val_predictions.csv"
    if not preds.is_file():
        return _scores(folder / "best.safetensors", val)[:5]
    with open(preds, newline="") as fh:
        rows = list(csv.DictReader(fh))
    col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    return col("p_fake").astype(float), col("label").astype(int), col("method"), col("domain"), col("group")


def _ablation_metrics(folder: Path, val: Path, shipped_threshold: float) -> dict:
    """AUC (all validation rows; DFDC reals vs DFDC fakes), FPR at the shipped threshold, and
    F_FPR / F_OAE over gender x race on the UTKFace rows (reals + their pseudo-fakes) there."""
    from dfscan.core.metrics import binary_metrics, fairness_metrics

    p, y, kind, domain, group = _run_scores(folder, val)
    dfdc = (domain == "dfdc") & (kind != "sbi")
    utk = domain == "utkface"
    fair = fairness_metrics(y[utk], p[utk], group[utk], shipped_threshold)
    return {"auc": float(binary_metrics(y, p)["auc"]), "auc_dfdc": float(binary_metrics(y[dfdc], p[dfdc])["auc"]),
            "fpr": float(binary_metrics(y, p, shipped_threshold)["fpr"]), "F_FPR": fair["F_FPR"],
            "F_OAE": fair["F_OAE"]}


def ablation_table(a: argparse.Namespace) -> None:
    """Mean and spread (sample std) over seeds of each variant's best checkpoint on val.csv, at the
    shipped model's threshold; ablation.json and a markdown table for docs/training.md."""
    import numpy as np

    from dfscan.train.checkpoint import load_checkpoint

    work = a.work.resolve()
    shipped = float(load_checkpoint(a.shipped, deploy=True)[2]["threshold"])
    per: dict[str, list[dict]] = {}
    for name, seed, folder, _ in ablation_runs(a):
        if (folder / "best.safetensors").is_file():
            per.setdefault(name, []).append({"seed": seed, **_ablation_metrics(folder, work / "val.csv", shipped)})
    keys = ("auc", "auc_dfdc", "fpr", "F_FPR", "F_OAE")
    lines = [f"| variant | seeds | {' | '.join(keys)} |", "|---" * (len(keys) + 2) + "|"]
    for name, rows in per.items():
        cells = []
        for k in keys:
            v = np.array([r[k] for r in rows], float)
            cells.append(f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if v.size > 1 else f"{v.mean():.4f}")
        lines.append(f"| {name} | {len(rows)} | {' | '.join(cells)} |")
    out = {"shipped_threshold": shipped, "budget": {"epochs": a.epochs, "steps": a.steps, "lr": a.lr}, "runs": per}
    (work / "ablation.json").write_text(json.dumps(out, indent=2))
    print("\n".join(lines))


CAVEAT = ("Research use only: trained on DFDC and UTKFace, whose terms forbid commercial use; "
          "measured on their validation splits, not on your data (see MODEL_CARD.md).")
STATE = ROOT / "recipes" / "state" / "pgfdd_efficientnet_lite0_dfdc_utk_full.safetensors"


def ship(a: argparse.Namespace) -> None:
    """Write the shipped deploy weights (float16, with the card's caveat) and the resumable full
    training state (float16, for `train --init-from` in a later session), then sanity-scan the
    shared real videos with the shipped file."""
    from dfscan.train.checkpoint import load_checkpoint, save_checkpoint

    work = a.work.resolve()
    src = a.checkpoint or work / "run" / "best.safetensors"
    model, cfg, info = load_checkpoint(src, deploy=False)
    prov = {**info["provenance"], "shipped_from": src.name,
            "data_terms": "DFDC and UTKFace: non-commercial research use only"}
    threshold = info["threshold"]
    if a.calibrate_on:  # more validation reals than the run validated on: a steadier 5 % point
        from dfscan.core.metrics import calibrate_threshold

        p, y, *_ = _scores(src, a.calibrate_on, sbi=False)
        threshold = calibrate_threshold(y, p, "fpr", 0.05)
        prov["threshold_policy"] = (f"lowest threshold with FPR <= 0.05 on the {int((y == 0).sum())} real rows of "
                                    f"{a.calibrate_on.name} (the run's own: {info['threshold']:.4f})")
        prov["rates_at_threshold"] = rates_at(y, p, threshold, a.calibrate_on.name)
        print(f"threshold {info['threshold']:.4f} -> {threshold:.4f} on {a.calibrate_on}")
    save_checkpoint(a.out, model.deploy(), cfg, threshold=threshold, provenance=prov, half=True, caveat=CAVEAT)
    save_checkpoint(a.state, model, cfg, threshold=threshold, provenance=prov, half=True, caveat=CAVEAT)
    print(f"wrote {a.out} ({a.out.stat().st_size / 2**20:.1f} MiB) and {a.state} "
          f"({a.state.stat().st_size / 2**20:.1f} MiB)")
    run(dfscan_command() + ["scan", str(ROOT / "tests" / "data" / "media" / "videos"), "--weights", str(a.out),
                     "--report", str(work / "scan-shared-videos.json"), "--quiet"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="manifests and scanner-made crops from the DFDC and UTKFace folders")
    p.add_argument("--dfdc", type=Path, required=True)
    p.add_argument("--utkface", type=Path, required=True)
    p.add_argument("--reserved", type=Path, required=True, help="folder with dfdc_sources.txt and utkface.txt")
    p.add_argument("--size", type=int, default=128, help="crop size = the model's input size")
    p.add_argument("--utk-train", type=int, default=12000, help="UTKFace training faces")
    p.add_argument("--fakes-per-real", type=float, default=1.0,
                   help="DFDC training fakes per DFDC training real (more: more forgeries seen, not more reals)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p = sub.add_parser("train", help="dfscan train on the prepared manifests")
    p.add_argument("--run", default="run", help="run folder under --work")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--steps", type=int, default=400, help="steps of 32 crops per epoch")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam's learning rate (the shipped epoch: 1e-4)")
    p.add_argument("--no-fairness", action="store_true", help="the ablation without PG-FDD's fairness terms")
    p.add_argument("--cosine", action="store_true", help="cosine learning-rate decay over the run")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init-from", type=Path, help="full checkpoint to start from (e.g. the committed state)")
    p.add_argument("--keep-epochs", action="store_true",
                   help="keep every epoch's weights (64 MB each), for `average`")
    for p in (sub.add_parser("ablation", help="issue 15: plain vs --curriculum quality vs --balance-groups "
                             "synthetic vs both, same budget, per seed"),
              sub.add_parser("ablation-table", help="the ablation's figures at the shipped threshold")):
        # defaults: the budget of the table in docs/training.md (100-step fine-tunes of the committed state)
        p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        p.add_argument("--epochs", type=int, default=1)
        p.add_argument("--steps", type=int, default=100, help="steps of 32 crops per epoch")
        p.add_argument("--lr", type=float, default=5e-5)
        p.add_argument("--init-from", type=Path, default=STATE,
                       help="the same warm start for every run (default: the committed training state; none: ImageNet)")
    sub.choices["ablation"].add_argument("--dry-run", action="store_true", help="print the commands only")
    sub.choices["ablation-table"].add_argument("--shipped", type=Path, default=TARGET,
                                               help="checkpoint whose threshold the table uses")
    p = sub.choices["train"]
    p.add_argument("--curriculum", choices=["none", "quality"], default="none", help="quality-centric curriculum")
    p.add_argument("--balance-groups", choices=["none", "synthetic"], default="synthetic",
                   help="fill label x group cells with synthetic rows (default: synthetic, the ablation's winner "
                        "on validation AUC: docs/training.md)")
    for name in ("train", "ablation", "ablation-table"):
        p = sub.choices[name]
        p.add_argument("--balance-target", type=int, help="rows per label x group cell (default: the largest cell)")
        p.add_argument("--pacing-start", type=float, default=-3.0)
        p.add_argument("--pacing-end", type=float, default=3.0)
    p = sub.add_parser("frozen", help="issue 31: PG-FDD on a frozen pretrained trunk, chosen by held-out domains")
    p.add_argument("--run", default="frozen", help="run folder under --work")
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--size", type=int, default=168, help="input size (a multiple of 14 for the ViT)")
    p.add_argument("--per-cell", type=int, default=1500, help="training rows per label and domain (validation: a third)")
    p.add_argument("--holdout-domain", nargs="*", default=["tranthuhoai3786-FaceForensics"],
                   help="crossdomain's external domains to choose by (a third of --per-cell of each label)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--no-fairness", action="store_true")
    p = sub.add_parser("average", help="weight-average checkpoints of one run (e.g. its last epochs) into --run")
    p.add_argument("checkpoints", type=Path, nargs="+", help="full checkpoints (the run's epochN.safetensors)")
    p.add_argument("--run", default="averaged", help="run folder under --work for the averaged model")
    p.add_argument("--soup", action="store_true",
                   help="average fine-tunes of one parent from different runs (a model soup), not epochs of one run")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per checkpoint (normalised); default equal")
    p.add_argument("--val", type=Path, help="the validation manifest the checkpoints were validated on "
                   "(default: val.csv under --work)")
    p = sub.add_parser("crossdomain", help="issue 31: FaceSwap-style and re-encoded copies of validation rows, "
                       "a domain never trained on (xdomain.csv)")
    p.add_argument("--pairs", type=int, default=1000, help="face swaps per domain (UTKFace, DFDC)")
    p.add_argument("--degraded", type=int, default=1200, help="re-encoded DFDC validation rows")
    p.add_argument("--external", type=Path, action="append",
                   help="labels.csv of another deepfake set (path,label[,source][,method]), never trained on; repeatable")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p = sub.add_parser("compare", help="issue 31: candidates on in-domain and held-out manifests, at their thresholds")
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--manifest", type=Path, action="append", required=True,
                   help="a manifest to score (e.g. val.csv, xdomain.csv); repeatable")
    p = sub.add_parser("evaluate", help="validation figures of a checkpoint")
    p.add_argument("--checkpoint", type=Path)
    sub.add_parser("fairness-set", help="labelled UTKFace validation set for dfscan fairness-check")
    p = sub.add_parser("ship", help="copy deploy weights into the package, scan the shared real videos")
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--out", type=Path, default=TARGET)
    p.add_argument("--state", type=Path, default=STATE, help="full float16 training state to commit")
    p.add_argument("--calibrate-on", type=Path,
                   help="recalibrate the threshold (FPR 5 %%) on this manifest's reals, e.g. the full val.csv")
    for name, p in sub.choices.items():
        p.add_argument("--work", type=Path, default=ROOT / "runs" / "detector")
        if name in ("prepare", "train", "crossdomain", "frozen"):
            p.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    command = {"prepare": prepare, "train": train, "evaluate": evaluate, "fairness-set": fairness_set, "ship": ship,
               "ablation": ablation, "ablation-table": ablation_table, "average": average, "crossdomain": crossdomain, "frozen": frozen, "compare": compare}[a.cmd]
    from dfscan.core.errors import InputError

    try:
        command(a)
    except InputError as exc:  # bad input: one line, as dfscan says it
        sys.exit(f"error: {exc}")
    except subprocess.CalledProcessError as exc:  # dfscan has said why, in one line
        sys.exit(exc.returncode)


if __name__ == "__main__":
    main()
