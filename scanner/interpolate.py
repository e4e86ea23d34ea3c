"""Detection skipping: faces on frames between two detected frames, interpolated from both.

Why interpolate and not carry: sampled frames are ~0.3 s apart in a short clip, and a box held
from the frame before drifts off a moving head. A face seen on the detected frames on both sides
(matched with the tracker's own cost) is placed on the frames between by linear interpolation of
its box and keypoints; a face seen on one side only gets nothing there (it may have left or not
yet come, and a crop of background must never be scored as a face). The stage holds the skipped
frames until the next detection, so at most `detect_every` frames are alive at once.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from scanner.faces import Detection
from scanner.track import _INFEASIBLE, match_cost

def skipped(pos: int, detect_every: int, tile_every: int) -> bool:
    """Whether sampled frame `pos` skips detection: all but every `detect_every`-th, never a tiled one."""
    if detect_every <= 1 or pos % detect_every == 0:
        return False
    return not (tile_every > 0 and pos % tile_every == 0)


def match(before: list[Detection], after: list[Detection], gap: int) -> list[tuple[Detection, Detection]]:
    """The faces seen on both detected frames (`gap` sampled frames apart), paired one to one."""
    if not before or not after:
        return []
    cost = np.array([[match_cost(a.box, b.box, gap=gap) for b in after] for a in before])
    rows, cols = linear_sum_assignment(cost)
    return [(before[i], after[j]) for i, j in zip(rows, cols) if cost[i, j] < _INFEASIBLE]


def between(a: Detection, b: Detection, fraction: float) -> Detection:
    """The face `fraction` of the way from detection `a` to `b`; its score is the lower of the two."""
    box = tuple(float(x) for x in (1.0 - fraction) * np.asarray(a.box) + fraction * np.asarray(b.box))
    keypoints = (1.0 - fraction) * np.asarray(a.keypoints, dtype=np.float64) + fraction * np.asarray(b.keypoints, dtype=np.float64)
    return Detection(box=box, keypoints=keypoints.astype(np.float32), score=min(float(a.score), float(b.score)))
