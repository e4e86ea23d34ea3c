"""Detection skipping: faces on frames between two detected frames, interpolated from both.

Why interpolate and not carry: sampled frames of a short clip are ~0.3 s apart, and a box held
from the frame before drifts off a moving head. A face seen on the detected frames on both sides
(matched with the tracker's own cost) is placed on the frames between by linear interpolation of
its box and keypoints; a face seen on one side only gets nothing there (it may have left or not
yet come). Frames are skipped only while they are at most MAX_SKIP_SECONDS after the last
detected one, the spacing bench/detect_every.py measured: with sampled frames seconds apart (a
long video at the default 32 frames, --keyframes) every frame is detected, since a shot can
change and change back between two of them. The stage holds the skipped frames until the next
detection, so at most `detect_every` frames are alive at once.
"""

from __future__ import annotations

import numpy as np

from dfscan.scanner.assign import linear_assignment
from dfscan.scanner.faces import Detection, tiled_pass_due
from dfscan.scanner.track import _INFEASIBLE, match_cost

MAX_SKIP_SECONDS = 0.7  # measured from 0.08 to 0.63 s between sampled frames (bench/detect_every.py)


def skipped(pos: int, since_detected: float, detect_every: int, tile_every: int) -> bool:
    """Whether sampled frame `pos`, `since_detected` seconds after the last detected frame, skips detection.

    All but every `detect_every`-th frame skip, never a frame due for the tiled pass (`tile_every`:
    0 when the frame is too small to tile) and never one too far from the last detection.
    """
    if detect_every <= 1 or pos % detect_every == 0 or since_detected > MAX_SKIP_SECONDS:
        return False
    return not tiled_pass_due(pos, tile_every)


def match(before: list[Detection], after: list[Detection], gap: int) -> list[tuple[Detection, Detection]]:
    """The faces seen on both detected frames (`gap` sampled frames apart), paired one to one."""
    if not before or not after:
        return []
    cost = np.array([[match_cost(a.box, b.box, gap=gap) for b in after] for a in before])
    rows, cols = linear_assignment(cost)
    return [(before[i], after[j]) for i, j in zip(rows, cols) if cost[i, j] < _INFEASIBLE]


def between(a: Detection, b: Detection, fraction: float) -> Detection:
    """The face `fraction` of the way from detection `a` to `b`; its score is the lower of the two."""
    x0, y0, x1, y1 = (float(v) for v in (1.0 - fraction) * np.asarray(a.box) + fraction * np.asarray(b.box))
    keypoints = (1.0 - fraction) * np.asarray(a.keypoints, dtype=np.float64) + fraction * np.asarray(b.keypoints, dtype=np.float64)
    return Detection(box=(x0, y0, x1, y1), keypoints=keypoints.astype(np.float32), score=min(float(a.score), float(b.score)),
                     interpolated=True)


def fill(before: list[Detection], after: list[Detection], first: int, last: int, positions: list[int]) -> list[list[Detection]]:
    """The faces on each skipped frame in `positions`, between detected frames `first` and `last`."""
    pairs = match(before, after, last - first)
    return [[between(a, b, (p - first) / (last - first)) for a, b in pairs] for p in positions]
