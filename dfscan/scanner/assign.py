"""Minimum-cost one-to-one matching, for the tracker and detection skipping.

Why not scipy.optimize.linear_sum_assignment: the tracker's matrices are a few faces by a few
faces, and importing scipy.optimize cost 0.29 s of every scan worker's start-up on the 2-core
dev box (a third of a 720p clip's whole scan). The Hungarian method with potentials below
gives the same optimum (tests compare it with SciPy) in a few dozen lines.
"""

from __future__ import annotations

import numpy as np


def linear_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a minimum-cost matching of min(n, m) pairs, rows ascending, as SciPy returns them.

    Shortest augmenting paths with row and column potentials, one row added at a time:
    O(n² m) for n ≤ m (the matrix is transposed otherwise). Costs must be finite.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"expected a 2-D cost matrix, got shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("cost matrix has a NaN or infinite entry")
    if cost.size == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    transposed = cost.shape[0] > cost.shape[1]
    c = cost.T if transposed else cost
    n, m = c.shape
    u = np.zeros(n + 1)  # row potentials (1-based; 0 unused)
    v = np.zeros(m + 1)  # column potentials; column 0 is the virtual start of each path
    owner = np.zeros(m + 1, dtype=np.intp)  # owner[j]: the row (1-based) matched to column j, 0 for none
    way = np.zeros(m + 1, dtype=np.intp)  # the previous column on the shortest path to j
    for row in range(1, n + 1):
        owner[0] = row
        j0 = 0
        dist = np.full(m + 1, np.inf)  # reduced-cost distance to each column
        done = np.zeros(m + 1, dtype=bool)
        while True:
            done[j0] = True
            i0 = owner[j0]
            reduced = c[i0 - 1] - u[i0] - v[1:]
            free = ~done[1:]
            closer = free & (reduced < dist[1:])
            dist[1:][closer] = reduced[closer]
            way[1:][closer] = j0
            j1 = int(np.argmin(np.where(free, dist[1:], np.inf))) + 1
            delta = dist[j1]
            u[owner[done]] += delta
            v[done] -= delta
            dist[~done] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the path: each column on it takes the row of the column before
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    cols = np.flatnonzero(owner[1:])
    rows = owner[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.intp), cols[order].astype(np.intp)
