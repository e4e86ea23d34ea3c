"""The cross-file crop batcher without processes: batches cut across files, scores back to their files, acks, backpressure."""

import numpy as np
import pytest

from dfscan.scanner.batcher import CropBatcher


class Runner:
    """Scores each batch when it is collected: a crop's score is its pixel value / 100."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []
        self.waiting: list[tuple[np.ndarray, list]] = []

    @property
    def in_flight(self) -> int:
        return len(self.waiting)

    def submit(self, batch: np.ndarray, owners: list) -> None:
        self.batches.append(batch)
        self.waiting.append((batch, owners))

    def results(self, block: bool = False):
        while self.waiting:
            batch, owners = self.waiting.pop(0)
            yield owners, batch[:, 0, 0, 0].astype(np.float32) / 100


def crops(*values: int) -> np.ndarray:
    return np.stack([np.full((2, 2, 3), v, np.uint8) for v in values])


@pytest.fixture
def setup():
    runner, done, acks = Runner(), {}, []
    batcher = CropBatcher(runner, 3, lambda task, item, subjects, scores: done.setdefault(task, dict(scores)),
                          acks.append, max_buffered=5)
    return runner, batcher, done, acks


def test_batches_cut_across_files_and_scores_return_to_their_files(setup):
    runner, batcher, done, acks = setup
    batcher.add_crops(0, 0, crops(1, 2), "w0")
    batcher.add_crops(1, 0, crops(11, 12, 13), "w1")
    batcher.pump()  # one full batch: file 0's two crops and the first of file 1
    assert [b[:, 0, 0, 0].tolist() for b in runner.batches] == [[1, 2, 11]]
    batcher.file_done(0, 2, {"path": "a"}, [])
    assert done == {}  # its crops are submitted, not yet scored
    batcher.collect()
    assert done == {0: pytest.approx({0: 0.01, 1: 0.02})} and acks == ["w0"]  # w1's chunk is only partly scored
    batcher.add_crops(1, 3, crops(14), "w1")
    batcher.file_done(1, 4, {"path": "b"}, [])
    batcher.flush()
    assert runner.batches[-1][:, 0, 0, 0].tolist() == [12, 13, 14]
    assert done[1] == pytest.approx({0: 0.11, 1: 0.12, 2: 0.13, 3: 0.14})
    assert acks == ["w0", "w1", "w1"] and batcher.buffered == 0 and not batcher.pending


def test_full_holds_back_until_scores_are_collected(setup):
    runner, batcher, done, acks = setup
    batcher.add_crops(0, 0, crops(1, 2, 3), "w")
    assert not batcher.full
    batcher.add_crops(0, 3, crops(4, 5), "w")
    assert batcher.full  # 5 unscored crops: stop reading workers
    batcher.pump()
    batcher.collect()
    assert not batcher.full and batcher.buffered == 2  # one full batch scored, two crops still queued


def test_dropped_file_is_scored_and_ignored_and_bad_counts_raise(setup):
    runner, batcher, done, acks = setup
    batcher.add_crops(0, 0, crops(1), "w")
    batcher.drop(0)  # its worker crashed
    batcher.flush()
    assert done == {} and acks == ["w"]  # the chunk is still acked: its worker may be replaced but the pipe stays sane
    with pytest.raises(RuntimeError, match="after 0"):
        batcher.add_crops(1, 2, crops(1), "w")
    batcher.add_crops(2, 0, crops(1), "w")
    with pytest.raises(RuntimeError, match="made 2 crops but sent 1"):
        batcher.file_done(2, 2, {}, [])
