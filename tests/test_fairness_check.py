"""`dfscan fairness-check`: labelled sets, score matching, hand-computed gaps, gates, outputs.

Most tests score through `--scores`: a dfscan.report/1 written here with the report module and
checked against its schema, over real (generated) image files. The set below is built so every
gap can be worked out by hand; one test scores real images through the pipeline.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
from html import escape as escape_html
from pathlib import Path
from xml.etree import ElementTree as ET

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from dfscan.core.errors import InputError
from dfscan.scanner import report as rp
from dfscan.scanner.cli import app
from dfscan.scanner.fairness import CheckOptions, read_labels, run_check

IMAGES = Path(__file__).parent / "data" / "media" / "images"
runner = CliRunner()
FAIRNESS_KEYS = {"F_FPR", "F_MEO", "F_DP", "F_OAE", "demographic_parity_difference",
                 "equalized_odds_difference"}


# ------------------------------------------------------------------ building labelled sets

def _write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(str(path), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))


def _item(path: Path, score: float | None, threshold: float = 0.5, status: str = "ok") -> dict:
    if status != "ok":
        return {"path": str(path), "kind": "crop", "status": status, "error": None, "score": None,
                "verdict": None, "media": None, "subjects": []}
    verdict = "fake" if score >= threshold else "real"
    frame = {"index": 0, "t": 0.0, "box": [0, 0, 16, 16], "score": score, "face_score": None}
    return {"path": str(path), "kind": "crop", "status": "ok", "error": None, "score": score,
            "verdict": verdict,
            "media": {"width": 16, "height": 16, "fps": None, "duration": None, "frames_sampled": 1,
                      "codec": "png", "rotation": 0},
            "subjects": [{"id": 0, "score": score, "verdict": verdict, "frames": [frame]}]}


def write_report(path: Path, items: list[dict], threshold: float = 0.5) -> Path:
    """A real dfscan.report/1 (validated against the shipped schema)."""
    header = rp.make_header(
        model={"name": "tiny.safetensors", "sha256": "0" * 64, "backbone": "efficientnet_lite0",
               "threshold": threshold},
        backend={"name": "torch", "device": "cpu", "precision": "fp32"},
        settings={"crops": True, "threshold": threshold})
    report = rp.build_report(header, items, rp.summarize(items, seconds=1.0))
    rp.validate_report(report)
    rp.write_report(report, path)
    return path


# Each intersectional group: 20 real + 20 fake. Fakes score 0.9 everywhere (TPR 1). Real faces
# score 0.1, except 10 of the 20 in female|black, which score 0.7: at threshold 0.5 that group's
# FPR is 0.5 and every other group's is 0.
GROUPS = [("female", "asian"), ("female", "black"), ("male", "asian"), ("male", "black")]


def scores_for(gender: str, race: str, n_real: int = 20, n_fake: int = 20) -> list[tuple[int, float]]:
    reals = [0.7 if (gender, race) == ("female", "black") and i < n_real // 2 else 0.1
             for i in range(n_real)]
    return [(0, s) for s in reals] + [(1, 0.9) for _ in range(n_fake)]


def make_set(folder: Path, sizes: dict[tuple[str, str], int] | None = None, *,
             no_face: int = 0, relative_report_paths: bool = False) -> tuple[Path, Path]:
    """labels.csv + report.json over generated PNGs; `no_face` male|asian reals get no score."""
    rows = ["path,label,gender,race"]
    items = []
    i = 0
    for gender, race in GROUPS:
        n = (sizes or {}).get((gender, race), 40)
        for label, score in scores_for(gender, race, n // 2, n // 2):
            rel = f"img/{gender}_{race}/{i:03d}.png"
            _write_image(folder / rel, i)
            rows.append(f"{rel},{'fake' if label else 'real'},{gender},{race}")
            hidden = (gender, race) == ("male", "asian") and label == 0 and no_face > 0
            if hidden:
                no_face -= 1
            target = rel if relative_report_paths else folder / rel
            items.append(_item(target, None if hidden else score, status="no_face" if hidden else "ok"))
            i += 1
    csv_path = folder / "labels.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path, write_report(folder / "report.json", items)


@pytest.fixture
def labelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray pyproject.toml gates from the repository
    return make_set(tmp_path)


def invoke(*args: str):
    return runner.invoke(app, ["fairness-check", *map(str, args)])


# ------------------------------------------------------------------ metrics and gates

def test_gaps_match_hand_computed_values(labelled, tmp_path):
    csv_path, report = labelled
    out = tmp_path / "out.json"
    result = invoke(csv_path, "--scores", report, "--json", out, "--bootstrap", 0)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert set(doc) >= {"overall", "by_group", "fairness", "gates", "passed"}
    assert doc["overall"]["n"] == 160 and doc["overall"]["fpr"] == pytest.approx(10 / 80)
    inter = doc["fairness"]["intersection"]
    # FPR_g = (0, .5, 0, 0), FPR_all = .125: F_FPR = 3 * 12.5 + 37.5
    assert inter["F_FPR"] == pytest.approx(75.0)
    assert inter["F_MEO"] == pytest.approx(50.0)  # FPR / TNR spread .5
    assert inter["F_DP"] == pytest.approx(25.0)   # positive rate .75 vs .5
    assert inter["F_OAE"] == pytest.approx(25.0)  # accuracy .75 vs 1
    assert inter["demographic_parity_difference"] == pytest.approx(0.25)
    assert inter["equalized_odds_difference"] == pytest.approx(0.5)
    for attr in ("gender", "race"):  # FPR .25 vs 0 around .125
        assert doc["fairness"][attr]["F_FPR"] == pytest.approx(25.0)
        assert doc["fairness"][attr]["F_OAE"] == pytest.approx(12.5)
        assert set(doc["fairness"][attr]) == FAIRNESS_KEYS
    fb = doc["by_group"]["intersection"]["female|black"]
    assert (fb["n"], fb["n_real"], fb["n_fake"]) == (40, 20, 20)
    assert fb["fpr"] == 0.5 and fb["tpr"] == 1.0 and fb["acc"] == 0.75 and fb["auc"] == 1.0
    assert set(doc["by_group"]) == {"intersection", "gender", "race"}
    assert set(doc["by_group"]["gender"]) == {"female", "male"}
    assert doc["threshold"] == 0.5 and doc["threshold_source"] == "model"
    assert doc["intervals"] == {} and doc["passed"] is True


@pytest.mark.parametrize("limit, code", [(80, 0), (74.9, 1)])
def test_ffpr_gate_exit_code(labelled, limit, code):
    csv_path, report = labelled
    result = invoke(csv_path, "--scores", report, "--max-ffpr", limit, "--bootstrap", 0)
    assert result.exit_code == code, result.output
    assert "Gates" in result.stdout and "max-ffpr" in result.stdout
    assert ("FAILED" in result.stdout) == bool(code)


@pytest.mark.parametrize("option, ok, bad", [
    ("--max-fmeo", 50, 49), ("--max-fdp", 25, 24), ("--max-foae", 25, 24)])
def test_each_gap_gate(labelled, option, ok, bad):
    csv_path, report = labelled
    assert invoke(csv_path, "--scores", report, option, ok, "--bootstrap", 0).exit_code == 0
    assert invoke(csv_path, "--scores", report, option, bad, "--bootstrap", 0).exit_code == 1


def test_min_auc_gate_checks_the_worst_group(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_path, _ = make_set(tmp_path)
    labels = read_labels(csv_path)
    # Reverse the scores of male|asian only: that group's AUC is 0, the others stay 1.
    items = []
    for path, label, group in zip(labels.paths, labels.labels, labels.intersection):
        score = (0.2 if label else 0.8) if group == "male|asian" else (0.9 if label else 0.1)
        items.append(_item(path, score))
    report = write_report(tmp_path / "flipped.json", items)
    out = tmp_path / "o.json"
    result = invoke(csv_path, "--scores", report, "--min-auc", 0.5, "--json", out, "--bootstrap", 0)
    assert result.exit_code == 1
    gates = {(g["gate"], g["scope"]): g for g in json.loads(out.read_text())["gates"]}
    assert gates[("min-auc", "overall")]["status"] == "pass"
    worst = gates[("min-auc", "intersection")]
    assert worst["status"] == "fail" and worst["value"] == 0.0 and "male|asian" in worst["note"]


def test_absolute_rate_gates_fail_when_every_group_is_equally_wrong(tmp_path, monkeypatch):
    """FPR 1.00 in every group: every gap is 0 and passes, the absolute gates do not."""
    monkeypatch.chdir(tmp_path)
    csv_path, _ = make_set(tmp_path)
    labels = read_labels(csv_path)
    items = [_item(path, 0.9) for path in labels.paths]  # everything called fake
    report = write_report(tmp_path / "allfake.json", items)
    out = tmp_path / "o.json"
    gaps = ["--max-ffpr", 1, "--max-foae", 1, "--bootstrap", 0]
    assert invoke(csv_path, "--scores", report, *gaps).exit_code == 0
    result = invoke(csv_path, "--scores", report, *gaps, "--max-fpr", 0.1, "--min-tpr", 0.9, "--json", out)
    assert result.exit_code == 1 and "max-fpr" in result.stdout
    gates = {(g["gate"], g["scope"]): g for g in json.loads(out.read_text())["gates"]}
    assert gates[("max-fpr", "overall")]["status"] == "fail" and gates[("max-fpr", "overall")]["value"] == 1.0
    assert gates[("max-fpr", "intersection")]["status"] == "fail"
    assert gates[("min-tpr", "overall")]["status"] == "pass" and gates[("min-tpr", "intersection")]["status"] == "pass"
    assert invoke(csv_path, "--scores", report, "--max-fpr", 1.5).exit_code == 2  # a fraction, not a percent


def test_threshold_option_overrides_the_model(labelled, tmp_path):
    csv_path, report = labelled
    out = tmp_path / "o.json"
    # At 0.75 the female|black reals at 0.7 are no longer flagged: every FPR is 0.
    assert invoke(csv_path, "--scores", report, "--threshold", 0.75, "--max-ffpr", 0,
                  "--json", out, "--bootstrap", 0).exit_code == 0
    doc = json.loads(out.read_text())
    assert doc["threshold"] == 0.75 and doc["threshold_source"] == "--threshold"
    assert doc["fairness"]["intersection"]["F_FPR"] == 0.0


def test_bootstrap_intervals_are_seeded(labelled, tmp_path):
    csv_path, report = labelled
    docs = []
    for seed in (3, 3, 4):
        out = tmp_path / f"o{len(docs)}.json"
        assert invoke(csv_path, "--scores", report, "--bootstrap", 50, "--seed", seed,
                      "--json", out).exit_code == 0
        docs.append(json.loads(out.read_text()))
    a, b, c = (d["intervals"] for d in docs)
    assert a == b and a != c
    assert set(a) == {"intersection", "gender", "race"}
    ci = a["intersection"]["F_FPR"]
    assert ci["low"] <= 75.0 <= ci["high"] and ci["low"] < ci["high"]
    assert docs[0]["settings"]["bootstrap"] == 50


# ------------------------------------------------------------------ small groups, exclusions

def test_small_group_is_insufficient_and_fails_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_path, report = make_set(tmp_path, {("female", "black"): 10})
    out = tmp_path / "o.json"
    result = invoke(csv_path, "--scores", report, "--max-ffpr", 80, "--json", out, "--bootstrap", 0)
    assert result.exit_code == 1, result.output
    doc = json.loads(out.read_text())
    assert doc["by_group"]["intersection"]["female|black"]["sufficient"] is False
    assert doc["groups"]["intersection"]["insufficient"] == ["female|black"]
    # The gaps leave the small group out: the three others all have FPR 0.
    assert doc["fairness"]["intersection"]["F_FPR"] == 0.0
    gate = next(g for g in doc["gates"] if g["gate"] == "min-group" and g["scope"] == "intersection")
    assert gate["status"] == "fail" and gate["value"] == 10 and "female|black (n=10)" in gate["note"]
    assert "insufficient" in result.stdout

    allowed = invoke(csv_path, "--scores", report, "--max-ffpr", 80, "--json", out,
                     "--bootstrap", 0, "--allow-small-groups")
    assert allowed.exit_code == 0, allowed.output
    gate = next(g for g in json.loads(out.read_text())["gates"]
                if g["gate"] == "min-group" and g["scope"] == "intersection")
    assert gate["status"] == "warn"


def test_gap_gate_is_never_passed_when_no_two_groups_are_big_enough(labelled, tmp_path):
    """Issue 30 item 13: --allow-small-groups made the uncomputed gate a `warn`, and the check
    passed (exit 0) having judged no group at all."""
    csv_path, report = labelled
    out = tmp_path / "o.json"
    # Intersectional groups hold 40 items, attribute groups 80.
    result = invoke(csv_path, "--scores", report, "--min-group", 50, "--max-ffpr", 1000,
                    "--json", out, "--bootstrap", 0, "--allow-small-groups")
    assert result.exit_code == 1, result.output
    doc = json.loads(out.read_text())
    assert all(v is None for v in doc["fairness"]["intersection"].values())
    gate = next(g for g in doc["gates"] if g["gate"] == "max-ffpr" and g["scope"] == "intersection")
    assert gate["value"] is None and gate["status"] == "fail" and "not computable" in gate["note"]
    assert "never passes a gate that measured nothing" in gate["note"] and doc["passed"] is False
    small = next(g for g in doc["gates"] if g["gate"] == "min-group" and g["scope"] == "intersection")
    assert small["status"] == "warn"  # the small groups themselves are still only a warning
    assert invoke(csv_path, "--scores", report, "--min-group", 50, "--max-ffpr", 1000,
                  "--bootstrap", 0).exit_code == 1


def test_unscored_items_are_reported_as_excluded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_path, report = make_set(tmp_path, no_face=3)
    out = tmp_path / "o.json"
    result = invoke(csv_path, "--scores", report, "--json", out, "--bootstrap", 0)
    assert result.exit_code == 0
    doc = json.loads(out.read_text())
    assert doc["excluded"]["count"] == 3 and doc["excluded"]["by_status"] == {"no_face": 3}
    assert doc["overall"]["n"] == 157 and doc["by_group"]["intersection"]["male|asian"]["n"] == 37
    assert "3 of 160 labelled items excluded" in result.stdout


def test_report_paths_relative_to_the_report_are_matched(tmp_path, monkeypatch):
    csv_path, report = make_set(tmp_path / "set", relative_report_paths=True)
    monkeypatch.chdir(tmp_path)  # neither cwd nor the CSV: only the report's folder resolves them
    result = invoke(csv_path, "--scores", report, "--bootstrap", 0)
    assert result.exit_code == 0, result.output


def test_unmatched_rows_are_an_error_with_a_count(labelled, tmp_path):
    csv_path, report = labelled
    doc = json.loads(report.read_text())
    doc["items"] = doc["items"][5:]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(doc))
    result = invoke(csv_path, "--scores", partial)
    assert result.exit_code == 2
    assert "5 of 160 labelled rows have no item in partial.json" in result.stderr
    assert "img/female_asian/000.png" in result.stderr


# ------------------------------------------------------------------ config files

def test_pyproject_gates_and_options_win(labelled, tmp_path):
    csv_path, report = labelled
    (tmp_path / "pyproject.toml").write_text(
        "[project]\nname = 'x'\n\n[tool.dfscan.fairness]\nmax-ffpr = 50\nbootstrap = 0\n")
    out = tmp_path / "o.json"
    assert invoke(csv_path, "--scores", report, "--json", out).exit_code == 1
    assert any(g["gate"] == "max-ffpr" and g["limit"] == 50 for g in json.loads(out.read_text())["gates"])
    assert invoke(csv_path, "--scores", report, "--max-ffpr", 80).exit_code == 0


def test_config_file_table_forms(labelled, tmp_path):
    csv_path, report = labelled
    cfg = tmp_path / "gates.toml"
    cfg.write_text("[fairness]\nmax_foae = 20.0\nmin_group = 30\nbootstrap = 0\n")
    assert invoke(csv_path, "--scores", report, "--config", cfg).exit_code == 1
    assert invoke(csv_path, "--scores", report, "--config", cfg, "--max-foae", 30).exit_code == 0
    cfg.write_text("[tool.dfscan.fairness]\nmax-foae = 30\nattrs = 'gender'\n")
    out = tmp_path / "o.json"
    assert invoke(csv_path, "--scores", report, "--config", cfg, "--json", out).exit_code == 0
    assert set(json.loads(out.read_text())["fairness"]) == {"intersection", "gender"}
    cfg.write_text("max-fnr = 3\n")
    bad = invoke(csv_path, "--scores", report, "--config", cfg)
    assert bad.exit_code == 2 and "unknown setting 'max-fnr'" in bad.stderr


# ------------------------------------------------------------------ outputs

def _is_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    image = cv2.imread(str(path))
    assert image is not None and image.shape[:2] == (height, width)
    assert image.std() > 10  # something was drawn
    return width, height


def test_markdown_junit_and_plots(labelled, tmp_path):
    csv_path, report = labelled
    md, xml, plots = tmp_path / "summary.md", tmp_path / "gates.xml", tmp_path / "plots"
    result = invoke(csv_path, "--scores", report, "--max-ffpr", 50, "--min-auc", 0.9,
                    "--markdown", md, "--junit", xml, "--plots", plots, "--bootstrap", 20)
    assert result.exit_code == 1

    text = md.read_text()
    assert text.startswith("## dfscan fairness-check") and "FAILED" in text
    assert "| max-ffpr | intersection | F_FPR | 75.000 | <= 50 | ❌ fail |" in text
    assert "female\\|black" in text  # the group separator is escaped in tables

    suite = ET.parse(xml).getroot().find("testsuite")
    cases = suite.findall("testcase")
    # min-auc overall + per scope (intersection, gender, race): min-group, max-ffpr, min-auc
    assert len(cases) == 1 + 3 * 3 == int(suite.get("tests"))
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures")) == len(failed) == 1
    assert failed[0].startswith("max-ffpr F_FPR <= 50") and "(intersection)" in failed[0]

    names = sorted(p.name for p in plots.iterdir())
    assert names == sorted(f"{kind}_{scope}.png" for kind in ("roc", "rates")
                           for scope in ("intersection", "gender", "race"))
    for p in plots.iterdir():
        width, height = _is_png(p)
        assert width >= 600 and height >= 400


def test_quiet_prints_only_the_verdict(labelled):
    csv_path, report = labelled
    result = invoke(csv_path, "--scores", report, "--max-ffpr", 50, "--bootstrap", 0, "-q")
    assert result.exit_code == 1
    assert result.stdout.strip().splitlines() == ["FAILED: 1 of 6 gates"]


def test_help_has_an_example():
    result = runner.invoke(app, ["fairness-check", "--help"])
    assert result.exit_code == 0 and "dfscan fairness-check labels.csv --scores" in result.stdout


# ------------------------------------------------------------------ bad labelled sets

BAD_SETS = {
    "missing column": ("path,gender,race\na.png,male,asian\n", "line 1 (header): missing column(s) 'label'"),
    "bad label": ("path,label,gender\na.png,real,male\nb.png,maybe,female\n",
                  "line 3: label 'maybe' is neither real/fake nor 0/1"),
    "missing file": ("path,label,gender\na.png,0,male\nnope.png,1,female\n",
                     "line 3: file not found: nope.png"),
    "duplicate": ("path,label,gender\na.png,0,male\nb.png,1,female\n./a.png,1,female\n",
                  "line 4: duplicate path './a.png' (first on line 2)"),
    "single group": ("path,label,gender,race\na.png,0,male,asian\nb.png,1,male,black\n",
                     "column 'gender': a single group ('male')"),
    "short row": ("path,label,gender\na.png,0\n", "line 2: expected 3 fields, found 2"),
    "empty attribute": ("path,label,gender\na.png,0,\n", "line 2: empty value in column 'gender'"),
    "no attributes": ("path,label\na.png,0\n", "no attribute columns"),
}


@pytest.mark.parametrize("case", sorted(BAD_SETS))
def test_bad_labelled_set_is_one_line_and_exit_2(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, message = BAD_SETS[case]
    for name in ("a.png", "b.png"):
        _write_image(tmp_path / name, 0)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(text)
    report = write_report(tmp_path / "r.json", [_item(tmp_path / "a.png", 0.1), _item(tmp_path / "b.png", 0.9)])
    result = invoke(csv_path, "--scores", report)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "labels.csv" in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_unknown_attribute_and_not_a_report(labelled, tmp_path):
    csv_path, report = labelled
    bad = invoke(csv_path, "--scores", report, "--attrs", "gender,age")
    assert bad.exit_code == 2 and "unknown attribute(s) 'age'" in bad.stderr and "gender, race" in bad.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"items": []}))
    bad = invoke(csv_path, "--scores", other)
    assert bad.exit_code == 2 and "not a dfscan.report/1 report" in bad.stderr


# ------------------------------------------------------------------ the official PG-FDD CSV

def test_official_pgfdd_csv(tmp_path):
    header = "img_path,label,ismale,isasian,iswhite,isblack,intersec_label,spe_label"
    # ff++ indices: 0 male|asian, 1 male|white, 3 male|others, 5 nonmale|white
    rows = [("m_a", 0, 1, 1, 0, 0, 0), ("m_w", 1, 1, 0, 1, 0, 1), ("m_o", 1, 1, 0, 0, 0, 3),
            ("f_w", 0, 0, 0, 1, 0, 5), ("f_w2", 1, 0, 0, 1, 0, 5)]
    lines = [header]
    for i, (name, label, male, asian, white, black, inter) in enumerate(rows):
        _write_image(tmp_path / "faces" / f"{name}.png", i)
        lines.append(f"faces/{name}.png,{label},{male},{asian},{white},{black},{inter},{label * 2}")
    (tmp_path / "ff.csv").write_text("\n".join(lines) + "\n")
    labels = read_labels(tmp_path / "ff.csv")
    assert labels.format == "pgfdd"
    assert labels.labels.tolist() == [0, 1, 1, 0, 1]
    assert labels.attributes["gender"] == ["male", "male", "male", "female", "female"]
    assert labels.attributes["race"] == ["asian", "white", "other", "white", "white"]
    assert labels.intersection == ["male|asian", "male|white", "male|other", "female|white", "female|white"]
    assert labels.paths[0] == (tmp_path / "faces" / "m_a.png")
    # intersec_label is the grouping: an index whose rows disagree keeps its number.
    lines[4] = lines[4].replace(",0,1,0,5,", ",0,1,0,1,")  # f_w2 now says index 1 (male|white)
    (tmp_path / "ff.csv").write_text("\n".join(lines) + "\n")
    assert read_labels(tmp_path / "ff.csv").intersection[1] == "intersec_label=1"
    with pytest.raises(InputError, match="line 2: more than one of isasian"):
        (tmp_path / "bad.csv").write_text(f"{header}\nfaces/m_a.png,0,1,1,1,0,0,0\n")
        read_labels(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="line 2 column 'ismale': expected 0 or 1"):
        (tmp_path / "bad.csv").write_text(f"{header}\nfaces/m_a.png,0,2,1,0,0,0,0\n")
        read_labels(tmp_path / "bad.csv")


def test_pgfdd_csv_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_path, _ = make_set(tmp_path)
    labels = read_labels(csv_path)
    lines = ["img_path,label,ismale,isasian,iswhite,isblack,intersec_label"]
    index = {"male|asian": 0, "male|black": 2, "female|asian": 4, "female|black": 6}
    for rel, label, g, r, inter in zip(labels.written, labels.labels, labels.attributes["gender"],
                                       labels.attributes["race"], labels.intersection):
        lines.append(f"{rel},{label},{int(g == 'male')},{int(r == 'asian')},0,{int(r == 'black')},{index[inter]}")
    official = tmp_path / "official.csv"
    official.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.json"
    result = invoke(official, "--scores", tmp_path / "report.json", "--json", out, "--bootstrap", 0)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["labels"]["format"] == "pgfdd"
    assert doc["fairness"]["intersection"]["F_FPR"] == pytest.approx(75.0)


# ------------------------------------------------------------------ through the scan pipeline

@pytest.mark.slow
def test_end_to_end_through_the_pipeline(tmp_path, monkeypatch, tiny_checkpoint):
    """Real images scored as crops by the tiny checkpoint: the check's numbers are the scan's."""
    from dfscan.core.metrics import binary_metrics
    from dfscan.scanner.pipeline import ScanOptions, scan

    monkeypatch.chdir(tmp_path)
    names = ["single_face.jpg", "multi_face.jpg", "astronaut.png", "BWPictureHuman.jpg",
             "0-f1-su-ph.jpg", "45-m7-di-ph.jpg"]
    rows = ["path,label,gender"]
    for i, name in enumerate(names):
        shutil.copy(IMAGES / name, tmp_path / name)
        rows.append(f"{name},{'fake' if i % 2 else 'real'},{'female' if i < 3 else 'male'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "o.json"
    result = invoke("labels.csv", "--crops", "--weights", tiny_checkpoint, "--backend", "torch",
                    "--workers", 1, "--min-group", 1, "--bootstrap", 0, "--json", out,
                    "--markdown", tmp_path / "s.md")
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["scores"]["source"] == "the scan" and doc["excluded"]["count"] == 0
    assert doc["threshold"] == 0.5 and doc["scores"]["model"]["name"] == tiny_checkpoint.name

    report = scan([tmp_path / n for n in names],
                  ScanOptions(crops=True, weights=tiny_checkpoint, backend="torch", workers=1))
    by_name = {Path(i["path"]).name: i["score"] for i in report["items"]}
    y = [i % 2 for i in range(len(names))]
    expected = binary_metrics(y, [by_name[n] for n in names], 0.5)
    for key in ("auc", "acc", "tpr", "fpr", "ap"):
        assert doc["overall"][key] == pytest.approx(expected[key])
    # The same figures come back from the scan's report through --scores.
    rp.write_report(report, tmp_path / "scan.json")
    again = tmp_path / "again.json"
    assert invoke("labels.csv", "--scores", tmp_path / "scan.json", "--min-group", 1,
                  "--bootstrap", 0, "--json", again).exit_code == 0
    assert json.loads(again.read_text())["fairness"] == doc["fairness"]


# ------------------------------------------------------------------ hostile labelled sets (issue 11, item 7)

def _rewrite_csv(csv_path: Path, edit) -> None:
    """Rewrite labels.csv row by row: `edit(row) -> row` on dicts; the edited keys are the header."""
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = list(reader.fieldnames or []), [edit(dict(r)) for r in reader]
    header = list(rows[0]) if rows else header
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def _no_scan(monkeypatch) -> list:
    """Replace the scan pipeline by a recorder: a test then shows nothing was scanned."""
    import dfscan.scanner.pipeline

    calls: list = []
    monkeypatch.setattr(dfscan.scanner.pipeline, "scan", lambda paths, *a, **k: calls.append(paths))
    return calls


def test_every_bad_path_is_reported_up_front_before_scanning(tmp_path, monkeypatch):
    """/etc/passwd, a missing file, a folder and a text file: one line naming them, nothing scanned."""
    monkeypatch.chdir(tmp_path)
    set_dir = tmp_path / "set"
    csv_path, _ = make_set(set_dir)
    (set_dir / "folder.png").mkdir()
    (set_dir / "notes.txt").write_text("not media\n")
    bad = {3: "/etc/passwd", 5: "nope.png", 8: "folder.png", 9: "notes.txt", 12: "nope2.png"}
    counter = iter(range(2, 10_000))

    def edit(row: dict) -> dict:
        line = next(counter)
        row["path"] = bad.get(line, row["path"])
        return row

    _rewrite_csv(csv_path, edit)
    calls = _no_scan(monkeypatch)
    result = invoke(csv_path, "--crops", "--backend", "torch", "--workers", 1)
    assert result.exit_code == 2, result.output
    assert calls == [], "media were scanned before the labelled set was validated"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    line = lines[0]
    assert "labels.csv: 5 of 160 rows have unusable paths" in line
    assert "line 3: not a video or image file (no extension): /etc/passwd" in line
    assert "line 5: file not found: nope.png" in line
    assert "line 8: not a file (a folder): folder.png" in line
    assert "notes.txt" not in line and "nope2.png" not in line  # first three, then a count
    assert "and 2 more" in line
    # The same check guards --scores: the paths must be the files the report scored.
    result = invoke(csv_path, "--scores", set_dir / "report.json")
    assert result.exit_code == 2 and "5 of 160 rows" in result.stderr


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_is_refused_up_front(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_path, report = make_set(tmp_path)
    locked = read_labels(csv_path).paths[6]
    locked.chmod(0)
    try:
        result = invoke(csv_path, "--scores", report)
    finally:
        locked.chmod(0o644)
    assert result.exit_code == 2 and "line 8: not readable" in result.stderr, result.output


def test_root_confines_every_resolved_path(tmp_path, monkeypatch):
    """`../`, absolute and symlinked paths leaving --root are refused; without --root they are read."""
    monkeypatch.chdir(tmp_path)
    set_dir = tmp_path / "set"
    csv_path, report = make_set(set_dir)
    outside = tmp_path / "outside"
    for name in ("up.png", "abs.png", "target.png"):
        _write_image(outside / name, 7)
    (set_dir / "img" / "link.png").symlink_to(outside / "target.png")
    (set_dir / "img" / "inner.png").symlink_to(set_dir / "img" / "female_asian" / "000.png")
    moved = {2: "../outside/up.png", 3: "img/inner.png", 4: str(outside / "abs.png"), 6: "img/link.png"}
    counter = iter(range(2, 10_000))
    items = json.loads(report.read_text())["items"]

    def edit(row: dict) -> dict:
        line = next(counter)
        if line in moved:
            row["path"] = moved[line]
            items[line - 2]["path"] = os.path.abspath(set_dir / moved[line])
        return row

    _rewrite_csv(csv_path, edit)
    report = write_report(tmp_path / "moved.json", [_item(i["path"], i["score"]) for i in items])

    assert invoke(csv_path, "--scores", report, "--bootstrap", 0).exit_code == 0  # default: no confinement
    result = invoke(csv_path, "--scores", report, "--bootstrap", 0, "--root", set_dir)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "3 of 160 rows" in line
    assert f"line 2: outside --root {set_dir}: ../outside/up.png" in line
    assert f"line 4: outside --root {set_dir}: {outside / 'abs.png'}" in line
    assert "line 6: outside --root" in line and "img/link.png" in line
    assert "inner.png" not in line  # a symlink that stays inside is fine
    assert invoke(csv_path, "--scores", report, "--bootstrap", 0, "--root", tmp_path).exit_code == 0
    missing = invoke(csv_path, "--scores", report, "--root", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "--root" in missing.stderr and "not a folder" in missing.stderr
    assert "--root" in runner.invoke(app, ["fairness-check", "--help"]).stdout


def test_single_class_group_is_insufficient_like_a_small_group(tmp_path, monkeypatch):
    """male|asian holds 40 reals and no fake: no AUC, so it cannot pass --min-auc with a note."""
    monkeypatch.chdir(tmp_path)
    csv_path, report = make_set(tmp_path)
    _rewrite_csv(csv_path, lambda r: {**r, "label": "real"} if "/male_asian/" in r["path"] else r)
    out, md = tmp_path / "o.json", tmp_path / "s.md"
    result = invoke(csv_path, "--scores", report, "--min-auc", 0.8, "--json", out,
                    "--markdown", md, "--bootstrap", 0)
    assert result.exit_code == 1, result.output
    doc = json.loads(out.read_text())
    row = doc["by_group"]["intersection"]["male|asian"]
    assert (row["n_real"], row["n_fake"], row["auc"]) == (40, 0, None)
    assert row["sufficient"] is False and row["insufficient_reason"] == "no fake items"
    assert doc["groups"]["intersection"]["insufficient"] == ["male|asian"]
    assert doc["by_group"]["gender"]["male"]["sufficient"] is True  # male|black has fakes
    gate = next(g for g in doc["gates"] if g["gate"] == "min-group" and g["scope"] == "intersection")
    assert gate["status"] == "fail" and "male|asian (no fake items)" in gate["note"]
    assert [(g["gate"], g["scope"]) for g in doc["gates"] if g["status"] == "fail"] == [("min-group", "intersection")]
    assert not any("no AUC" in g["note"] for g in doc["gates"])
    assert "insufficient (no fake items)" in result.stdout
    assert "| male\\|asian |" in md.read_text() and "insufficient (no fake items)" in md.read_text()

    allowed = invoke(csv_path, "--scores", report, "--min-auc", 0.8, "--json", out,
                     "--bootstrap", 0, "--allow-small-groups")
    assert allowed.exit_code == 0, allowed.output
    gates = {(g["gate"], g["scope"]): g["status"] for g in json.loads(out.read_text())["gates"]}
    assert gates[("min-group", "intersection")] == "warn"


@pytest.mark.parametrize("value", ["asian\x00", "asi\x1b[31man", "bl\x7fack", "\u202eblack"])
def test_control_characters_in_a_group_value_are_rejected(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_path, report = make_set(tmp_path)
    counter = iter(range(2, 10_000))
    _rewrite_csv(csv_path, lambda r: {**r, "race": value} if next(counter) == 7 else r)
    result = invoke(csv_path, "--scores", report)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "labels.csv line 7" in lines[0] and "column 'race'" in lines[0]
    assert "control character" in lines[0] and "\x00" not in result.stderr
    with pytest.raises(InputError, match="line 7"):
        read_labels(csv_path)


# Hostile group names: HTML, Markdown emphasis, links, code, entities, rich console markup and
# matplotlib mathtext.
HOSTILE = {"female": "<img src=x>&amp;\"f\"", "male": "**m**_[x](y)`c`$\\frac$[/b]"}


def test_markdown_junit_and_terminal_escape_user_strings(tmp_path, monkeypatch):
    markdown_it = pytest.importorskip("markdown_it")
    monkeypatch.chdir(tmp_path)
    csv_path, report = make_set(tmp_path)
    _rewrite_csv(csv_path, lambda r: {"path": r["path"], "label": r["label"],
                                      "se<x>_*": HOSTILE[r["gender"]], "race": r["race"]})
    named = csv_path.rename(tmp_path / "la`bels*.csv")
    md, xml, plots = tmp_path / "s.md", tmp_path / "g.xml", tmp_path / "plots"
    result = invoke(named, "--scores", report, "--min-auc", 0.99, "--max-ffpr", 10,
                    "--markdown", md, "--junit", xml, "--plots", plots, "--bootstrap", 0)
    assert result.exit_code == 1, result.output  # a gate failed: no crash on [/b] or $\frac$
    assert not isinstance(result.exception, Exception), repr(result.exception)
    assert len(list(plots.glob("*.png"))) == 6
    assert HOSTILE["male"] in result.stdout and "<img src=x>" in result.stdout  # shown as written

    html = markdown_it.MarkdownIt("commonmark").enable("table").render(md.read_text())
    assert "<img" not in html and "<a " not in html and "<code>" not in html
    assert html.count("<strong>") == 1 and "<em>" not in html  # only the verdict is bold
    for name in (*HOSTILE.values(), "se<x>_*", "la`bels*.csv"):
        assert escape_html(name) in html, name
    assert "male|asian" not in md.read_text()  # table cells keep their columns

    root = ET.parse(xml).getroot()  # JUnit: valid XML, the names come back exactly
    texts = [c.get("classname") for c in root.iter("testcase")]
    texts += [f.get("message") for f in root.iter("failure")] + [s.text for s in root.iter("system-out")]
    joined = "\n".join(t for t in texts if t)
    assert "dfscan.fairness.se<x>_*" in joined
    assert any(HOSTILE["male"] in t or HOSTILE["female"] in t for t in texts if t)


def test_method_and_domain_columns_are_reported_per_value_not_gated(labelled, tmp_path):
    csv_path, report = labelled
    lines = csv_path.read_text().splitlines()
    out_lines = [lines[0] + ",method,domain"]
    for i, line in enumerate(lines[1:]):
        fake = line.split(",")[1] == "fake"
        out_lines.append(f"{line},{('swap' if i % 2 else 'reenact') if fake else 'real'},{'dfdc' if i % 3 else 'ffpp'}")
    csv_path.write_text("\n".join(out_lines) + "\n")
    out, md = tmp_path / "out.json", tmp_path / "out.md"
    result = invoke(csv_path, "--scores", report, "--json", out, "--markdown", md, "--bootstrap", 0)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["labels"]["attributes"] == ["gender", "race"]  # method/domain are no demographic groups
    assert doc["fairness"]["intersection"]["F_FPR"] == pytest.approx(75.0)  # unchanged by the new columns
    by_method = doc["breakdown"]["method"]
    assert set(by_method) == {"reenact", "swap"}
    assert all(r["n_real"] == 80 and r["n_fake"] == 40 and r["auc"] == 1.0 for r in by_method.values())
    by_domain = doc["breakdown"]["domain"]
    assert set(by_domain) == {"dfdc", "ffpp"} and sum(r["n"] for r in by_domain.values()) == 160
    assert "By method" in result.output and "### By domain" in md.read_text()
    # asked for by name, a column is an attribute again
    doc2 = tmp_path / "out2.json"
    assert invoke(csv_path, "--scores", report, "--attrs", "domain", "--json", doc2, "--bootstrap", 0).exit_code in (0, 1)
    d2 = json.loads(doc2.read_text())
    assert d2["labels"]["attributes"] == ["domain"] and list(d2["breakdown"]) == ["method"]


def _render(result, width: int) -> str:
    import io

    from rich.console import Console

    from dfscan.scanner.fairness import print_result

    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None, highlight=False)
    print_result(result, console)
    return console.file.getvalue()


def test_terminal_tables_fit_80_columns_and_cut_nothing(tmp_path, monkeypatch):
    """At 80 columns: the core metrics, the gaps one per row, folded names, nothing cut with an ellipsis."""
    monkeypatch.chdir(tmp_path)
    labels, report = make_set(tmp_path, sizes={("female", "asian"): 8})  # one insufficient group
    result = run_check(labels, CheckOptions(min_group=10, allow_small_groups=True, bootstrap=10, max_ffpr=5,
                                            max_fpr=0.2, min_auc=0.8), scores_report=report)
    out = _render(result, 80)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
    for name in ("female|asian", "female|black", "male|asian", "male|black", "insufficient"):
        assert name in out
    assert "F_FPR" in out and "EO diff" in out and "FAILED" in out
    assert "EER" not in out.split("Overall")[1].split("\n")[2]  # the header row of the core columns
    assert "in --json and --markdown" in out
    wide = _render(result, 160)  # a wide terminal (and CI logs) get every column
    assert "EER" in wide and "pos.rate" in wide and "in --json and --markdown" not in wide
