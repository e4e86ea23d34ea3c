"""A file's report item from its stage payload and its crops' scores: the local and the Ray scan build items here."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from dfscan.scanner import report as rp
from dfscan.scanner.aggregate import aggregate_item
from dfscan.scanner.batcher import CropBatcher
from dfscan.scanner.stage import FilePayload

ITEM_ORDER = ("path", "kind", "status", "error", "score", "verdict", "media", "file", "subjects")


def ordered(item: dict) -> dict:
    """Keys in the schema's order, so reports read the same every time."""
    return {k: item[k] for k in ITEM_ORDER if k in item} | {k: v for k, v in item.items() if k not in ITEM_ORDER}


def file_item(path: str, kind: str, payload: FilePayload, fingerprint: dict | None, fingerprint_before: dict | None) -> dict:
    """A file's item from its stage payload, before any score.

    `changed_during_scan` when the file's fingerprint moved while it was scanned (the payload may be
    of the old content: never store it under the new fingerprint), the payload's error item, or a
    `no_face` item with media and fingerprint that scored_item turns `ok` when it has subjects.
    """
    if fingerprint != fingerprint_before:
        return rp.error_item(path, kind, "changed_during_scan", "the file changed while it was scanned (size or "
                             "modification time); scan it again (--resume does)", fingerprint=fingerprint)
    if "error" in payload:
        return rp.error_item(path, kind, payload["error"]["code"], payload["error"]["message"],
                             media=payload.get("media"), fingerprint=fingerprint)
    item: dict[str, Any] = {"path": path, "kind": payload["kind"], "status": "no_face", "error": None, "score": None,
            "verdict": None, "media": payload["media"], "subjects": []}
    if fingerprint:
        item["file"] = fingerprint
    return item


def scored_item(item: dict, subjects: list[dict], score_of: Any, threshold: float, strategy: str) -> tuple[dict, int]:
    """The `ok` item: scores into the subjects' frames (`score_of[crop sequence number]`), aggregated; and its face count."""
    faces = 0
    for s in subjects:
        for fr in s["frames"]:
            fr["score"] = round(float(score_of[fr.pop("crop")]), 6)
            faces += 1
    score, verdict = aggregate_item(subjects, threshold, strategy, frames_sampled=item["media"]["frames_sampled"])
    item.update(status="ok", error=None, score=score, verdict=verdict,
                subjects=[{"id": s["id"], "score": s["score"], "verdict": s["verdict"], "frames": s["frames"]} for s in subjects])
    return ordered(item), faces


class LocalItems:
    """Turns the worker pool's results into items: scored in the worker, waiting on the batcher, or failed.

    `finish(index, item)` gets each item once; `stats` gains the stage timings and the face count.
    """

    def __init__(self, threshold: float, strategy: str, stats: dict, finish: Callable[[int, dict], None]):
        self.threshold, self.strategy, self.stats, self.finish = threshold, strategy, stats, finish
        self.batcher: CropBatcher | None = None  # set once the batcher exists (it calls `complete`)

    def complete(self, index: int, item: dict, subjects: list[dict], score_of: Any) -> None:
        """Scores into the subjects' frames, aggregate, finish."""
        item, faces = scored_item(item, subjects, score_of, self.threshold, self.strategy)
        self.stats["faces"] += faces
        self.finish(index, item)

    def lost(self, task: Any, code: str, message: str) -> None:
        """A file whose worker crashed or hung on it."""
        self.finish(task.id, rp.error_item(task.path, task.kind, code, message, fingerprint=rp.file_fingerprint(task.path)))

    def result(self, task: Any, payload: FilePayload) -> None:
        """A worker's payload for `task`: finished now, or handed to the batcher until its crops are scored."""
        assert self.batcher is not None
        fp = rp.file_fingerprint(task.path)
        item = file_item(task.path, task.kind, payload, fp, task.fingerprint)
        batched = item["status"] != "error" and payload["subjects"] and "scores" not in payload
        if not batched:
            self.batcher.drop(task.id)  # its chunks still queued are scored and ignored
        if item["status"] == "error":  # changed during the scan, or could not be read
            self.finish(task.id, item)
            return
        for k, v in payload["timings"].items():
            self.stats[k] += v
        if not payload["subjects"]:  # no face, or only ones tracking dropped
            self.finish(task.id, ordered(item))
        elif "scores" in payload:  # scored in the worker (CPU backends)
            self.complete(task.id, item, payload["subjects"], np.clip(payload["scores"], 0.0, 1.0))
        else:
            self.batcher.file_done(task.id, payload["crops"], item, payload["subjects"])
