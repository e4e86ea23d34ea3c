"""bench/aggregation.py's arithmetic: AUC with ties, thresholds at a false-positive count, video rows."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("bench_aggregation", Path(__file__).resolve().parents[1] / "bench" / "aggregation.py")
agg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(agg)


def test_auc_counts_ties_half_and_needs_both_classes():
    assert agg.auc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert agg.auc(np.array([0.5]), np.array([0.5])) == 0.5
    assert agg.auc(np.array([0.1, 0.5]), np.array([0.5])) == pytest.approx(0.75)
    assert agg.auc(np.array([]), np.array([0.5])) is None


def test_threshold_for_fp_allows_exactly_k_reals_including_ties():
    real = np.array([0.9, 0.7, 0.7, 0.2])
    t0 = agg.threshold_for_fp(real, 0)
    assert t0 > 0.9 and (real >= t0).sum() == 0
    t1 = agg.threshold_for_fp(real, 1)
    assert (real >= t1).sum() == 1 and t1 <= 0.9
    t2 = agg.threshold_for_fp(real, 2)  # a tie at 0.7: two allowed, only one can be had
    assert (real >= t2).sum() == 1
    assert agg.threshold_for_fp(real, 4) == 0.0


def test_video_rows_take_the_most_suspicious_subject_and_skip_the_faceless(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    report = {"items": [
        {"path": str(a), "status": "ok", "media": {"frames_sampled": 4}, "subjects": [
            {"frames": [{"score": 0.1}, {"score": 0.2}, {"score": 0.3}, {"score": 0.2}]},
            {"frames": [{"score": 0.9}, {"score": 0.1}, {"score": 0.1}, {"score": 0.1}]},
        ]},
        {"path": str(b), "status": "no_face", "media": {"frames_sampled": 4}, "subjects": []},
        {"path": str(tmp_path / "c.mp4"), "status": "ok", "subjects": [{"frames": [{"score": 0.5}]}]},
    ]}
    labels = {str(a.resolve()): ("s", "fake"), str(b.resolve()): ("s", "real")}
    rows, faceless, unlabelled = agg.video_rows(report, labels)
    assert [r["path"] for r in rows] == [str(a)] and faceless == [str(b)] and len(unlabelled) == 1
    s = rows[0]["scores"]
    assert s["mean"] == pytest.approx(0.3)  # max(0.2, 0.3)
    assert s["max"] == pytest.approx(0.9)
    assert s["top3"] == pytest.approx(max(0.7 / 3, 1.1 / 3))
    assert s["median"] == pytest.approx(0.2)


def test_labels_resolve_against_the_csv_folder(tmp_path):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "labels.csv").write_text("path,label\nfake/x.mp4,fake\nreal/y.mp4,real\n")
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "z.mov").write_bytes(b"")
    labels = agg.load_labels([f"S={tmp_path / 'set' / 'labels.csv'}"], [f"R={tmp_path / 'clips'}"])
    assert labels[str((tmp_path / "set" / "fake" / "x.mp4").resolve())] == ("S", "fake")
    assert labels[str((tmp_path / "clips" / "z.mov").resolve())] == ("R", "real")
