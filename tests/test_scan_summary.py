"""What `dfscan scan` tells a newcomer: every file with its verdict and score beside the threshold,
what a verdict means, and one line for each trap (unknown report extension, URLs, empty folders)."""

from __future__ import annotations

import json
import shutil

import pytest
from rich.console import Console

from dfscan.core.errors import InputError
from dfscan.scanner import report as rp
from dfscan.scanner.commands import scan as scan_cmd
from dfscan.scanner.pipeline import scan, validation_rates
from dfscan.train.checkpoint_info import CheckpointInfo
from tests.helpers import IMAGES, scan_options


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, tiny_checkpoint):
    """A real scan of two face photos (one with a long name) and a broken file."""
    folder = tmp_path_factory.mktemp("in")
    shutil.copy(IMAGES / "single_face.jpg", folder / "one.jpg")
    long_name = "a_long_file_name_of_a_portrait_that_would_not_fit_a_narrow_column_" + "x" * 20 + ".jpg"
    shutil.copy(IMAGES / "45-m7-di-ph.jpg", folder / long_name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return scan([folder], scan_options(tiny_checkpoint, workers=1, frames=2)), long_name


def _printed(monkeypatch, result: dict, show: str = "all", width: int = 80) -> str:
    out = Console(width=width, record=True, no_color=True, file=open("/dev/null", "w"))
    monkeypatch.setattr(scan_cmd, "console", out)
    scan_cmd._print_summary(result, rp.Path("out.json"), show)
    return out.export_text()


@pytest.mark.parametrize(("rate", "words"), [(0.05, "about 1 in 20"), (0.62, "about 3 in 5"), (0.9, "about 9 in 10"), (0.999, "nearly all"), (0.001, "under 1 in 100"), (0.036, "about 4%"), (0.5, "about 1 in 2"),
                                             (0.0, "none"), (0.13, "about 1 in 8")])
def test_rates_in_words(rate, words):
    assert scan_cmd.in_words(rate) == words


def test_summary_lists_every_file_uncut_at_80_columns(monkeypatch, scanned):
    result, long_name = scanned
    text = _printed(monkeypatch, result)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    files_table = text[text.index("files in "):text.index("could not read")]
    first_cells = "".join(line.split("│")[1].strip() for line in files_table.splitlines() if line.startswith("│"))
    assert "one.jpg" in first_cells and long_name in first_cells  # names folded onto more lines, never cut
    assert "fake >= 0.5" in text  # the score's column names the threshold
    assert "no evidence of a deepfake was found, not that a file is authentic" in " ".join(text.split())
    assert "broken.jpg" in text  # under "could not read"
    only_fakes = _printed(monkeypatch, result, show="fake")
    fakes = [i for i in result["items"] if i.get("verdict") == "fake"]
    assert ("one.jpg" in only_fakes) == any(i["path"].endswith("one.jpg") for i in fakes)


def test_validation_rates_are_quoted_only_at_their_threshold(tmp_path, tiny_checkpoint, monkeypatch):
    from dfscan.train.checkpoint import load_checkpoint, save_checkpoint

    model, cfg, info = load_checkpoint(tiny_checkpoint)
    rates = {"threshold": 0.5, "fpr": 0.05, "tpr": 0.62, "reals": 3663, "fakes": 1607, "on": "val.csv"}
    weights = save_checkpoint(tmp_path / "rated.safetensors", model, cfg, threshold=0.5,
                              provenance={"rates_at_threshold": rates})
    assert validation_rates(CheckpointInfo.read(weights)) == {k: rates[k] for k in ("fpr", "tpr", "reals", "fakes", "on")}
    other = save_checkpoint(tmp_path / "recalibrated.safetensors", model, cfg, threshold=0.6,
                            provenance={"rates_at_threshold": rates})
    assert validation_rates(CheckpointInfo.read(other)) is None  # rates of another threshold
    assert validation_rates(CheckpointInfo.read(tiny_checkpoint)) is None

    one = tmp_path / "in"
    one.mkdir()
    shutil.copy(IMAGES / "single_face.jpg", one / "one.jpg")
    result = scan([one], scan_options(weights, workers=1, frames=2))
    rp.validate_report(result)
    assert result["model"]["validation"]["fpr"] == 0.05
    text = " ".join(_printed(monkeypatch, result).split())
    assert "called about 1 in 20 real faces fake and caught about 3 in 5 fakes" in text
    overridden = scan([one], scan_options(weights, workers=1, frames=2, threshold=0.9))
    assert "validation" not in overridden["model"]  # not the threshold these verdicts used


def test_an_unknown_report_extension_is_refused(tmp_path, tiny_checkpoint):
    from dfscan.scanner.pipeline import scan_to_report

    with pytest.raises(InputError, match=r"\.xml is not a report format"):
        rp.format_for("out.xml")
    assert rp.format_for("out.xml", "json") == "json"
    shutil.copy(IMAGES / "single_face.jpg", tmp_path / "one.jpg")
    with pytest.raises(InputError, match=r"\.xml is not a report format"):
        scan_to_report([tmp_path / "one.jpg"], scan_options(tiny_checkpoint, report=tmp_path / "out.xml"))
    assert not (tmp_path / "out.xml").exists() and not (tmp_path / "out.stream.jsonl").exists()


def test_urls_and_empty_folders_say_what_to_do(tmp_path, tiny_checkpoint):
    with pytest.raises(InputError, match=r"https://example\.com/a\.mp4: a URL.*--ray"):
        scan(["https://example.com/a.mp4"], scan_options(tiny_checkpoint))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=f"no video or image files to scan in {empty}"):
        scan([empty], scan_options(tiny_checkpoint))


def test_quiet_scan_with_unreadable_files_says_why_it_exits_3(tmp_path, tiny_checkpoint):
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out.json"
    r = CliRunner().invoke(app, ["scan", str(folder), "--report", str(out), "-q", "--weights", str(tiny_checkpoint),
                                 "--backend", "torch", "--workers", "1"])
    assert r.exit_code == 3, r.output
    assert "1 file(s) could not be read" in r.output
    assert json.loads(out.read_text())["summary"]["error"] == 1


def test_bad_choice_errors_have_no_pydantic_prefix():
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    r = CliRunner().invoke(app, ["scan", "x.jpg", "--format", "xml"])
    assert r.exit_code == 2
    assert "'xml' is not one of" in r.output and "Value error" not in r.output
