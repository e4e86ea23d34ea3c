"""Issue 30, items 1-4: no output overwrites an input, non-UTF-8 names round-trip through every
report format, the ONNX cache entry is bound to its file, and planted symlinks are never written
through. Real tiny inputs (copies of the shared media, generated ONNX graphs), no mocks of the
code under test."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfscan.core.errors import InputError
from dfscan.scanner import report as rp
from tests.helpers import IMAGES, TEST_SIZE, VIDEOS

BAD = b"bad\xff\xfe.jpg"  # not UTF-8: os.fsdecode gives 'bad\udcff\udcfe.jpg'


def dfscan(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1", **(env or {})}
    argv = [a if isinstance(a, bytes) else str(a) for a in args]
    return subprocess.run([sys.executable, "-c", "from dfscan.scanner.cli import app; app()", *argv],
                          capture_output=True, env=full_env, timeout=timeout)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    err = r.stderr.decode("utf-8", "replace")
    lines = [line for line in err.splitlines() if line.strip()]
    assert r.returncode == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def inputs(tmp_path) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(IMAGES / "single_face.jpg", folder / "a.jpg")
    shutil.copy(IMAGES / "45-m7-di-ph.jpg", folder / "sub" / "b.jpg")
    shutil.copy(VIDEOS / "no_face.mp4", folder / "v.mp4")
    return folder


# ---------------------------------------------------------------- 1. outputs never overwrite inputs

@pytest.mark.parametrize("scanned, report", [
    ("a.jpg", "a.jpg"),  # an image given as input
    ("v.mp4", "v.mp4"),  # a video given as input
    (".", "sub/b.jpg"),  # a file found inside a scanned folder
    ("a.jpg", "link.jpg"),  # another name (a hard link) of an input
], ids=["image", "video", "inside-folder", "hard-link"])
def test_scan_refuses_a_report_that_is_an_input(inputs, tiny_checkpoint, scanned, report):
    if report == "link.jpg":
        os.link(inputs / "a.jpg", inputs / "link.jpg")
    before = snapshot(inputs)
    r = dfscan("scan", inputs / scanned, "--report", inputs / report, "--weights", tiny_checkpoint,
               "--backend", "torch", "--workers", "1", "--frames", "2")
    line = one_error_line(r)
    assert "input" in line and report.split("/")[-1] in line
    assert snapshot(inputs) == before  # nothing written: no report, no stream, no lock


def test_output_check_covers_side_files_and_folders(inputs):
    """The one guard: any output file that is an input, or an output folder holding one, is refused."""
    from dfscan.scanner.outputs import check_outputs_apart

    files = [inputs / "a.jpg", inputs / "sub" / "b.jpg"]
    check_outputs_apart([inputs / "out.json", inputs / "out.stream.jsonl"], files)  # beside inputs is fine
    with pytest.raises(InputError, match="is an input"):
        check_outputs_apart([inputs / "out.json", inputs / "sub" / "b.jpg"], files)
    with pytest.raises(InputError, match="holds input"):
        check_outputs_apart([], files, folders=[inputs / "sub"])
    check_outputs_apart([], files, folders=[inputs / "crops"])


runner = CliRunner()


@pytest.mark.parametrize("case", ["manifest-is-video", "manifest-is-labels", "out-holds-inputs"])
def test_extract_faces_refuses_outputs_over_inputs(inputs, case):
    from dfscan.scanner.cli import app

    (inputs / "labels.csv").write_text("path,label\na.jpg,real\nv.mp4,fake\n")
    args = ["extract-faces", str(inputs / "v.mp4"), str(inputs / "a.jpg"), "--frames", "2", "--workers", "1"]
    out, manifest = inputs.parent / "crops", inputs.parent / "m.csv"
    if case == "manifest-is-video":
        manifest = inputs / "v.mp4"
    elif case == "manifest-is-labels":
        args += ["--labels", str(inputs / "labels.csv")]
        manifest = inputs / "labels.csv"
    else:
        out = inputs
    before = snapshot(inputs)
    r = runner.invoke(app, [*args, "--out", str(out), "--manifest", str(manifest)], terminal_width=400)
    assert r.exit_code == 2, r.output
    assert "input" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert snapshot(inputs) == before
    assert not (inputs.parent / "crops").exists() and not (inputs.parent / "m.csv").exists()


@pytest.mark.parametrize("argv", [
    ["fairness-check", "{labels}", "--json", "{labels}"],
    ["fairness-check", "{labels}", "--scores", "{scores}", "--markdown", "{scores}"],
    ["audit", "{labels}", "--markdown", "{labels}"],
], ids=["fairness-json-over-labels", "fairness-markdown-over-scores", "audit-markdown-over-labels"])
def test_fairness_and_audit_refuse_outputs_over_inputs(inputs, argv):
    from dfscan.scanner.cli import app

    labels, scores = inputs / "labels.csv", inputs / "scores.json"
    labels.write_text("path,label,gender\na.jpg,real,f\nv.mp4,fake,m\n")
    scores.write_text("{}")
    before = snapshot(inputs)
    r = runner.invoke(app, [a.format(labels=labels, scores=scores) for a in argv], terminal_width=400)
    assert r.exit_code == 2 and "is an input" in r.output and "Traceback" not in r.output, r.output
    assert snapshot(inputs) == before


# ---------------------------------------------------------------- 2. non-UTF-8 file names

def test_non_utf8_names_scan_resume_and_round_trip(tmp_path, tiny_checkpoint, shared_cache):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(IMAGES / "single_face.jpg", folder / "good.jpg")
    raw = os.fsencode(folder)
    shutil.copy(IMAGES / "single_face.jpg", raw + b"/" + BAD)
    open(raw + b"/empty\xff.png", "wb").close()  # an error item: its name is printed in the summary
    open(raw + b"/notes\xfe.txt", "wb").close()  # a skipped entry in the header
    out = tmp_path / "out.json"
    common = ["--report", out, "--weights", tiny_checkpoint, "--backend", "torch", "--workers", "1", "--frames", "2"]
    r = dfscan("scan", folder, *common, env={"DFSCAN_CACHE": str(shared_cache)})
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 3, err  # the empty file is an error item; the scan finished
    assert "Traceback" not in err and "UnicodeEncodeError" not in err

    text = out.read_bytes().decode("utf-8")  # the report itself is valid UTF-8
    report = json.loads(text)
    rp.validate_report(report)
    names = {os.path.basename(os.fsencode(i["path"])) for i in report["items"]}
    assert names == {b"good.jpg", BAD, b"empty\xff.png"}
    assert {os.path.basename(os.fsencode(s["path"])) for s in report["skipped"]} == {b"notes\xfe.txt"}
    bad_item = next(i for i in report["items"] if os.fsencode(i["path"]).endswith(BAD))
    assert bad_item["status"] == "ok" and os.path.isfile(bad_item["path"])
    stream = rp.read_report(rp.stream_path_for(out))
    assert sorted(i["path"] for i in stream["items"]) == sorted(i["path"] for i in report["items"])

    # every format reads back to the same paths
    jsonl = rp.to_jsonl(report)
    jsonl.encode("utf-8")
    assert [json.loads(line)["path"] for line in jsonl.splitlines()[1:-1]] == [i["path"] for i in report["items"]]
    data = rp.csv_bytes(report)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8", "surrogateescape"))))
    assert {os.path.basename(os.fsencode(row["path"])) for row in rows} == names
    csv_out = tmp_path / "out.csv"
    rp.write_report(report, csv_out)
    assert csv_out.read_bytes() == data

    again = dfscan("scan", folder, *common, "--resume", env={"DFSCAN_CACHE": str(shared_cache)})
    err = again.stderr.decode("utf-8", "replace")
    assert again.returncode == 3 and "Traceback" not in err, err
    resumed = json.loads(out.read_text(encoding="utf-8"))
    assert resumed["summary"]["resumed"] == 3  # every file unchanged (empty_file is not a transient error)
    assert sorted(i["path"] for i in resumed["items"]) == sorted(i["path"] for i in report["items"])


def test_json_lines_escape_only_lone_surrogates():
    name = os.fsdecode(b"/x/caf\xc3\xa9-" + BAD)
    line = rp.dumps_line({"path": name})
    line.encode("utf-8")
    assert "café" in line and "\\udcff" in line
    assert json.loads(line)["path"] == name


# ---------------------------------------------------------------- 3. the ONNX cache is bound to its file

def constant_onnx(path: Path, p_fake: float, size: int = TEST_SIZE) -> Path:
    """A valid dfscan-contract ONNX model scoring every crop `p_fake`."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("crops", TensorProto.FLOAT, ["batch", 3, size, size])
    y = helper.make_tensor_value_info("p_fake", TensorProto.FLOAT, ["batch"])
    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    const = helper.make_tensor("const", TensorProto.FLOAT, [], [p_fake])
    graph = helper.make_graph([
        helper.make_node("ReduceMean", ["crops", "axes"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["z", "const"], ["p_fake"]),
    ], "constant", [x], [y], initializer=[axes, zero, const])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_cached_onnx_replaced_by_another_valid_model_is_exported_again(tiny_checkpoint, tmp_path, monkeypatch):
    from dfscan.engines import export, onnx_cache
    from dfscan.engines.onnx_model import check_onnx

    monkeypatch.setenv("DFSCAN_CACHE", str(tmp_path / "cache"))
    calls = []

    def export_onnx(weights, out, opset=18, *, fp16=False):  # the real export's output, minus a torch export
        calls.append(Path(out))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        return constant_onnx(Path(out), 0.25)

    monkeypatch.setattr(export, "export_onnx", export_onnx)
    path = onnx_cache.cached_onnx(tiny_checkpoint)
    good = path.read_bytes()
    assert onnx_cache.cached_onnx(tiny_checkpoint) == path and len(calls) == 1  # bound entry: reused

    constant_onnx(tmp_path / "other.onnx", 0.99)
    check_onnx(tmp_path / "other.onnx", input_size=TEST_SIZE)  # the swap is a valid model
    shutil.copy(tmp_path / "other.onnx", path)
    assert onnx_cache.cached_onnx(tiny_checkpoint) == path
    assert len(calls) == 2 and path.read_bytes() == good  # not used: exported again

    # an entry without its record (an older dfscan's, or copied in by hand) is not trusted either
    for record in path.parent.glob("*.json"):
        record.unlink()
    shutil.copy(tmp_path / "other.onnx", path)
    assert onnx_cache.cached_onnx(tiny_checkpoint) == path and len(calls) == 3 and path.read_bytes() == good


# ---------------------------------------------------------------- 4. planted symlinks

@pytest.fixture()
def victim(tmp_path) -> Path:
    path = tmp_path / "elsewhere" / "precious.txt"
    path.parent.mkdir()
    path.write_text("do not touch\n")
    return path


def test_report_stream_refuses_a_planted_link(tmp_path, victim):
    out = tmp_path / "out.json"
    stream = rp.stream_path_for(out)
    stream.symlink_to(victim)
    for append in (False, True):
        with pytest.raises(rp.OutputError, match="symbolic link"):
            rp.ReportStream(stream, {"schema": rp.SCHEMA_ID}, append=append)
    assert victim.read_text() == "do not touch\n" and stream.is_symlink()


def test_report_lock_refuses_a_planted_link(tmp_path, victim):
    out = tmp_path / "out.json"
    rp.lock_path_for(out).symlink_to(victim)
    with pytest.raises(rp.OutputError, match="symbolic link"):
        rp.ReportLock(out).acquire()
    assert victim.read_text() == "do not touch\n"


def test_report_replaces_a_planted_link_never_its_target(tmp_path, victim):
    out = tmp_path / "out.json"
    out.symlink_to(victim)
    rp.write_report(rp.build_report(rp.make_header(model={}, backend={}, settings={}), [], {}), out)
    assert victim.read_text() == "do not touch\n"
    assert not out.is_symlink() and json.loads(out.read_text())["schema"] == rp.SCHEMA_ID


def test_scan_with_a_planted_stream_link_exits_2(inputs, tmp_path, tiny_checkpoint, victim, shared_cache):
    out = tmp_path / "out.json"
    rp.stream_path_for(out).symlink_to(victim)
    r = dfscan("scan", inputs / "a.jpg", "--report", out, "--weights", tiny_checkpoint, "--backend", "torch",
               "--workers", "1", "--frames", "2", env={"DFSCAN_CACHE": str(shared_cache)})
    assert "symbolic link" in one_error_line(r)
    assert victim.read_text() == "do not touch\n" and not out.exists()


@pytest.mark.parametrize("planted", ["manifest", "state", "state-temp"])
def test_extract_faces_never_writes_through_a_planted_link(inputs, tmp_path, victim, planted):
    from dfscan.scanner.extract import extract_faces

    manifest = tmp_path / "m.csv"
    link = {"manifest": manifest, "state": tmp_path / "m.csv.state.json",
            "state-temp": tmp_path / f".m.csv.state.json.{os.getpid()}.tmp"}[planted]
    link.symlink_to(victim)
    try:
        extract_faces([inputs / "a.jpg"], tmp_path / "crops", manifest, frames=2, workers=1)
    except InputError as exc:
        assert "symbolic link" in str(exc)
    assert victim.read_text() == "do not touch\n"
