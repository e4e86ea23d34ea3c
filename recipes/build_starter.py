"""Rebuild dfscan's shipped starter detector from the shared real media, end to end, on a CPU.

    python recipes/build_starter.py [--media tests/data/media] [--work runs/starter-build]

1. `dfscan extract-faces` on the media (videos at a denser 64 frames each, and the photos):
   256x256 crops + a manifest with source, subject, frame and keypoints, all labelled real.
2. Split by identity: every crop of one person (source file + tracked subject) goes to the same
   side, about a quarter of the crops to validation. face_noface.mov and noface_face.mov show
   the same man, so they count as one source.
3. `dfscan train` EfficientNet-Lite0 PG-FDD from ImageNet weights with `--pseudo-fakes sbi`
   (self-blended fakes made on the fly from the real crops), Adam at 3e-4 without SAM: SAM
   doubles the cost of a step and the CPU budget is one hour, and PG-FDD's SGD barely moves in
   a few hundred steps (validation AUC 0.54-0.61 after one or two epochs, 0.72 after one with Adam).
   Validation every epoch on the held-out identities and their seeded pseudo-fakes; the
   threshold is calibrated there.
4. Copy the best epoch's deploy-only weights (float16) to `--out` (default
   runs/starter-build/pgfdd_efficientnet_lite0_starter.safetensors), and score the media's real
   videos with `dfscan scan` as a sanity check (they should read as real).

The starter needs no third-party data and carries only the test media's MIT/BSD terms, but it
never saw a real deepfake; dfscan ships the DFDC + UTKFace model of recipes/build_detector.py.

Defaults fit in under an hour on the 2-core development box (~55 min of training at
~3 s per step of 8); `--epochs`/`--max-steps-per-epoch` trade time for quality.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

from build_detector import dfscan_command, run  # one way to run dfscan: a kill reaches it too

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "runs" / "starter-build" / "pgfdd_efficientnet_lite0_starter.safetensors"
SAME_PERSON = {"noface_face.mov": "face_noface.mov"}  # one man in both clips (LICENSES.md)


def identity(row: dict) -> str:
    src = Path(row["source"]).name
    return f"{SAME_PERSON.get(src, src)}#{row['subject']}"


def split(manifest: Path, train_csv: Path, val_csv: Path, val_fraction: float, seed: int) -> dict:
    """Identity-disjoint split; identities are ordered by a seeded hash and validation is
    filled to `val_fraction` of the crops, keeping at least one video identity on each side."""
    with open(manifest, newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames or [], list(reader)
    by_id: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_id[identity(r)].append(r)
    order = sorted(by_id, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    videos = [k for k in order if len(by_id[k]) > 8]  # tracked across frames: a video identity
    val_ids: list[str] = []
    target = val_fraction * len(rows)
    if len(videos) >= 2:  # one video person in validation, the others train
        val_ids.append(videos[0])
    for k in order:
        if sum(len(by_id[v]) for v in val_ids) >= target:
            break
        if k not in videos and k not in val_ids:
            val_ids.append(k)
    for path, ids in ((val_csv, val_ids), (train_csv, [k for k in order if k not in val_ids])):
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=header)
            w.writeheader()
            for k in ids:
                w.writerows(by_id[k])
    return {"identities": len(order), "val_identities": len(val_ids), "crops": len(rows),
            "val_crops": sum(len(by_id[k]) for k in val_ids), "val_videos": [k for k in val_ids if k in videos]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", type=Path, default=ROOT / "tests" / "data" / "media")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "starter-build")
    ap.add_argument("--frames", type=int, default=64, help="frames sampled per video")
    ap.add_argument("--epochs", type=int, default=18)
    ap.add_argument("--max-steps-per-epoch", type=int, default=55)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=TARGET, help="where the deploy weights go")
    a = ap.parse_args()

    dfscan = dfscan_command()
    work = a.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    t0 = time.time()

    manifest = work / "crops.csv"
    run(dfscan + ["extract-faces", str(a.media / "videos"), str(a.media / "images"), "--out", str(work / "crops"),
                  "--manifest", str(manifest), "--frames", str(a.frames), "--label", "real", "--quiet"])
    t_extract = time.time() - t0
    info = split(manifest, work / "train.csv", work / "val.csv", 0.25, a.seed)
    print(f"extracted {info['crops']} crops of {info['identities']} identities in {t_extract:.0f}s; "
          f"validation: {info['val_crops']} crops of {info['val_identities']} identities "
          f"(videos: {', '.join(info['val_videos']) or 'none'})", flush=True)

    t1 = time.time()
    run(dfscan + ["train", "--train", str(work / "train.csv"), "--val", str(work / "val.csv"),
                  "--backbone", "efficientnet_lite0", "--epochs", str(a.epochs), "--batch-size", str(a.batch_size),
                  "--max-steps-per-epoch", str(a.max_steps_per_epoch), "--lr", str(a.lr), "--seed", str(a.seed),
                  "--pseudo-fakes", "sbi", "--optimizer", "adam", "--no-sam", "--fp16-deploy",
                  "--threshold-method", "eer", "--out", str(work / "run")])
    t_train = time.time() - t1

    a.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "run" / "best_deploy.safetensors", a.out)
    run(dfscan + ["scan", str(a.media / "videos"), "--weights", str(a.out), "--report", str(work / "scan.json"),
                  "--quiet"])
    with open(work / "run" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    best = max(rows, key=lambda r: float(r["val_auc"]))
    report = json.loads((work / "scan.json").read_text())
    summary = {
        "split": info, "extract_seconds": round(t_extract), "train_seconds": round(t_train),
        "total_seconds": round(time.time() - t0), "best_epoch": int(best["epoch"]),
        "val": {k: float(best[k]) for k in ("val_auc", "val_ap", "val_eer", "val_acc", "threshold")},
        "weights": str(a.out), "weights_mb": round(a.out.stat().st_size / 2**20, 1),
        "scan": {Path(i["path"]).name: {"status": i["status"], "score": i["score"], "verdict": i["verdict"]}
                 for i in report["items"]},
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
