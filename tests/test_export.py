"""ONNX export: checker, I/O contract, dynamic batch, ONNX Runtime parity with torch, FP16 graph, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dfscan.core.errors import InputError
from tests.helpers import TEST_SIZE, real_crops


@pytest.fixture(scope="module")
def exported(sharp_checkpoint, tmp_path_factory):
    """Exported straight into the session's shared cache, so the backend tests reuse the file."""
    from dfscan.engines.export import export_with_parity
    from dfscan.engines.onnx_cache import cached_onnx_path, record_export
    from dfscan.train.checkpoint import file_sha256

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DFSCAN_CACHE", str(tmp_path_factory.getbasetemp() / "dfscan-cache"))
        out = cached_onnx_path(file_sha256(sharp_checkpoint))
    path, parity = export_with_parity(sharp_checkpoint, out, crops=real_crops())
    record_export(path, parity["weights_sha256"])  # bound, as build-engine does: the backend tests reuse it
    return path, parity


def test_sharpened_fixture_spreads_scores(sharp_checkpoint):
    from dfscan.engines.export import torch_reference
    from dfscan.train.checkpoint import load_checkpoint

    model, config, _ = load_checkpoint(sharp_checkpoint)
    p = torch_reference(model, real_crops(), config)
    assert p.min() < 0.2 and p.max() > 0.8


def test_export_passes_checker_and_io_contract(exported):
    import onnx

    path, parity = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "crops" and out.name == "p_fake"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [3, TEST_SIZE, TEST_SIZE]
    assert len(out.type.tensor_type.shape.dim) == 1
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
    assert parity["crops"] == 6 and parity["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_dynamic_batch_parity_in_onnxruntime(exported, sharp_checkpoint, batch):
    from dfscan.engines.base import normalise
    from dfscan.engines.export import torch_reference
    from dfscan.engines.onnx_model import ort_session
    from dfscan.train.checkpoint import load_checkpoint

    model, config, _ = load_checkpoint(sharp_checkpoint)
    crops = real_crops(batch)
    got = ort_session(exported[0]).run(["p_fake"], {"crops": normalise(crops, config.mean, config.std)})[0]
    ref = torch_reference(model, crops, config)
    assert got.shape == (batch,) and got.dtype == np.float32
    assert np.abs(got - ref).max() <= 1e-4


def test_normalise_matches_training_formula():
    from dfscan.engines.base import normalise

    crops = real_crops(2)
    x = normalise(crops, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    expected = (crops.astype(np.float32) / 255.0 - 0.5) / 0.5
    assert x.shape == (2, 3, TEST_SIZE, TEST_SIZE) and x.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(x, expected.transpose(0, 3, 1, 2), atol=1e-6)
    y = normalise(crops, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    np.testing.assert_allclose(y[:, 2], (crops[..., 2] / 255.0 - 0.406) / 0.225, atol=1e-5)


def test_fp16_adain_statistics_do_not_overflow():
    """FP16 features of magnitude ~400 square past 65504; the model's AdaIN must still be finite."""
    import torch

    from dfscan.train.model import adain

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 4, 8, 8, generator=g) * 400).half()
    y = (torch.randn(2, 4, 8, 8, generator=g) * 300).half()
    assert torch.isinf((x.float() - x.float().mean()).pow(2).sum().half())  # the hazard is real
    got = adain(x, y)
    ref = adain(x.float(), y.float())
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    assert torch.allclose(got.float(), ref, rtol=2e-3, atol=0.5)


def test_check_onnx_rejects_other_files(tmp_path):
    from dfscan.engines.onnx_model import check_onnx

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a valid ONNX model"):
        check_onnx(bad)


def test_old_opset_is_refused(tiny_checkpoint, tmp_path):
    from dfscan.engines.export import export_onnx

    with pytest.raises(InputError, match="opset 13"):
        export_onnx(tiny_checkpoint, tmp_path / "m.onnx", opset=13)


def test_cached_onnx_reuses_export_by_hash(tiny_checkpoint, shared_cache, monkeypatch, tmp_path):
    import shutil

    from dfscan.engines import export, onnx_cache

    first = onnx_cache.cached_onnx(tiny_checkpoint)
    assert first.is_file() and shared_cache in first.parents
    from dfscan.train.checkpoint import file_sha256

    assert file_sha256(tiny_checkpoint) in str(first)

    def no_export(*args, **kwargs):
        raise AssertionError("cached export was redone")

    monkeypatch.setattr(export, "export_onnx", no_export)
    mtime = first.stat().st_mtime_ns
    copy = shutil.copy(tiny_checkpoint, tmp_path / "renamed.safetensors")  # same bytes, other name
    assert onnx_cache.cached_onnx(copy) == first
    assert first.stat().st_mtime_ns == mtime
    assert not list(first.parent.glob("*.tmp"))


def test_cached_onnx_redoes_a_damaged_entry(tiny_checkpoint, tmp_path, monkeypatch):
    from dfscan.engines import export, onnx_cache
    from dfscan.train.checkpoint import file_sha256

    monkeypatch.setenv("DFSCAN_CACHE", str(tmp_path / "cache"))
    target = onnx_cache.cached_onnx_path(file_sha256(tiny_checkpoint))
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    calls = []

    def fake_export(weights, out, opset=18, *, fp16=False):
        calls.append(Path(out))
        Path(out).write_bytes(b"fresh")
        return Path(out)

    monkeypatch.setattr(export, "export_onnx", fake_export)
    assert onnx_cache.cached_onnx(tiny_checkpoint) == target
    assert calls == [target] and target.read_bytes() == b"fresh"


def test_cached_onnx_missing_weights(tmp_path):
    from dfscan.engines.onnx_cache import cached_onnx

    with pytest.raises(InputError, match="not found"):
        cached_onnx(tmp_path / "nope.safetensors")


@pytest.mark.slow
def test_fp16_graph_parity_on_cpu(tiny_checkpoint, tmp_path):
    """FP16 weights/compute with float32 I/O, run by ONNX Runtime's CPU FP16 kernels.

    On the random-init checkpoint: the sharpened one amplifies its weak input signal ~450x and
    with it FP16 rounding, which a trained model does not.
    """
    import onnx

    from dfscan.engines.export import export_with_parity

    path, parity = export_with_parity(tiny_checkpoint, tmp_path / "fp16.onnx", fp16=True, crops=real_crops())
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    halves = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) > 50  # the weights really are FP16 (single pass: encoder_f, block_sha, head_fused)
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    to_float = [n for n in casts if any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
    assert len(to_float) >= 1  # the logits are lifted to float32 for the softmax
    assert parity["precision"] == "fp16" and parity["max_abs_diff"] <= 1e-3
