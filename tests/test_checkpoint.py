"""dfscan safetensors checkpoints: round trips, metadata, and clear errors for foreign files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from dfscan.core.errors import CheckpointError
from dfscan.train import PGFDD, ModelConfig, PGFDDDeploy, load_checkpoint, save_checkpoint
from dfscan.train.checkpoint import FORMAT, file_sha256, read_metadata


def _x(n: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 3, 256, 256, generator=g) * 2 - 1


def test_deploy_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(num_fair=3, group_names=["f", "m", "x"])
    model = PGFDD(cfg).eval()
    deploy = model.deploy()
    path = save_checkpoint(tmp_path / "d.safetensors", deploy, cfg, threshold=0.37,
                           provenance={"manifest_sha256": "ab" * 32, "epochs": 2, "metrics": {"auc": 0.91}})
    meta = read_metadata(path)
    assert meta["format"] == FORMAT and meta["kind"] == "deploy"
    assert json.loads(meta["config"])["group_names"] == ["f", "m", "x"]
    loaded, lcfg, info = load_checkpoint(path)
    assert isinstance(loaded, PGFDDDeploy) and not loaded.training
    assert lcfg == cfg
    assert info["threshold"] == pytest.approx(0.37)
    assert info["provenance"] == {"manifest_sha256": "ab" * 32, "epochs": 2, "metrics": {"auc": 0.91}}
    assert info["kind"] == "deploy" and info["sha256"] == file_sha256(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(_x()), deploy(_x()))
    with pytest.raises(CheckpointError, match="deploy checkpoint"):
        load_checkpoint(path, deploy=False)


def test_full_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="efficientnet_lite0", num_spe=3, method_names=["real", "a", "b"])
    model = PGFDD(cfg).eval()
    path = save_checkpoint(tmp_path / "f.safetensors", model, threshold=0.61, provenance={"epochs": 1})
    full, lcfg, info = load_checkpoint(path, deploy=False)
    assert isinstance(full, PGFDD) and info["kind"] == "full" and lcfg == cfg
    for k, v in model.state_dict().items():
        assert torch.equal(full.state_dict()[k], v), k
    dep, _, info2 = load_checkpoint(path)  # a full checkpoint also loads as deploy
    assert isinstance(dep, PGFDDDeploy) and info2["threshold"] == pytest.approx(0.61)
    with torch.no_grad():
        torch.testing.assert_close(dep(_x()), model(_x(), inference=True)["prob"])


def test_shared_fixtures(tiny_checkpoint, tiny_full_checkpoint):
    dep, cfg, info = load_checkpoint(tiny_checkpoint)
    assert info["kind"] == "deploy" and info["threshold"] == 0.5 and cfg.backbone == "efficientnet_lite0"
    full, _, info_full = load_checkpoint(tiny_full_checkpoint, deploy=False)
    assert info_full["kind"] == "full" and isinstance(full, PGFDD)
    with torch.no_grad():
        p = dep(_x(3))
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()


def test_not_safetensors(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not safetensors")
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_checkpoint(bad)
    pth = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(2)}, pth)
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_checkpoint(pth)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_foreign_safetensors(tmp_path):
    foreign = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a dfscan checkpoint"):
        load_checkpoint(foreign)
    bare = tmp_path / "bare.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(bare))
    with pytest.raises(CheckpointError, match="not a dfscan checkpoint"):
        load_checkpoint(bare)


def test_wrong_keys_and_shapes(tmp_path, tiny_checkpoint):
    from safetensors.torch import load_file

    state = load_file(str(tiny_checkpoint))
    meta = read_metadata(tiny_checkpoint)
    renamed = dict(state)
    renamed["head_fused.mlp.9.weight"] = renamed.pop("head_fused.mlp.2.weight")
    p1 = tmp_path / "renamed.safetensors"
    save_file(renamed, str(p1), metadata=meta)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(p1)
    assert "head_fused.mlp.2.weight" in str(err.value) and "head_fused.mlp.9.weight" in str(err.value)

    resized = dict(state)
    resized["head_fused.mlp.2.weight"] = torch.zeros(3, 512)
    p2 = tmp_path / "resized.safetensors"
    save_file(resized, str(p2), metadata=meta)
    with pytest.raises(CheckpointError, match=r"wrong shapes \(1\): head_fused\.mlp\.2\.weight"):
        load_checkpoint(p2)

    cfg = json.loads(meta["config"])
    cfg["backbone"] = "vgg"
    p3 = tmp_path / "badcfg.safetensors"
    save_file(state, str(p3), metadata={**meta, "config": json.dumps(cfg)})
    with pytest.raises(CheckpointError, match="unknown backbone"):
        load_checkpoint(p3)


def test_deploy_files_hold_the_single_pass_graph_and_older_two_pass_files_load(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(input_size=64)
    model = PGFDD(cfg).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    single = save_checkpoint(tmp_path / "single.safetensors", model.deploy(), cfg)
    meta = read_metadata(single)
    assert meta["deploy_graph"] == "single_pass" and "encoder_fair" in meta["deploy_note"]
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as f:
        assert not any(k.startswith(("encoder_fair.", "block_fair.")) for k in f.keys())  # unused weights dropped
    older = save_checkpoint(tmp_path / "two.safetensors", model.deploy(single_pass=False), cfg)
    assert read_metadata(older)["deploy_graph"] == "two_pass"
    a, b = load_checkpoint(single)[0], load_checkpoint(older)[0]
    assert a.single_pass and b.single_pass
    with torch.no_grad():
        ref = model(x, inference=True)["prob"]
        torch.testing.assert_close(a(x), ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(b(x), ref, rtol=0, atol=1e-6)
    assert single.stat().st_size < 0.7 * older.stat().st_size
