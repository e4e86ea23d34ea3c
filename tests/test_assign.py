"""dfscan.scanner.assign: the tracker's matching gives SciPy's optimum."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from dfscan.scanner.assign import linear_assignment
from dfscan.scanner.track import _INFEASIBLE


def feasible(cost, rows, cols) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in zip(rows, cols) if cost[i, j] < _INFEASIBLE}


@pytest.mark.parametrize("seed", range(4))
def test_same_matching_as_scipy_on_random_rectangular_costs(seed):
    rng = np.random.default_rng(seed)
    for _ in range(300):
        n, m = rng.integers(0, 10, size=2)
        cost = rng.random((n, m)) * 3
        if seed % 2:
            cost[rng.random((n, m)) < 0.3] = _INFEASIBLE  # pairs too far apart, as the tracker marks them
        rows, cols = linear_assignment(cost)
        want_rows, want_cols = linear_sum_assignment(cost)
        if seed % 2:  # which infeasible pair fills a row is a tie; the tracker keeps only the feasible ones
            assert feasible(cost, rows, cols) == feasible(cost, want_rows, want_cols)
            assert len(rows) == len(want_rows) and list(rows) == sorted(rows)
        else:
            np.testing.assert_array_equal(rows, want_rows)
            np.testing.assert_array_equal(cols, want_cols)


def test_ties_still_give_an_optimal_one_to_one_matching():
    rng = np.random.default_rng(7)
    for _ in range(300):
        n, m = rng.integers(1, 8, size=2)
        cost = rng.integers(0, 3, size=(n, m)).astype(float)
        rows, cols = linear_assignment(cost)
        want_rows, want_cols = linear_sum_assignment(cost)
        assert len(rows) == min(n, m) and len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
        assert list(rows) == sorted(rows)
        assert cost[rows, cols].sum() == pytest.approx(cost[want_rows, want_cols].sum())


def test_a_swap_that_greedy_matching_would_make_is_avoided():
    # greedy takes (0, 0) at 1.0 and leaves row 1 the 10.0 pair; the optimum is 2 + 2
    cost = np.array([[1.0, 2.0], [2.0, 10.0]])
    rows, cols = linear_assignment(cost)
    assert list(zip(rows, cols)) == [(0, 1), (1, 0)]


def test_bad_costs_are_refused():
    with pytest.raises(ValueError):
        linear_assignment(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError):
        linear_assignment(np.zeros(3))
    rows, cols = linear_assignment(np.zeros((0, 4)))
    assert rows.size == cols.size == 0
