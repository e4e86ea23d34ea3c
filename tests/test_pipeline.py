"""The scan pipeline end to end on real media: workers, faults, crops mode, resume, interruption.

Real PyAV decoding, real MediaPipe detections, a real (random-init) PG-FDD scored by the torch
backend. Few frames and small worker pools keep it fast on a 2-core CPU.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from dfscan.scanner import report as rp
from dfscan.scanner.faults import FaultPlan
from dfscan.scanner.pipeline import ScanOptions, scan
from tests.helpers import EXPECTED_CODES, IMAGES, TEST_SIZE, VIDEOS, by_name, make_broken_inputs, scan_options

pytestmark = pytest.mark.usefixtures("shared_cache")  # any exported ONNX model stays out of the user's cache


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, tiny_checkpoint):
    """One scan over good media and every broken input, shared by the tests below."""
    folder = tmp_path_factory.mktemp("mixed")
    broken = make_broken_inputs(folder / "broken")
    for name in ("WolfgangLanger_Pexels.mp4", "no_face.mp4", "face_noface.mov"):
        shutil.copy(VIDEOS / name, folder / name)
    shutil.copy(IMAGES / "multi_face.jpg", folder / "multi_face.jpg")
    (folder / "readme.txt").write_text("not media")
    events = []
    report = scan([folder], scan_options(tiny_checkpoint, report=folder / "out.json"), progress=events.append)
    return report, broken, folder, events


def test_report_is_valid_and_complete(mixed, tiny_checkpoint):
    from dfscan.train.checkpoint import file_sha256

    report, broken, folder, events = mixed
    rp.validate_report(report)
    names = by_name(report)
    assert {"WolfgangLanger_Pexels.mp4", "no_face.mp4", "face_noface.mov", "multi_face.jpg"} <= set(names)
    assert report["summary"]["files"] == 4 + len(broken)
    assert [s["path"] for s in report["skipped"]] == [str(folder / "readme.txt")]
    assert report["settings"]["frames"] == 12
    assert report["backend"]["name"] == "torch"
    assert report["model"]["sha256"] == file_sha256(tiny_checkpoint)
    assert report["model"]["name"] == tiny_checkpoint.name
    assert not mp.active_children(), "worker processes outlived the scan"


def test_pexels_clip_is_one_person_in_most_frames(mixed):
    item = by_name(mixed[0])["WolfgangLanger_Pexels.mp4"]
    assert item["status"] == "ok" and item["kind"] == "video"
    assert item["media"]["frames_sampled"] == 12
    assert len(item["subjects"]) == 1
    subject = item["subjects"][0]
    assert len(subject["frames"]) >= 0.9 * 12
    assert item["score"] == pytest.approx(subject["score"])
    assert subject["score"] == pytest.approx(np.mean([f["score"] for f in subject["frames"]]), abs=1e-5)
    assert item["verdict"] == ("fake" if item["score"] >= 0.5 else "real")
    times = [f["t"] for f in subject["frames"]]
    assert times == sorted(times) and times[-1] > 10  # spread over the 19.7 s clip
    x, y, w, h = subject["frames"][0]["box"]
    assert 0 <= x < 640 and 0 <= y < 360 and 20 < w < 640 and 20 < h < 360


def test_multi_face_photo_has_five_people(mixed):
    item = by_name(mixed[0])["multi_face.jpg"]
    assert item["kind"] == "image" and item["status"] == "ok"
    assert len(item["subjects"]) == 5
    assert item["score"] == pytest.approx(max(s["score"] for s in item["subjects"]))
    assert all(len(s["frames"]) == 1 for s in item["subjects"])


def test_no_face_video(mixed):
    item = by_name(mixed[0])["no_face.mp4"]
    assert item["status"] == "no_face"
    assert item["score"] is None and item["verdict"] is None and item["subjects"] == []
    assert item["media"]["frames_sampled"] > 0


def test_face_then_cartoon_has_one_subject_only_where_the_face_is(mixed):
    """face_noface.mov: a man in a warm-lit room, then a blue-sky cartoon title. The room frames
    are told from the sky frames by colour alone (red above blue), independently of MediaPipe."""
    from dfscan.scanner.media import iter_frames

    item = by_name(mixed[0])["face_noface.mov"]
    assert item["status"] == "ok" and item["media"]["codec"] == "hevc"
    assert item["media"]["frames_sampled"] == 12
    room = []
    for frame in iter_frames(mixed[2] / "face_noface.mov", frames=12):
        r, _, b = frame.image.reshape(-1, 3).mean(0)
        if r - b > 20:
            room.append(frame.index)
    assert 3 <= len(room) <= 9, room  # both parts are sampled: the check below means something
    assert len(item["subjects"]) == 1
    assert [f["index"] for f in item["subjects"][0]["frames"]] == room


@pytest.mark.parametrize("name", sorted(EXPECTED_CODES))
def test_broken_inputs_are_error_items(mixed, name):
    item = by_name(mixed[0])[name]
    assert item["status"] == "error" and item["kind"] in ("video", "image")
    assert item["error"]["code"] == EXPECTED_CODES[name], item["error"]
    message = item["error"]["message"]
    assert message and "\n" not in message and "Traceback" not in message
    assert item["score"] is None and item["verdict"] is None and item["subjects"] == []


def test_stream_and_progress(mixed):
    report, broken, folder, events = mixed
    stream = rp.read_report(folder / "out.stream.jsonl")
    assert sorted(i["path"] for i in stream["items"]) == sorted(i["path"] for i in report["items"])
    assert events[0].note == "loading the model" and events[0].done == 0  # before the backend loads
    assert events[1].item is None and events[1].total == report["summary"]["files"] and not events[1].note
    assert [e.done for e in events[2:]] == list(range(1, report["summary"]["files"] + 1))
    assert events[-1].faces == report["summary"]["faces"] > 0
    s = report["summary"]
    assert s["throughput"]["faces_per_s"] > 0 and s["stages"]["infer"] > 0 and s["stages"]["detect"] > 0
    assert s["stages"]["prepare"] > 0  # loading the model is accounted for


def test_first_run_says_it_exports_the_model(tiny_checkpoint, tmp_path, monkeypatch):
    from dfscan.engines.onnx_cache import cached_onnx_path
    from dfscan.scanner.pipeline import model_info, prepare_note

    monkeypatch.setenv("DFSCAN_CACHE", str(tmp_path / "cache"))
    model, _ = model_info(tiny_checkpoint)
    note = prepare_note(ScanOptions(backend="auto"), model)
    assert note.startswith("preparing the model (one-time ONNX export, cached in ") and str(tmp_path) in note
    assert prepare_note(ScanOptions(backend="torch"), model) == "loading the model"
    target = cached_onnx_path(model["sha256"])
    target.parent.mkdir(parents=True)
    target.write_bytes(b"exported")
    assert prepare_note(ScanOptions(backend="auto"), model) == "loading the model"


@pytest.mark.parametrize("in_workers", [True, False], ids=["infer-in-workers", "infer-in-main"])
def test_crops_mode_scores_every_crop_without_detection(tmp_path, tiny_checkpoint, in_workers):
    """Both inference paths: CPU workers scoring their own crops, and the main process batching them."""
    import cv2

    from dfscan.engines.torch import TorchBackend

    face = cv2.imread(str(IMAGES / "single_face.jpg"))
    cv2.imwrite(str(tmp_path / "face.png"), cv2.resize(face, (300, 300)))
    noise = np.random.default_rng(1).integers(0, 256, (TEST_SIZE, TEST_SIZE, 3), dtype=np.uint8)  # BGR; no face at all
    cv2.imwrite(str(tmp_path / "noise.png"), noise)
    report = scan([tmp_path], scan_options(tiny_checkpoint, crops=True, workers=1, infer_in_workers=in_workers))
    rp.validate_report(report)
    items = by_name(report)
    assert report["settings"]["crops"] is True
    assert report["summary"]["infer_in_workers"] is in_workers
    for name, size in (("face.png", 300), ("noise.png", TEST_SIZE)):
        item = items[name]
        assert item["kind"] == "crop" and item["status"] == "ok"
        assert len(item["subjects"]) == 1 and len(item["subjects"][0]["frames"]) == 1
        frame = item["subjects"][0]["frames"][0]
        assert frame["box"] == [0, 0, size, size] and frame["face_score"] is None
    assert report["summary"]["stages"]["detect"] == 0
    # a file of the model's input size is scored as it is: the same number the backend gives for its pixels
    backend = TorchBackend(tiny_checkpoint)
    expected = float(backend.predict(np.ascontiguousarray(noise[None, :, :, ::-1]))[0])
    backend.close()
    assert items["noise.png"]["score"] == pytest.approx(expected, abs=1e-4)


def test_crash_and_hang_become_error_items(tmp_path, tiny_checkpoint, monkeypatch):
    for name in ("crash.jpg", "hang.jpg", "good.jpg"):
        shutil.copy(IMAGES / "single_face.jpg", tmp_path / name)
    report = scan([tmp_path / "crash.jpg", tmp_path / "hang.jpg", tmp_path / "good.jpg"],
                  scan_options(tiny_checkpoint, workers=1, timeout=3,
                               faults=FaultPlan.parse("crash:crash.jpg,hang:hang.jpg")))
    rp.validate_report(report)
    items = by_name(report)
    assert items["crash.jpg"]["error"]["code"] == "worker_crashed"
    assert "SIGSEGV" in items["crash.jpg"]["error"]["message"]
    assert items["hang.jpg"]["error"]["code"] == "timeout"
    assert items["good.jpg"]["status"] == "ok"
    assert [i["path"] for i in report["items"]] == [str(tmp_path / n) for n in ("crash.jpg", "hang.jpg", "good.jpg")]
    assert not mp.active_children()


def test_idle_workers_exit_early_and_a_lost_workers_files_still_finish(tmp_path, tiny_checkpoint, monkeypatch):
    """With nothing left to hand out an idle worker is told to exit at once (its shutdown overlaps
    the others' files); the files a crashed worker had not started go to its replacement."""
    from dfscan.scanner import pool as pool_module

    names = ["crash.jpg", "good1.jpg", "good2.jpg", "good3.jpg"]
    for name in names:
        shutil.copy(IMAGES / "single_face.jpg", tmp_path / name)
    at_close = []
    original = pool_module.Pool.close

    def close(self, graceful=True):
        at_close.append((list(self.workers), [w.completed for w in self.retired]))
        original(self, graceful)

    monkeypatch.setattr(pool_module.Pool, "close", close)
    report = scan([tmp_path / n for n in names],
                  scan_options(tiny_checkpoint, workers=2, faults=FaultPlan.parse("crash:crash.jpg")))
    items = by_name(report)
    assert items["crash.jpg"]["error"]["code"] == "worker_crashed"
    assert all(items[n]["status"] == "ok" for n in names[1:])
    ((live, retired),) = at_close
    assert live == [] and len(retired) == 2 and sum(retired) >= 1  # every worker retired before close
    assert not mp.active_children()


def test_resume_skips_unchanged_done_files(tmp_path, tiny_checkpoint):
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(IMAGES / "single_face.jpg", tmp_path / name)
    out = tmp_path / "out.json"
    first = scan([tmp_path / "a.jpg", tmp_path / "b.jpg"], scan_options(tiny_checkpoint, workers=1, report=out))
    rp.write_report(first, out)
    shutil.copy(IMAGES / "astronaut.png", tmp_path / "c.png")
    st = os.stat(tmp_path / "b.jpg")
    os.utime(tmp_path / "b.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # b changed since
    second = scan([tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.png"],
                  scan_options(tiny_checkpoint, workers=1, report=out, resume=True))
    rp.validate_report(second)
    assert second["summary"]["resumed"] == 1
    assert second["summary"]["files"] == 3
    assert by_name(second)["a.jpg"] == by_name(first)["a.jpg"]
    # the stream now holds the new run's items after the old ones
    streamed = [Path(i["path"]).name for i in rp.read_report(rp.stream_path_for(out))["items"]]
    assert streamed[:2] == ["a.jpg", "b.jpg"] and sorted(streamed[2:]) == ["b.jpg", "c.png"]


def test_ctrl_c_returns_finished_items(tmp_path, tiny_checkpoint):
    for i in range(4):
        shutil.copy(IMAGES / "single_face.jpg", tmp_path / f"f{i}.jpg")

    def progress(p):
        if p.done == 1:
            raise KeyboardInterrupt

    out = tmp_path / "out.json"
    report = scan([tmp_path], scan_options(tiny_checkpoint, workers=1, report=out), progress=progress)
    assert report["summary"]["interrupted"] is True
    assert report["summary"]["files"] == 1
    rp.validate_report(report)
    assert len(rp.read_report(rp.stream_path_for(out))["items"]) == 1
    assert not mp.active_children()


def test_file_replaced_during_scan_is_an_error_not_a_stale_result(tmp_path, tiny_checkpoint):
    """b.jpg is replaced (by a faceless image) while the scan holds it: its verdict would be the old
    content's, stored under the new file's fingerprint, and --resume would keep it."""
    import cv2

    for name in ("a.jpg", "b.jpg"):
        shutil.copy(IMAGES / "single_face.jpg", tmp_path / name)
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def replace_b(p):  # b.jpg was handed to the worker (PREFETCH) before a.jpg finished
        if p.item is not None and p.item["path"].endswith("a.jpg"):
            cv2.imwrite(str(tmp_path / "new.png"), noise)
            os.replace(tmp_path / "new.png", tmp_path / "b.jpg")

    out = tmp_path / "out.json"
    first = scan([tmp_path / "a.jpg", tmp_path / "b.jpg"], scan_options(tiny_checkpoint, workers=1, report=out),
                 progress=replace_b)
    rp.write_report(first, out)
    rp.validate_report(first)
    items = by_name(first)
    assert items["a.jpg"]["status"] == "ok"
    assert items["b.jpg"]["status"] == "error" and items["b.jpg"]["error"]["code"] == "changed_during_scan"
    second = scan([tmp_path / "a.jpg", tmp_path / "b.jpg"],
                  scan_options(tiny_checkpoint, workers=1, report=out, resume=True))
    assert second["summary"]["resumed"] == 1  # a.jpg only: b.jpg is scanned again, as it is now
    assert by_name(second)["b.jpg"]["status"] == "no_face"
    assert by_name(second)["b.jpg"]["file"] == rp.file_fingerprint(tmp_path / "b.jpg")


def test_disk_full_mid_stream_keeps_the_stream_for_resume(tmp_path, tiny_checkpoint, monkeypatch):
    import errno

    from dfscan.scanner.pipeline import scan_to_report

    for i in range(3):
        shutil.copy(IMAGES / "single_face.jpg", tmp_path / f"f{i}.jpg")
    out = tmp_path / "out.json"
    stream = rp.stream_path_for(out)

    class FillsUp:
        """The stream's file on a disk that fills up after the header and the first item, mid-line."""

        def __init__(self, fh):
            self.fh, self.lines = fh, 0

        def write(self, text):
            self.lines += 1
            if self.lines > 2:
                self.fh.write(text[: len(text) // 2])
                self.fh.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(text)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    real_fdopen = os.fdopen

    def fake_fdopen(fd, *args, **kwargs):  # the stream is opened as a checked descriptor (dfscan.core.files.open_output_fd)
        fh = real_fdopen(fd, *args, **kwargs)
        return FillsUp(fh) if stream.exists() and os.path.samestat(os.fstat(fd), os.stat(stream)) else fh

    monkeypatch.setattr(rp.os, "fdopen", fake_fdopen)
    files = [tmp_path / f"f{i}.jpg" for i in range(3)]
    with pytest.raises(rp.OutputError, match="No space left on device.*rerun with --resume"):
        scan_to_report(files, scan_options(tiny_checkpoint, workers=1, report=out))
    monkeypatch.undo()
    assert not out.exists() and not rp.lock_path_for(out).exists()
    assert not stream.read_text().endswith("\n")  # torn mid-line
    assert len(rp.read_report(stream)["items"]) == 1
    assert not mp.active_children()
    report = scan_to_report(files, scan_options(tiny_checkpoint, workers=1, report=out, resume=True))
    assert report["summary"]["resumed"] == 1 and report["summary"]["files"] == 3
    assert rp.read_report(out) == report


def test_crop_sink_numbers_crops_and_sends_whole_chunks():
    from dfscan.scanner.stage import CropSink

    sent = []
    sink = CropSink(3, lambda first, crops: sent.append((first, crops[:, 0, 0, 0].tolist())))
    crop = lambda v: np.full((2, 2, 3), v, np.uint8)  # noqa: E731
    seqs = []
    for frame in ([1], [2, 3], [4, 5], [], [6]):  # one frame's faces are never split across chunks
        seqs += [sink.add(crop(v)) for v in frame]
        sink.send_full()
    sink.finish()
    assert seqs == [0, 1, 2, 3, 4, 5] and sink.count == 6
    assert sent == [(0, [1, 2, 3]), (3, [4, 5, 6])]


def test_crops_stream_in_chunks_with_few_in_flight_and_the_same_scores(tmp_path, tiny_checkpoint, monkeypatch):
    """A file of many crops reaches the main process in several chunks, never more than
    CHUNKS_IN_FLIGHT unscored per worker, even when inference is much slower than the worker;
    its scores are those of one chunk (the whole file at once) and of in-worker scoring."""
    import threading
    import time

    from dfscan.engines.torch import TorchBackend
    from dfscan.scanner import batcher
    from dfscan.scanner import pipeline as pl

    shutil.copy(VIDEOS / "WolfgangLanger_Pexels.mp4", tmp_path / "long.mp4")
    events: list[tuple[str, int, int]] = []  # ("chunk" | "ack", worker pid, crops)
    lock = threading.Lock()

    class CountedChunk(batcher.Chunk):
        def __post_init__(self) -> None:
            super().__post_init__()
            with lock:
                events.append(("chunk", self.owner.proc.pid, len(self.crops)))

    real_ack, real_predict = pl.ack, TorchBackend.predict

    def counted_ack(w):
        with lock:
            events.append(("ack", w.proc.pid, 0))
        real_ack(w)

    def slow_predict(self, crops):
        time.sleep(0.15)  # far slower than decoding and detecting a frame: a worker left alone would run ahead
        return real_predict(self, crops)

    monkeypatch.setattr(batcher, "Chunk", CountedChunk)
    monkeypatch.setattr(pl, "ack", counted_ack)
    monkeypatch.setattr(TorchBackend, "predict", slow_predict)
    chunked = scan([tmp_path / "long.mp4"],
                   scan_options(tiny_checkpoint, fps=2.0, workers=1, batch_size=3, infer_in_workers=False))
    monkeypatch.undo()

    chunks = [n for kind, _, n in events if kind == "chunk"]
    item = by_name(chunked)["long.mp4"]
    faces = sum(len(s["frames"]) for s in item["subjects"])
    assert item["status"] == "ok" and faces >= 30
    assert len(chunks) >= 10 and sum(chunks) >= faces and max(chunks) <= 3 + 2  # one frame's faces stay together
    in_flight = peak = 0
    for kind, _, _ in events:
        in_flight += 1 if kind == "chunk" else -1
        peak = max(peak, in_flight)
    assert 1 <= peak <= pl.CHUNKS_IN_FLIGHT and in_flight == 0  # every chunk acked

    whole = scan([tmp_path / "long.mp4"],
                 scan_options(tiny_checkpoint, fps=2.0, workers=1, batch_size=256, infer_in_workers=False))
    in_worker = scan([tmp_path / "long.mp4"], scan_options(tiny_checkpoint, fps=2.0, workers=1, batch_size=1))
    assert in_worker["summary"]["infer_in_workers"] and not chunked["summary"]["infer_in_workers"]
    scores, rest = _split_scores(item)
    for other in (whole, in_worker):
        other_scores, other_rest = _split_scores(by_name(other)["long.mp4"])
        assert other_scores == pytest.approx(scores, abs=1e-5)  # batch composition only: float rounding
        assert other_rest == rest


def _split_scores(item: dict) -> tuple[list[float], dict]:
    """An item's scores (item, subjects, frames) apart from everything else in it."""
    scores = [item["score"]] + [s["score"] for s in item["subjects"]] + [f["score"] for s in item["subjects"] for f in s["frames"]]
    rest = {**item, "score": None, "subjects": [{**s, "score": None, "frames": [{**f, "score": None} for f in s["frames"]]}
                                                 for s in item["subjects"]]}
    return scores, rest


def test_timeout_counts_from_the_last_progress(tmp_path, tiny_checkpoint, monkeypatch):
    """A file that takes far longer than --timeout but keeps producing frames is scanned; a hung one is stopped."""
    from dfscan.scanner.faults import SLOW_FRAME_S

    shutil.copy(VIDEOS / "single_face.mp4", tmp_path / "slow.mp4")
    shutil.copy(IMAGES / "single_face.jpg", tmp_path / "hang.jpg")
    # a 3 s limit leaves 2.6 s of slack per 0.4 s frame for a loaded machine; 24 frames take 9.6 s
    timeout, frames = 3.0, 24
    assert frames * SLOW_FRAME_S > 3 * timeout  # the slow file's whole time is well past the timeout
    report = scan([tmp_path / "slow.mp4", tmp_path / "hang.jpg"],
                  scan_options(tiny_checkpoint, workers=1, timeout=timeout, frames=frames,
                        faults=FaultPlan.parse("slow:slow.mp4,hang:hang.jpg")))
    rp.validate_report(report)
    items = by_name(report)
    assert items["slow.mp4"]["status"] == "ok", items["slow.mp4"].get("error")
    assert items["slow.mp4"]["media"]["frames_sampled"] == frames
    assert items["hang.jpg"]["error"]["code"] == "timeout"
    assert not mp.active_children()
