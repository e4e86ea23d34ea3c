"""Report building, schema validation, the three formats, the stream and --resume bookkeeping."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest

from dfscan.core.errors import InputError
from dfscan.scanner import report as rp

SHA = "ab" * 32
SETTINGS = {"frames": 32, "fps": None, "keyframes": False, "crops": False, "face_model": "full", "strategy": "mean", "threshold": 0.5}


def _header(**kw):
    return rp.make_header(
        model={"name": "m.safetensors", "sha256": SHA, "backbone": "efficientnet_lite0", "threshold": 0.5},
        backend={"name": "onnxruntime", "device": "cpu", "precision": "fp32"},
        settings=dict(SETTINGS, **kw),
        skipped=[{"path": "notes.txt", "reason": "not a video or image"}],
    )


def _items(tmp_path):
    video = tmp_path / "a.mp4"
    video.write_bytes(b"x" * 10)
    ok = {
        "path": str(video), "kind": "video", "status": "ok", "error": None, "score": 0.8, "verdict": "fake",
        "media": {"width": 640, "height": 360, "fps": 25.0, "duration": 4.0, "frames_sampled": 2, "codec": "h264", "rotation": 0},
        "file": rp.file_fingerprint(video),
        "subjects": [
            {"id": 0, "score": 0.8, "verdict": "fake", "frames": [
                {"index": 0, "t": 0.0, "box": [10, 20, 30, 30], "score": 0.7, "face_score": 0.9},
                {"index": 50, "t": 2.0, "box": [12, 20, 30, 30], "score": 0.9, "face_score": 0.95}]},
            {"id": 1, "score": 0.1, "verdict": "real", "frames": [{"index": 0, "t": 0.0, "box": [100, 20, 30, 30], "score": 0.1}]},
        ],
    }
    no_face = {"path": str(tmp_path / "b.jpg"), "kind": "image", "status": "no_face", "error": None, "score": None,
               "verdict": None, "media": {"width": 10, "height": 10, "fps": None, "duration": None, "frames_sampled": 1, "codec": "mjpeg", "rotation": 0},
               "subjects": []}
    err = rp.error_item(str(tmp_path / "c.mp4"), "video", "truncated", "moov atom\nnot found")
    return [ok, no_face, err]


def _report(tmp_path):
    items = _items(tmp_path)
    return rp.build_report(_header(), items, rp.summarize(items, seconds=2.0, faces=3, skipped=1))


def test_report_validates_and_counts(tmp_path):
    report = _report(tmp_path)
    rp.validate_report(report)
    s = report["summary"]
    assert (s["ok"], s["no_face"], s["error"], s["fakes"], s["real"], s["subjects"]) == (1, 1, 1, 1, 0, 2)
    assert s["throughput"] == {"files_per_s": 1.5, "faces_per_s": 1.5}
    assert report["items"][2]["error"]["message"] == "moov atom not found"  # forced onto one line


@pytest.mark.parametrize("breakage", [
    lambda r: r.pop("summary"),
    lambda r: r["model"].pop("sha256"),
    lambda r: r["items"][0].update(status="done"),
    lambda r: r["items"][0].update(score=None),  # an ok item needs a score
    lambda r: r["items"][2].update(error=None),  # an error item needs its error
    lambda r: r["items"][0]["subjects"][0]["frames"][0].update(box=[1, 2, 3]),
    lambda r: r["items"][0].update(kind="audio"),
])
def test_schema_rejects_broken_reports(tmp_path, breakage):
    report = _report(tmp_path)
    breakage(report)
    assert rp.validation_errors(report)
    with pytest.raises(InputError, match="does not match dfscan.report/1"):
        rp.validate_report(report)


def test_json_jsonl_csv_round_trip(tmp_path):
    report = _report(tmp_path)
    for fmt in rp.FORMATS:
        out = rp.write_report(report, tmp_path / f"out.{fmt}")
        assert out.is_file()
    assert json.loads((tmp_path / "out.json").read_text()) == report
    assert rp.read_report(tmp_path / "out.json") == report
    back = rp.read_report(tmp_path / "out.jsonl")
    assert back == report
    rp.validate_report(back)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    # one row per subject, one row for each item without subjects
    assert len(rows) == 4
    assert [r["subject_id"] for r in rows] == ["0", "1", "", ""]
    assert rows[3]["error_code"] == "truncated" and rows[3]["score"] == ""
    assert set(rows[0]) == set(rp.CSV_COLUMNS)
    # no temporary files left behind by the atomic writes
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_format_from_name_and_unknown_format(tmp_path):
    assert rp.format_for("x.csv") == "csv"
    assert rp.format_for("x") == "json" and rp.format_for("x.out", "json") == "json"
    with pytest.raises(InputError, match=r"\.out is not a report format"):
        rp.format_for("x.out")
    assert rp.format_for("x.csv", "jsonl") == "jsonl"
    with pytest.raises(InputError, match="unknown report format"):
        rp.format_for("x.json", "xml")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    import dfscan.core.files

    target = tmp_path / "r.json"
    rp.atomic_write_text(target, "old\n")
    with pytest.raises(UnicodeEncodeError):  # text that cannot be encoded
        rp.atomic_write_text(target, "new \ud800\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["r.json"]

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dfscan.core.files.os, "fsync", full_disk)  # fails after the temp file exists
    with pytest.raises(OSError, match="No space"):
        rp.atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["r.json"]


def test_stream_is_a_readable_partial_report_and_survives_a_torn_line(tmp_path):
    items = _items(tmp_path)
    path = rp.stream_path_for(tmp_path / "out.json")
    assert path.name == "out.stream.jsonl"
    with rp.ReportStream(path, _header()) as stream:
        stream.write_item(items[0])
    with open(path, "a") as fh:  # a crash in the middle of the next line
        fh.write('{"path": "half')
    partial = rp.read_report(path)
    assert [i["path"] for i in partial["items"]] == [items[0]["path"]]
    with rp.ReportStream(path, _header(), append=True) as stream:
        stream.write_item(items[1])
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)


def test_resumable_items_keep_unchanged_done_files_only(tmp_path):
    items = _items(tmp_path)
    crashed = rp.error_item(str(tmp_path / "d.mp4"), "video", "worker_crashed", "worker crashed")
    (tmp_path / "d.mp4").write_bytes(b"d")
    crashed["file"] = rp.file_fingerprint(tmp_path / "d.mp4")
    items[2]["file"] = None
    stream = rp.stream_path_for(tmp_path / "out.json")
    with rp.ReportStream(stream, _header()) as s:
        for item in items + [crashed]:
            s.write_item({k: v for k, v in item.items() if v is not None or k != "file"})
    kept = rp.resumable_items([tmp_path / "out.json", stream], model_sha256=SHA, settings=SETTINGS)
    # a.mp4 is unchanged: kept. b.jpg has no fingerprint, c.mp4 none either, d.mp4 crashed: rescanned.
    assert list(kept) == [os.path.abspath(items[0]["path"])]
    # touching the file invalidates it
    st = os.stat(items[0]["path"])
    os.utime(items[0]["path"], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert rp.resumable_items([stream], model_sha256=SHA, settings=SETTINGS) == {}


def test_resume_refuses_other_model_or_settings(tmp_path):
    stream = tmp_path / "out.stream.jsonl"
    with rp.ReportStream(stream, _header()):
        pass
    with pytest.raises(InputError, match="another model"):
        rp.resumable_items([stream], model_sha256="cd" * 32, settings=SETTINGS)
    with pytest.raises(InputError, match="settings changed \\(frames\\)"):
        rp.resumable_items([stream], model_sha256=SHA, settings=dict(SETTINGS, frames=8))


def test_read_report_rejects_other_files(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(InputError, match="not a dfscan.report/1"):
        rp.read_report(bad)
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not JSON"):
        rp.read_report(bad)


def test_atomic_writes_honour_the_umask(tmp_path):
    """mkstemp makes 0600 files; an output written through it gets the mode open() would give."""
    import os
    import stat

    from dfscan.scanner.report import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "out.json", "{}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        with rp.ReportStream(rp.stream_path_for(path), _header()) as stream:  # the stream, as any new file
            assert stat.S_IMODE(stream.path.stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write_text(tmp_path / "private.json", "{}").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_stream_lines_end_only_at_newline(tmp_path):
    """JSON leaves U+2028 and U+0085 raw in strings; str.splitlines() cut such a file's line in two
    and --resume failed with 'line N is not JSON'."""
    odd = tmp_path / "clip\u2028two\x85.mp4"
    odd.write_bytes(b"x")
    item = rp.error_item(str(odd), "video", "not_media", "not a video", fingerprint=rp.file_fingerprint(odd))
    stream = rp.stream_path_for(tmp_path / "out.json")
    with rp.ReportStream(stream, _header()) as s:
        s.write_item(item)
        s.write_item(_items(tmp_path)[0])
    assert [i["path"] for i in rp.read_report(stream)["items"]][0] == str(odd)
    kept = rp.resumable_items([stream], model_sha256=SHA, settings=SETTINGS)
    assert os.path.abspath(str(odd)) in kept


def test_resume_appends_after_a_torn_last_line_that_ends_in_newline(tmp_path):
    """A torn last line is skipped when reading; appending must also cut it, or it becomes a torn
    line in the middle and the next --resume fails."""
    items = _items(tmp_path)
    path = rp.stream_path_for(tmp_path / "out.json")
    with rp.ReportStream(path, _header()) as stream:
        stream.write_item(items[0])
    with open(path, "a") as fh:  # two scans' lines spliced, or a crash, with the newline written
        fh.write('{"path": "a.mp4", "kind": "vid{"path": "b.mp4"}\n')
    assert len(rp.read_report(path)["items"]) == 1  # the torn last line is skipped, not an error
    assert list(rp.resumable_items([path], model_sha256=SHA, settings=SETTINGS)) == [os.path.abspath(items[0]["path"])]
    with rp.ReportStream(path, _header(), append=True) as stream:
        stream.write_item(items[1])
    assert [i["path"] for i in rp.read_report(path)["items"]] == [items[0]["path"], items[1]["path"]]
    # a broken line in the middle is still an error: the stream was damaged, not cut short
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], '{"path": "torn', lines[1], ""]))
    with pytest.raises(InputError, match="line 2 is not JSON"):
        rp.read_report(path)


def _dead_pid() -> int:
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_report_lock_refuses_a_second_writer_and_takes_over_a_stale_lock(tmp_path):
    import socket
    import stat

    report = tmp_path / "out.json"
    lock_file = rp.lock_path_for(report)
    assert lock_file.parent == tmp_path and lock_file != report
    with rp.ReportLock(report):
        owner = json.loads(lock_file.read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        mask = os.umask(0)
        os.umask(mask)
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o666 & ~mask  # a normal file's mode
        with pytest.raises(rp.ReportLocked, match=f"being written by another scan \\(pid {os.getpid()} on "):
            rp.ReportLock(report).acquire()
    assert not lock_file.exists()  # removed on release
    # a lock file left behind by a killed scan is stale: taken over
    lock_file.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    with rp.ReportLock(report):
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert not lock_file.exists()


def test_report_lock_without_flock_decides_by_the_owners_pid(tmp_path, monkeypatch):
    """Some network file systems have no flock: then a lock is stale when its pid is dead."""
    import errno
    import socket

    fcntl = pytest.importorskip("fcntl")

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    report = tmp_path / "out.json"
    lock_file = rp.lock_path_for(report)
    lock_file.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))  # alive
    with pytest.raises(rp.ReportLocked, match=f"pid {os.getppid()}"):
        rp.ReportLock(report).acquire()
    assert lock_file.exists()  # a live owner's lock is left alone
    lock_file.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    with rp.ReportLock(report):
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert not lock_file.exists()


def test_output_path_is_checked_before_a_scan(tmp_path):
    folder = tmp_path / "taken.json"
    folder.mkdir()
    with pytest.raises(rp.OutputError, match="is a folder"):
        rp.check_output_path(folder)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(rp.OutputError, match="notes.txt is not a folder"):
        rp.check_output_path(a_file / "sub" / "out.json")
    rp.check_output_path(tmp_path / "new" / "deeper" / "out.json")  # missing folders are made, as before
    assert (tmp_path / "new" / "deeper").is_dir()
    if os.geteuid() != 0:  # root writes through chmod: a read-only folder restricts only other users
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(rp.OutputError, match="not writable"):
                rp.check_output_path(ro / "out.json")
        finally:
            ro.chmod(0o755)


def test_write_failures_are_output_errors_and_keep_what_was_written(tmp_path, monkeypatch):
    import errno

    report = _report(tmp_path)
    out = rp.write_report(report, tmp_path / "out.json")

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rp, "atomic_write_bytes", disk_full)
    with pytest.raises(rp.OutputError, match="No space left on device") as info:
        rp.write_report(report, out)
    assert "\n" not in str(info.value)
    assert json.loads(out.read_text()) == report  # the old report is untouched
    monkeypatch.undo()

    # the stream: the disk fills up after the first item
    stream = rp.stream_path_for(tmp_path / "out.json")
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(rp.os, "fsync", fsync)
    s = rp.ReportStream(stream, _header())
    s.write_item(report["items"][0])
    with pytest.raises(rp.OutputError, match=f"cannot write {stream}: No space left on device.*--resume"):
        s.write_item(report["items"][1])
    s.close()  # no second error from the data still buffered
    monkeypatch.undo()
    assert [i["path"] for i in rp.read_report(stream)["items"]][0] == report["items"][0]["path"]
