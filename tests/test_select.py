"""Backend selection: the auto order, explicit choices, load failures, the real probes here, doctor."""

from __future__ import annotations

import json
import re

import pytest

from dfscan.core.errors import InputError
from tests.helpers import real_crops


class FakeBackend:
    def __init__(self, name: str):
        self.name, self.device, self.precision, self.batch_size = name, "cpu", "fp32", 8
        self.closed = False

    def predict(self, crops):
        raise AssertionError("not used")

    def close(self):
        self.closed = True


@pytest.fixture()
def machine(monkeypatch):
    """A configurable fake machine: which probes pass, and which candidates fail to load."""
    from dfscan.engines import select

    state = {"available": set(select.AUTO_ORDER), "broken": set(), "unimportable": set(), "made": []}

    def probe(name):
        def run(*args):
            return (name in state["available"], f"{name} {'ok' if name in state['available'] else 'missing'}")
        return run

    for name in select.AUTO_ORDER:
        monkeypatch.setitem(select.PROBES, name, probe(name))

    def factory(name, weights, engine, sha):
        if name in state["broken"]:
            raise InputError(f"{name} is broken")
        if name in state["unimportable"]:  # installed, so it probes fine, but its library cannot load
            raise ImportError(f"libgomp.so.1 needed by {name}: cannot open shared object file")
        state["made"].append(name)
        return FakeBackend(name)

    monkeypatch.setattr(select, "FACTORY", factory)
    return state


@pytest.mark.parametrize("missing, expected", [
    (set(), "tensorrt"),
    ({"tensorrt"}, "torch-cuda-fp16"),
    ({"tensorrt", "torch-cuda-fp16"}, "onnxruntime-cpu"),
    ({"tensorrt", "torch-cuda-fp16", "onnxruntime-cpu"}, "torch-cpu"),
    ({"torch-cuda-fp16", "onnxruntime-cpu"}, "tensorrt"),
])
def test_auto_order(machine, tiny_checkpoint, missing, expected):
    from dfscan.engines.select import select_backend

    machine["available"] -= missing
    backend, cands = select_backend(tiny_checkpoint)
    assert backend.name == expected and machine["made"] == [expected]
    assert [c.name for c in cands] == ["tensorrt", "torch-cuda-fp16", "onnxruntime-cpu", "torch-cpu"]
    assert [c.name for c in cands if c.chosen] == [expected]
    for c in cands:
        assert c.available == (c.name not in missing)
        assert c.reason


def test_auto_skips_a_candidate_that_fails_to_load(machine, tiny_checkpoint):
    from dfscan.engines.select import select_backend

    machine["available"] -= {"tensorrt", "torch-cuda-fp16"}
    machine["broken"] = {"onnxruntime-cpu"}
    backend, cands = select_backend(tiny_checkpoint)
    assert backend.name == "torch-cpu"
    ort = next(c for c in cands if c.name == "onnxruntime-cpu")
    assert not ort.available and "failed to load: onnxruntime-cpu is broken" in ort.reason


def test_a_broken_install_is_skipped_by_auto_and_one_line_when_chosen(machine, tiny_checkpoint):
    from dfscan.engines.select import select_backend

    machine["available"] -= {"tensorrt", "torch-cuda-fp16", "onnxruntime-cpu"}
    machine["unimportable"] = {"torch-cpu"}
    with pytest.raises(InputError, match="no backend could load.*libgomp"):
        select_backend(tiny_checkpoint)
    with pytest.raises(InputError, match="--backend torch failed to load: ImportError: libgomp"):
        select_backend(tiny_checkpoint, "torch")


def test_auto_with_nothing_loadable(machine, tiny_checkpoint):
    from dfscan.engines.select import select_backend

    machine["broken"] = set(machine["available"])
    with pytest.raises(InputError, match="no backend could load"):
        select_backend(tiny_checkpoint)


@pytest.mark.parametrize("choice, missing, expected", [
    ("torch", set(), "torch-cuda-fp16"),
    ("torch", {"torch-cuda-fp16"}, "torch-cpu"),
    ("onnxruntime", {"tensorrt"}, "onnxruntime-cpu"),
    ("tensorrt", {"onnxruntime-cpu"}, "tensorrt"),
])
def test_explicit_choice_is_honoured(machine, tiny_checkpoint, choice, missing, expected):
    from dfscan.engines.select import select_backend

    machine["available"] -= missing
    backend, _ = select_backend(tiny_checkpoint, choice)
    assert backend.name == expected


def test_explicit_choice_refused_with_reason(machine, tiny_checkpoint):
    from dfscan.engines.select import select_backend

    machine["available"].discard("tensorrt")
    with pytest.raises(InputError, match="--backend tensorrt is not available here: tensorrt: tensorrt missing"):
        select_backend(tiny_checkpoint, "tensorrt")
    machine["broken"] = {"onnxruntime-cpu"}
    with pytest.raises(InputError, match="onnxruntime-cpu is broken"):
        select_backend(tiny_checkpoint, "onnxruntime")


def test_bad_arguments(tiny_checkpoint, tmp_path):
    from dfscan.engines.select import select_backend

    with pytest.raises(InputError, match="unknown backend 'cuda'"):
        select_backend(tiny_checkpoint, "cuda")
    with pytest.raises(InputError, match="weights file not found"):
        select_backend(tmp_path / "missing.safetensors")
    with pytest.raises(InputError, match="engine folder not found"):
        select_backend(tiny_checkpoint, engine=tmp_path / "no-engine")


def test_real_probes_on_this_machine(tiny_checkpoint, tmp_path, monkeypatch):
    """What this CPU-only box has; the TensorRT/CUDA rows are only checked where they are absent."""
    from dfscan.engines.select import candidates
    from dfscan.engines.tensorrt import tensorrt_version
    from dfscan.engines.torch import cuda_device

    monkeypatch.setenv("DFSCAN_CACHE", str(tmp_path))
    cands = {c.name: c for c in candidates(tiny_checkpoint)}
    assert cands["torch-cpu"].available and cands["onnxruntime-cpu"].available
    if tensorrt_version() is None:
        assert not cands["tensorrt"].available and "TensorRT is not installed" in cands["tensorrt"].reason
    if cuda_device() is None:
        assert not cands["torch-cuda-fp16"].available and "sees no CUDA GPU" in cands["torch-cuda-fp16"].reason


def test_real_auto_selection_scores(tiny_checkpoint, shared_cache):
    """With no GPU, auto loads ONNX Runtime from the cached export and scores real crops."""
    from dfscan.engines.select import select_backend
    from dfscan.engines.torch import cuda_device

    if cuda_device() is not None:
        pytest.skip("a GPU is visible: auto would take CUDA")
    backend, cands = select_backend(tiny_checkpoint)
    try:
        assert backend.name == "onnxruntime" and [c.name for c in cands if c.chosen] == ["onnxruntime-cpu"]
        p = backend.predict(real_crops(2))
        assert p.shape == (2,) and ((p > 0) & (p < 1)).all()
    finally:
        backend.close()


def test_doctor_command(tiny_checkpoint, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    monkeypatch.setenv("DFSCAN_CACHE", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(app, ["doctor", "--weights", str(tiny_checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    names = [c["name"] for c in report["candidates"]]
    assert names == ["tensorrt", "torch-cuda-fp16", "onnxruntime-cpu", "torch-cpu"]
    assert report["chosen"] == next(c["name"] for c in report["candidates"] if c["available"])
    assert report["weights"]["ok"] and report["weights"]["threshold"] == 0.5
    assert len(report["weights"]["sha256"]) == 64
    assert {m["name"] for m in report["face_models"]} == {"full", "short"}
    assert all(m["present"] for m in report["face_models"])
    assert int(report["machine"]["cpu cores"].split()[0]) >= 1

    table = runner.invoke(app, ["doctor", "--weights", str(tiny_checkpoint)])
    assert table.exit_code == 0 and "backends" in table.output and "chosen" in table.output
    assert "a scan here uses" in table.output


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_doctor_with_missing_weights_is_one_line_exit_2(tmp_path, extra):
    """Asked to check this file, doctor says it is missing; it does not check another or ask for --weights."""
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    missing = tmp_path / "none.safetensors"
    result = CliRunner().invoke(app, ["doctor", "--weights", str(missing), *extra])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: --weights {missing}: file not found"]


def test_doctor_report_of_missing_weights_says_missing(tmp_path):
    """The library report (the shipped model's absence, say) still records the problem instead of raising."""
    from dfscan.scanner.doctor import doctor_report

    report = doctor_report(tmp_path / "none.safetensors")
    assert not report["weights"]["ok"] and report["weights"]["problem"] == "missing"
    assert report["candidates"] == [] and report["chosen"] is None


def test_doctor_model_row_is_a_short_line_and_internals_are_verbose(tiny_checkpoint):
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    runner = CliRunner()
    short = runner.invoke(app, ["doctor", "--weights", str(tiny_checkpoint)], env={"COLUMNS": "80"})
    assert short.exit_code == 0, short.output
    assert f"{tiny_checkpoint.name}: " in short.output and "fake when p_fake >= 0.5" in short.output
    assert all(len(line) <= 80 for line in short.output.splitlines())
    assert "…" not in short.output  # nothing cut: long values fold
    sha = json.loads(runner.invoke(app, ["doctor", "--weights", str(tiny_checkpoint), "--json"]).output)["weights"]
    def flat(text: str) -> str:  # folded table cells joined again
        return re.sub(r"[\s│]", "", text)

    assert sha["sha256"] not in flat(short.output) and "single pass" not in short.output and "two passes" not in short.output
    verbose = runner.invoke(app, ["doctor", "--weights", str(tiny_checkpoint), "--verbose"], env={"COLUMNS": "80"})
    assert verbose.exit_code == 0, verbose.output
    assert sha["sha256"] in flat(verbose.output) and sha["inference_graph"] in verbose.output


def test_one_backend_table_feeds_choices_schema_and_loading():
    """SPECS is the only list: the CLI's --backend choices, the report schema's backend.name enum
    and auto's order all agree with it."""
    from dfscan.engines import select
    from dfscan.scanner.commands.choices import BackendChoice
    from dfscan.scanner.report import load_schema

    assert [c.value for c in BackendChoice] == ["auto", *select.BACKEND_NAMES]
    schema_enum = load_schema()["properties"]["backend"]["properties"]["name"]["enum"]
    assert sorted(schema_enum) == sorted(select.BACKEND_NAMES)
    assert select.AUTO_ORDER == tuple(s.candidate for s in select.SPECS)
    assert set(select.PROBES) == set(select.AUTO_ORDER)


def test_one_writer_table_feeds_format_choices():
    from dfscan.scanner import report as rp
    from dfscan.scanner.commands.choices import Format

    assert [f.value for f in Format] == list(rp.WRITERS) == list(rp.FORMATS)
    assert all(rp.format_for(f"x.{name}") == name for name in rp.WRITERS)


def test_torch_build_matches_torch_itself():
    """The version file says what an import would: the probes use it so a CPU scan never imports torch."""
    import torch

    from dfscan.engines.select import torch_build

    assert torch_build() == (torch.__version__, torch.version.cuda)


def test_cpu_scan_backend_loads_without_torch(tiny_checkpoint, shared_cache):
    """With the export cached, `auto` on a machine without a GPU loads ONNX Runtime and never imports
    torch (about a second of every scan's start-up)."""
    import os
    import subprocess
    import sys

    from dfscan.engines.onnx_cache import cached_onnx
    from dfscan.engines.select import gpu_driver_absent, torch_build
    from dfscan.engines.torch import cuda_device

    if cuda_device() is not None:
        pytest.skip("a GPU is visible: auto would take CUDA")
    if torch_build()[1] is not None and not gpu_driver_absent():
        pytest.skip("a GPU build of torch with a GPU driver: only importing torch can tell whether it sees a GPU")
    cached_onnx(tiny_checkpoint)
    code = ("import sys; from dfscan.engines.select import select_backend; "
            f"b, _ = select_backend({str(tiny_checkpoint)!r}); b.close(); "
            "print(b.name, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "DFSCAN_CACHE": str(shared_cache)})
    assert out.stdout.split() == ["onnxruntime", "False"]


@pytest.mark.parametrize("build, driver_absent, cuda_reason, cpu_ok", [
    (None, True, "torch is not installed", False),
    (("2.13.0+cpu", None), False, "a CPU build", True),
    (("2.13.0+cu128", "12.8"), True, "no GPU driver", True),
])
def test_torch_probes_from_the_build_alone(monkeypatch, build, driver_absent, cuda_reason, cpu_ok):
    from dfscan.engines import select

    monkeypatch.setattr(select, "torch_build", lambda: build)
    monkeypatch.setattr(select, "gpu_driver_absent", lambda: driver_absent)
    ok, reason = select.probe_torch_cuda()
    assert not ok and cuda_reason in reason
    assert select.probe_torch_cpu()[0] == cpu_ok
