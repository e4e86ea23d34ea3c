"""TensorRT parts that run without TensorRT: the sidecar's match logic, the missing-TensorRT path, the CLI.

TensorRT itself cannot be installed on the machines these tests run on; the build and runtime
code in dfscan/engines/tensorrt.py is exercised only where TensorRT and a GPU exist.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from dfscan.core.errors import InputError
from tests.helpers import real_crops

SHA = "ab" * 32
OTHER_SHA = "cd" * 32


@pytest.fixture()
def no_tensorrt(monkeypatch):
    """Make `import tensorrt` fail here even where it is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def sidecar(**over):
    from dfscan.engines.tensorrt import make_sidecar

    fields = dict(weights_sha=SHA, weights_name="w.safetensors", trt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3",
                  compute_capability=(9, 0), precision="fp16",
                  profile={"min": [1, 3, 256, 256], "opt": [32, 3, 256, 256], "max": [64, 3, 256, 256]},
                  parity={"crops": 8, "max_abs_diff": 1.2e-3, "mean_abs_diff": 3e-4, "reference": "torch fp32 cuda"},
                  via="trt", engine_sha=OTHER_SHA, build_seconds=95.3, workspace_gb=4.0, input_name="crops",
                  output_name="p_fake")
    fields.update(over)
    return make_sidecar(**fields)


HERE = dict(weights_sha=SHA, trt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0))


def test_sidecar_matches_its_own_machine():
    from dfscan.engines.tensorrt import sidecar_mismatch

    data = json.loads(json.dumps(sidecar()))  # survives a JSON round trip
    assert data["compute_capability"] == "9.0" and data["format"] == "dfscan.engine/1"
    assert sidecar_mismatch(data, **HERE) is None
    assert sidecar_mismatch(data, **{**HERE, "compute_capability": "9.0"}) is None


@pytest.mark.parametrize("change, expected", [
    ({"weights_sha": OTHER_SHA}, "built from other weights"),
    ({"trt_version": "10.14.1"}, "built with TensorRT 10.13.0.35, this machine has 10.14.1"),
    ({"trt_version": None}, "TensorRT is not installed"),
    ({"gpu_name": "NVIDIA L4"}, "built for NVIDIA H100 80GB HBM3, this GPU is NVIDIA L4"),
    ({"gpu_name": None}, "no CUDA GPU"),
    ({"compute_capability": (8, 9)}, "compute capability 9.0, this GPU has 8.9"),
])
def test_sidecar_mismatch_reasons(change, expected):
    from dfscan.engines.tensorrt import sidecar_mismatch

    reason = sidecar_mismatch(sidecar(), **{**HERE, **change})
    assert reason is not None and expected in reason


@pytest.mark.parametrize("data, expected", [
    ({"format": "other"}, "not a dfscan engine sidecar"),
    ([], "not a dfscan engine sidecar"),
    (sidecar(parity={"max_abs_diff": 0.3}), "parity check did not pass"),
    (sidecar(parity={}), "parity check did not pass"),
    (sidecar(parity={"max_abs_diff": float("nan")}), "parity check did not pass"),
])
def test_sidecar_refusals(data, expected):
    from dfscan.engines.tensorrt import sidecar_mismatch

    assert expected in sidecar_mismatch(data, **HERE)


def test_engine_status_on_this_machine(tmp_path, no_tensorrt):
    from dfscan.engines.tensorrt import SIDECAR_FILE, engine_status

    assert "no engine in" in engine_status(tmp_path / "none", SHA)
    (tmp_path / SIDECAR_FILE).write_text("{broken")
    assert "unreadable engine sidecar" in engine_status(tmp_path, SHA)
    (tmp_path / SIDECAR_FILE).write_text(json.dumps(sidecar()))
    assert engine_status(tmp_path, OTHER_SHA).startswith("built from other weights")
    assert engine_status(tmp_path, SHA) == "TensorRT is not installed here"


def test_missing_tensorrt_message(no_tensorrt, tiny_checkpoint, tmp_path):
    from dfscan.engines.tensorrt import TRT_MISSING, TensorRTBackend, build_engine, import_tensorrt, tensorrt_version

    assert tensorrt_version() is None
    for call in (import_tensorrt,
                 lambda: build_engine(tiny_checkpoint, tmp_path, crops=real_crops(2)),
                 lambda: TensorRTBackend(tmp_path, tiny_checkpoint)):
        with pytest.raises(InputError) as info:
            call()
        assert str(info.value) == TRT_MISSING
    assert "\n" not in TRT_MISSING and "pip install tensorrt" in TRT_MISSING and "--format onnx" in TRT_MISSING


def test_select_reports_missing_tensorrt(no_tensorrt, tiny_checkpoint, tmp_path, monkeypatch):
    from dfscan.engines.select import probe_tensorrt

    monkeypatch.setenv("DFSCAN_CACHE", str(tmp_path))
    ok, reason = probe_tensorrt(SHA, None)
    assert not ok and "TensorRT is not installed" in reason


def test_build_engine_cli_without_tensorrt(no_tensorrt, tiny_checkpoint):
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    result = CliRunner().invoke(app, ["build-engine", "--weights", str(tiny_checkpoint)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "TensorRT is not installed" in lines[0] and "--format onnx" in lines[0]
    assert "Traceback" not in result.output


def test_build_engine_cli_onnx_writes_a_working_model(tiny_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from dfscan.engines.base import normalise
    from dfscan.engines.export import torch_reference
    from dfscan.engines.onnx_model import ort_session
    from dfscan.scanner.cli import app
    from dfscan.train.checkpoint import load_checkpoint

    out = tmp_path / "exported"
    result = CliRunner().invoke(app, ["build-engine", "--weights", str(tiny_checkpoint), "--format", "onnx",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "parity vs torch FP32" in result.output
    # never silent for the ~30 s export: each step is a line where no spinner can be drawn (a pipe, CI)
    steps = [line for line in result.output.splitlines() if line.endswith(" ...")]
    assert [s.split()[0] for s in steps] == ["reading", "making", "loading", "exporting", "checking"], steps
    assert result.output.index("exporting to ONNX") < result.output.index("wrote ")
    words = " ".join(result.output.split())  # the lines fold where the temporary path is long
    assert "standalone model" in words and "not the .onnx file" in words  # how to use it
    path = out / "model.onnx"
    model, config, _ = load_checkpoint(tiny_checkpoint)
    crops = real_crops(3)
    got = ort_session(path).run(["p_fake"], {"crops": normalise(crops, config.mean, config.std)})[0]
    assert got.shape == (3,)
    assert np.abs(got - torch_reference(model, crops, config)).max() <= 1e-4


def test_build_engine_cli_bad_options(tiny_checkpoint):
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["build-engine", "--format", "tflite"]).exit_code == 2
    assert runner.invoke(app, ["build-engine", "--max-batch", "0"]).exit_code == 2
    help_text = runner.invoke(app, ["build-engine", "--help"]).output
    assert "dfscan build-engine --format onnx" in help_text
