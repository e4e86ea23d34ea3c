"""bench/peers.py's crop geometry: the DeepfakeBench-style 1.3x square, clamped to the frame."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("bench_peers", Path(__file__).resolve().parents[1] / "bench" / "peers.py")
peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers)


def test_square_box_centred_on_the_face_inside_the_frame():
    # a 100x80 box in the middle of a 640x480 frame: side 1.3 x 100, same centre
    x, y, side = peers.square_box(270, 200, 370, 280, 640, 480)
    assert side == 130
    assert (x + side / 2, y + side / 2) == pytest.approx((320, 240), abs=1)


@pytest.mark.parametrize("box", [(-20, -30, 80, 70), (580, 420, 660, 500), (0, 0, 640, 480), (600, 10, 700, 110)])
def test_square_box_stays_square_and_inside_the_frame(box):
    x, y, side = peers.square_box(*box, 640, 480)
    assert x >= 0 and y >= 0 and side >= 1
    assert x + side <= 640 and y + side <= 480
    assert side <= int(max(box[2] - box[0], box[3] - box[1]) * 1.3)
