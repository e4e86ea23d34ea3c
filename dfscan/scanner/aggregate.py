"""Frame scores → subject score → item score, and verdicts.

A video is as fake as its most suspicious person (max over subjects): one swapped face among
several real ones must not be averaged away. Per subject the default is the mean over its
frames; `confident` is the DFDC winner's heuristic (Seferbekov, 2020), which trusts a clear
majority of confident frames over the plain mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dfscan.core.errors import InputError

STRATEGIES = ("mean", "confident")

# The DFDC winner's constants: "confident" cut-offs and at least 11 confident fake frames of 32.
CONFIDENT_FAKE = 0.8
CONFIDENT_REAL = 0.2
MIN_FAKE_FRAMES = 11
REFERENCE_FRAMES = 32


def confident_mean(scores: Sequence[float] | np.ndarray, *, frames_sampled: int | None = None) -> float:
    """Mean of the confident frames when they dominate, else the plain mean.

    Fake branch: more than n // 2.5 frames above 0.8 and more than 11 of them (the winner's rule
    for 32 sampled frames; with fewer sampled frames the 11 is scaled by frames_sampled / 32, so
    `--frames 8` is not locked out of it). Real branch: more than 0.9·n frames below 0.2.
    """
    p = np.asarray(scores, dtype=np.float64).ravel()
    if p.size == 0:
        raise ValueError("no scores to aggregate")
    n = p.size
    sampled = frames_sampled if frames_sampled else REFERENCE_FRAMES
    min_fakes = MIN_FAKE_FRAMES * min(sampled, REFERENCE_FRAMES) / REFERENCE_FRAMES
    fake = p > CONFIDENT_FAKE
    n_fake = int(fake.sum())
    if n_fake > n // 2.5 and n_fake > min_fakes:
        return float(p[fake].mean())
    real = p < CONFIDENT_REAL
    if int(real.sum()) > 0.9 * n:
        return float(p[real].mean())
    return float(p.mean())


def subject_score(scores: Sequence[float] | np.ndarray, strategy: str = "mean", *, frames_sampled: int | None = None) -> float:
    """One p_fake for one person from their per-frame p_fake."""
    if strategy == "mean":
        p = np.asarray(scores, dtype=np.float64).ravel()
        if p.size == 0:
            raise ValueError("no scores to aggregate")
        return float(p.mean())
    if strategy == "confident":
        return confident_mean(scores, frames_sampled=frames_sampled)
    raise InputError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")


def item_score(subject_scores: Sequence[float]) -> float | None:
    """The item's p_fake: its most suspicious subject; None when nobody was seen."""
    return float(max(subject_scores)) if len(subject_scores) else None


def verdict(score: float | None, threshold: float) -> str | None:
    """'fake' at or above the threshold, 'real' below, None without a score."""
    if score is None:
        return None
    return "fake" if score >= threshold else "real"


def aggregate_item(subjects: list[dict], threshold: float, strategy: str = "mean", *, frames_sampled: int | None = None) -> tuple[float | None, str | None]:
    """Fill each subject's score and verdict from its frames' scores; return the item's (score, verdict).

    `subjects` are report subjects whose `frames` already carry a per-frame `score`.
    """
    for subject in subjects:
        s = subject_score([f["score"] for f in subject["frames"]], strategy, frames_sampled=frames_sampled)
        subject["score"] = round(s, 6)  # the verdict follows the number the report shows
        subject["verdict"] = verdict(subject["score"], threshold)
    score = item_score([s["score"] for s in subjects])
    return score, verdict(score, threshold)
