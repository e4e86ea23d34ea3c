"""Backends on the CPU: ONNX Runtime and torch agree, batch handling, input checks, the protocol."""

from __future__ import annotations

import numpy as np
import pytest

from dfscan.core.errors import InputError
from tests.helpers import TEST_SIZE, real_crops

S = TEST_SIZE


@pytest.fixture()
def ort_backend(sharp_checkpoint, shared_cache):
    from dfscan.engines.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(sharp_checkpoint, threads=2)
    yield backend
    backend.close()


@pytest.fixture()
def torch_backend(sharp_checkpoint):
    from dfscan.engines.torch import TorchBackend

    backend = TorchBackend(sharp_checkpoint)
    yield backend
    backend.close()


def test_backends_follow_the_protocol(ort_backend, torch_backend):
    from dfscan.engines.base import Backend

    for backend, name in ((ort_backend, "onnxruntime"), (torch_backend, "torch")):
        assert isinstance(backend, Backend)
        assert (backend.name, backend.device, backend.precision) == (name, "cpu", "fp32")
        assert backend.batch_size >= 1


def test_onnxruntime_matches_torch_on_real_crops(ort_backend, torch_backend):
    crops = real_crops(11)  # not a multiple of the batch size: the last chunk is short
    p_ort, p_torch = ort_backend.predict(crops), torch_backend.predict(crops)
    assert p_ort.shape == p_torch.shape == (11,) and p_ort.dtype == np.float32
    assert np.abs(p_ort - p_torch).max() <= 1e-4
    assert ((p_ort >= 0) & (p_ort <= 1)).all() and p_ort.std() > 0.1


def test_batch_size_does_not_change_scores(sharp_checkpoint, shared_cache, ort_backend):
    from dfscan.engines.onnxruntime import OnnxRuntimeBackend

    crops = real_crops(5)
    small = OnnxRuntimeBackend(sharp_checkpoint, batch_size=2, threads=1)
    assert small.onnx_path == ort_backend.onnx_path  # same cached export, keyed by the weights' hash
    np.testing.assert_allclose(small.predict(crops), ort_backend.predict(crops), atol=1e-6)
    single = np.concatenate([ort_backend.predict(crops[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(single, ort_backend.predict(crops), atol=1e-6)


def test_empty_batch(ort_backend, torch_backend):
    empty = np.zeros((0, S, S, 3), np.uint8)
    for backend in (ort_backend, torch_backend):
        out = backend.predict(empty)
        assert out.shape == (0,) and out.dtype == np.float32


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, S, S, 3), np.float32), "uint8"),
    (np.zeros((2, 224, 224, 3), np.uint8), "shape"),
    (np.zeros((S, S, 3), np.uint8), "shape"),
    (np.zeros((2, 3, S, S), np.uint8), "shape"),
    ([[0]], "numpy array"),
])
def test_bad_crops_are_input_errors(ort_backend, torch_backend, bad, message):
    for backend in (ort_backend, torch_backend):
        with pytest.raises(InputError, match=message):
            backend.predict(bad)


def test_closed_backend_refuses(sharp_checkpoint, shared_cache):
    from dfscan.engines.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(sharp_checkpoint)
    backend.close()
    with pytest.raises(InputError, match="closed"):
        backend.predict(real_crops(1))


def test_torch_backend_refuses_what_this_machine_cannot_do(sharp_checkpoint, monkeypatch):
    from dfscan.engines import torch as torch_engine

    with pytest.raises(InputError, match="FP16 needs a CUDA GPU"):
        torch_engine.TorchBackend(sharp_checkpoint, device="cpu", fp16=True)
    monkeypatch.setattr(torch_engine, "cuda_device", lambda: None)
    with pytest.raises(InputError, match="sees no CUDA GPU"):
        torch_engine.TorchBackend(sharp_checkpoint, device="cuda", fp16=True)
    with pytest.raises(InputError, match="unknown device"):
        torch_engine.TorchBackend(sharp_checkpoint, device="tpu")
    with pytest.raises(InputError, match="batch size"):
        torch_engine.TorchBackend(sharp_checkpoint, batch_size=0)


def test_channels_last_and_contiguous_torch_agree(sharp_checkpoint, torch_backend):
    from dfscan.engines.torch import TorchBackend

    crops = real_crops(3)
    assert torch_backend.channels_last
    plain = TorchBackend(sharp_checkpoint, channels_last=False)
    np.testing.assert_allclose(plain.predict(crops), torch_backend.predict(crops), atol=1e-5)


def test_not_a_checkpoint(tmp_path, shared_cache):
    from dfscan.engines.onnxruntime import OnnxRuntimeBackend
    from dfscan.engines.torch import TorchBackend

    bogus = tmp_path / "x.safetensors"
    bogus.write_bytes(b"\x00" * 64)
    for cls in (OnnxRuntimeBackend, TorchBackend):
        with pytest.raises(InputError):
            cls(bogus)
