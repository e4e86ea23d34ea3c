"""dfscan.scanner.track: joining detections into subjects (optimal matching, short tracks dropped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dfscan.scanner.faces import Detection, FaceDetector
from dfscan.scanner.media import iter_frames
from dfscan.scanner.track import default_min_frames, match_cost, track_faces

MEDIA = Path(__file__).parent / "data" / "media"


def det(x: float, y: float = 100.0, size: float = 10.0, score: float = 0.9) -> Detection:
    return Detection((x, y, size, size), np.zeros((6, 2), np.float32), score)


@pytest.fixture(scope="module")
def detections():
    """Per-frame detections of the real clips (32 sampled frames), shared by the tests."""
    out = {}
    with FaceDetector() as d:
        for name in ("WolfgangLanger_Pexels.mp4", "face_noface.mov", "no_face.mp4"):
            frames = list(iter_frames(MEDIA / "videos" / name))
            out[name] = ([f.t for f in frames], [d.detect(f.image) for f in frames])
    return out


def test_pexels_is_one_subject_in_90_percent_of_frames(detections):
    _, per_frame = detections["WolfgangLanger_Pexels.mp4"]
    tracks = track_faces(per_frame)
    assert len(tracks) == 1
    assert len(tracks[0].frames) >= 0.9 * len(per_frame) and len(per_frame) == 32
    assert tracks[0].id == 0 and tracks[0].mean_score > 0.8


def test_face_then_cartoon_keeps_the_face_only_where_it_is(detections):
    """face_noface.mov: the man for the first ~2.4 s, then a cartoon title (weak false hits)."""
    times, per_frame = detections["face_noface.mov"]
    face_frames = [i for i, t in enumerate(times) if t < 2.4]
    tracks = track_faces(per_frame)
    assert len(tracks) == 1
    seen = tracks[0].frames
    assert all(times[i] < 2.45 for i in seen)
    assert len(seen) >= 0.9 * len(face_frames)
    assert any(per_frame[i] for i in range(len(times)) if times[i] > 2.45)  # there was something to drop


def test_no_face_clip_has_no_subject(detections):
    _, per_frame = detections["no_face.mp4"]
    assert any(per_frame)  # weak false hits on clouds...
    assert track_faces(per_frame) == []  # ...that do not become subjects


def test_optimal_not_greedy_matching():
    """Greedy would give A the nearest new box (d2) and leave B to start a new track."""
    a, b = det(0.0), det(-8.0)
    d1, d2 = det(3.0), det(-2.8)
    assert match_cost(a.box, d2.box) < match_cost(a.box, d1.box) < match_cost(b.box, d2.box)
    assert match_cost(b.box, d1.box) >= 1e6  # too far
    tracks = track_faces([[a, b], [d1, d2]], min_frames=2)
    assert len(tracks) == 2
    by_start = {t.observations[0][1].box[0]: [d for _, d in t.observations] for t in tracks}
    assert by_start[0.0][1] is d1 and by_start[-8.0][1] is d2


def test_two_people_crossing_paths_stay_separate():
    rng = np.random.default_rng(0)
    per_frame = []
    for k in range(20):  # two faces walking towards each other, detections shuffled per frame
        dets = [det(100 + 6 * k + rng.normal(0, 0.5), size=40), det(300 - 6 * k + rng.normal(0, 0.5), y=160, size=40)]
        rng.shuffle(dets)
        per_frame.append(dets)
    tracks = track_faces(per_frame)
    assert len(tracks) == 2
    for t in tracks:
        ys = {d.box[1] for _, d in t.observations}
        assert len(ys) == 1 and len(t.observations) == 20


def test_short_lived_and_weak_tracks_dropped():
    per_frame = [[det(100)] for _ in range(20)]
    per_frame[7].append(det(400))  # one-frame blip
    for i in range(5, 15):
        per_frame[i].append(det(700, score=0.55))  # steady but weak: a cartoon/cloud
    tracks = track_faces(per_frame)
    assert len(tracks) == 1 and len(tracks[0].observations) == 20
    assert default_min_frames(per_frame) == 2
    kept = track_faces(per_frame, min_frames=1, min_track_score=0.0)
    assert len(kept) == 3


def test_gaps_bridged_up_to_max_gap():
    per_frame = [[det(100)] if i not in (4, 5, 6) else [] for i in range(12)]
    assert len(track_faces(per_frame, max_gap=3)) == 1
    assert len(track_faces(per_frame, max_gap=2, min_frames=1)) == 2
    per_frame = [[det(100)] if i != 5 else [det(160)] for i in range(12)]  # jump too far: a new face
    ids = [len(t.observations) for t in track_faces(per_frame, min_frames=1)]
    assert sorted(ids) == [1, 11]


def test_still_image_keeps_every_face():
    faces = [det(10), det(100), det(200, score=0.55)]
    tracks = track_faces([faces])
    assert [t.observations[0][1] for t in tracks] == faces
    assert [t.id for t in tracks] == [0, 1, 2]


def test_reach_spares_faces_smaller_than_a_frame_searched_for():
    """A small face seen on every 5th (tiled) frame only is one subject; a large one missed as long is not."""
    tiled = {0, 5, 10, 15}
    reach = [0.0 if pos in tiled else 50.0 for pos in range(16)]  # plain frames find faces from 50 px up
    small = [[det(200.0, size=20.0)] if pos in tiled else [] for pos in range(16)]
    assert track_faces(small) == []  # four frames between sightings: more than max_gap (3)
    (track,) = track_faces(small, reach=reach)
    assert track.frames == sorted(tiled)
    large = [[det(200.0, size=80.0)] if pos in tiled else [] for pos in range(16)]
    assert track_faces(large, reach=reach) == []  # the plain frames looked for it and missed it
