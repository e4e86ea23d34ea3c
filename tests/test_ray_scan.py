"""`dfscan scan --ray` on a local Ray instance (2 CPUs, no GPU): the same report as the local scan.

Real media, real MediaPipe, the random-init test model on the torch CPU backend, run once
locally and once through Ray Data. One Ray instance serves the module (it takes ~10 s to start).
"""

from __future__ import annotations

import shutil
import sys
from functools import partial

import pytest

from dfscan.scanner import report as rp
from dfscan.scanner.faults import FaultPlan
from dfscan.scanner.pipeline import ScanOptions, scan
from tests.helpers import EXPECTED_CODES, IMAGES, VIDEOS, by_name, make_broken_inputs, scan_options

# any exported ONNX model stays out of the user's cache (the actors get DFSCAN_* from the driver)
pytestmark = pytest.mark.usefixtures("shared_cache")
HINT = "ray[data] is not installed: pip install 'dfscan[ray]' to run the Ray scan tests"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module; shut down after it."""
    ray = pytest.importorskip("ray", reason=HINT)
    pytest.importorskip("ray.data", reason=HINT)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


_opts = partial(scan_options, frames=6)  # the local test scan's options with fewer frames


def _ray(report_options: ScanOptions, paths: list, **kw) -> dict:
    from dfscan.scanner.ray_scan import RayOptions, scan_ray

    return scan_ray(paths, report_options, RayOptions(**kw))


def _same_item(a: dict, b: dict) -> None:
    """Equal items; frame and subject scores within 1e-6 (a last-digit rounding may differ after 6 decimals)."""
    for key in ("path", "kind", "status", "error", "verdict", "media", "file"):
        assert a.get(key) == b.get(key), (a["path"], key)
    assert (a["score"] is None) == (b["score"] is None)
    if a["score"] is not None:
        assert a["score"] == pytest.approx(b["score"], abs=1.01e-6)
    assert len(a["subjects"]) == len(b["subjects"]), a["path"]
    for sa, sb in zip(a["subjects"], b["subjects"]):
        assert sa["id"] == sb["id"] and sa["verdict"] == sb["verdict"]
        assert sa["score"] == pytest.approx(sb["score"], abs=1.01e-6)
        assert [(f["index"], f["t"], f["box"], f["face_score"]) for f in sa["frames"]] == \
               [(f["index"], f["t"], f["box"], f["face_score"]) for f in sb["frames"]]
        assert [f["score"] for f in sa["frames"]] == pytest.approx([f["score"] for f in sb["frames"]], abs=1.01e-6)


@pytest.mark.slow
def test_ray_report_equals_the_local_one(local_ray, tmp_path, tiny_checkpoint):
    folder = tmp_path / "media"
    shutil.copytree(VIDEOS, folder / "videos")
    make_broken_inputs(folder / "broken")
    local = scan([folder], _opts(tiny_checkpoint))
    on_ray = _ray(_opts(tiny_checkpoint, report=tmp_path / "ray.json"), [folder])
    rp.validate_report(on_ray)
    assert [i["path"] for i in on_ray["items"]] == [i["path"] for i in local["items"]]
    for a, b in zip(on_ray["items"], local["items"]):
        _same_item(a, b)
    items = by_name(on_ray)
    for name, code in EXPECTED_CODES.items():  # broken files are error items with the local scan's codes
        assert items[name]["status"] == "error" and items[name]["error"]["code"] == code, items[name]
    assert sum(i["status"] == "ok" for i in on_ray["items"]) >= 4  # the shared videos do have faces
    for key in ("files", "ok", "error", "no_face", "fakes", "real", "subjects", "faces"):
        assert on_ray["summary"][key] == local["summary"][key], key
    assert on_ray["backend"] == local["backend"] and on_ray["settings"] == local["settings"]
    assert on_ray["summary"]["ray"]["crop_actors"] == 1 and on_ray["summary"]["ray"]["gpus"] == 0
    streamed = rp.read_report(rp.stream_path_for(tmp_path / "ray.json"))  # JSONL stream, item by item
    assert sorted(i["path"] for i in streamed["items"]) == sorted(i["path"] for i in on_ray["items"])


@pytest.mark.slow
def test_killed_actor_is_retried_or_reported_and_a_hang_times_out(local_ray, tmp_path, tiny_checkpoint, monkeypatch):
    for name in ("crash.jpg", "once.jpg", "hang.jpg", "good.jpg"):
        shutil.copy(IMAGES / "single_face.jpg", tmp_path / name)
    faults = FaultPlan.parse("crash:crash.jpg,crash_once:once.jpg,hang:hang.jpg")
    paths = [tmp_path / n for n in ("crash.jpg", "once.jpg", "hang.jpg", "good.jpg")]
    report = _ray(_opts(tiny_checkpoint, timeout=4, faults=faults), paths, retries=1)
    rp.validate_report(report)
    items = by_name(report)
    assert items["crash.jpg"]["error"]["code"] == "worker_crashed"  # died twice: reported, not retried forever
    assert items["once.jpg"]["status"] == "ok"  # its actor was killed once mid-run: retried on a fresh actor
    assert items["hang.jpg"]["error"]["code"] == "timeout"
    assert items["good.jpg"]["status"] == "ok"
    assert items["once.jpg"]["score"] == items["good.jpg"]["score"]  # the same image: the retry scored it in full
    assert [i["path"] for i in report["items"]] == [str(p) for p in paths]


@pytest.mark.slow
def test_resume_from_a_local_run_through_the_cli(local_ray, tmp_path, tiny_checkpoint):
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    for name in ("a.jpg", "b.jpg"):
        shutil.copy(IMAGES / "single_face.jpg", tmp_path / name)
    out = tmp_path / "out.json"
    first = scan([tmp_path / "a.jpg", tmp_path / "b.jpg"], _opts(tiny_checkpoint, workers=1, report=out))
    rp.write_report(first, out)
    shutil.copy(IMAGES / "astronaut.png", tmp_path / "c.png")
    (tmp_path / "b.jpg").write_bytes((tmp_path / "b.jpg").read_bytes() + b"\0")  # b changed since
    args = ["scan", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), str(tmp_path / "c.png"), "--report", str(out),
            "--resume", "--ray", "--weights", str(tiny_checkpoint), "--backend", "torch", "--frames", "6",
            "--batch-size", "16", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    second = rp.read_report(out)
    rp.validate_report(second)
    assert second["summary"]["resumed"] == 1 and second["summary"]["files"] == 3 and "ray" in second["summary"]
    assert by_name(second)["a.jpg"] == by_name(first)["a.jpg"]
    assert by_name(second)["b.jpg"]["file"] != by_name(first)["b.jpg"]["file"]
    assert by_name(second)["c.png"]["status"] in ("ok", "no_face")


def test_without_the_extra_ray_says_how_to_install_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    shutil.copy(IMAGES / "single_face.jpg", tmp_path / "a.jpg")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = CliRunner().invoke(app, ["scan", str(tmp_path / "a.jpg"), "--ray"])
    assert result.exit_code == 2
    assert 'pip install "dfscan[ray]"' in " ".join(result.output.split())
    assert "Traceback" not in result.output
