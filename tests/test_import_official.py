"""Importing official PG-FDD state_dicts (.pth, weights_only) into dfscan checkpoints."""

from __future__ import annotations

import collections

import pytest
import torch
from typer.testing import CliRunner

from dfscan.core.errors import CheckpointError
from dfscan.train.checkpoint import import_official, load_checkpoint, read_metadata
from dfscan.train.config import ModelConfig
from dfscan.train.model import PGFDD, PGFDDDeploy

# Facts read off the official network (Purdue-M2/Fairness-Generalization, FairDetector with its
# Xception in 'adjust_channel' mode): keys and parameter counts per top-level module.
OFFICIAL_LAYOUT = {
    "encoder_f": (283, 21916755), "encoder_c": (283, 21916755), "encoder_fair": (283, 21916755),
    "con_gan": (14, 2323523), "head_spe": (4, 134662), "head_sha": (4, 132610), "head_fair": (4, 135688),
    "head_fused": (4, 132610), "block_spe": (6, 262912), "block_sha": (6, 262912),
    "block_fair": (6, 262912), "block_fused": (6, 262912),
}
OFFICIAL_SHAPES = {
    "encoder_f.block1.rep.0.conv1.weight": (64, 1, 3, 3),
    "encoder_f.block1.rep.3.pointwise.weight": (128, 128, 1, 1),
    "encoder_f.block4.rep.8.weight": (728,),
    "encoder_f.block12.rep.4.pointwise.weight": (1024, 728, 1, 1),
    "encoder_f.block12.rep.5.running_var": (1024,),
    "encoder_f.conv3.conv1.weight": (1024, 1, 3, 3),
    "encoder_f.adjust_channel.0.weight": (512, 2048, 1, 1),
    "encoder_f.last_linear.weight": (2, 2048),
    "con_gan.dconv_up3.0.weight": (256, 512, 3, 3),
    "con_gan.conv_last.weight": (3, 64, 1, 1),
    "head_spe.mlp.0.weight": (512, 256),
    "head_fair.mlp.2.weight": (8, 512),
    "block_fused.conv2d.4.weight": (256, 256, 1, 1),
}


class _Opaque:
    """A custom class: a pickle holding it cannot load with weights_only=True."""


def _calibrated(model: PGFDD, x: torch.Tensor) -> PGFDD:
    """Give BN running stats from one batch so the random network's scores depend on the input."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x, inference=True)
    return model.eval()


def _x(n: int) -> torch.Tensor:
    return torch.rand(n, 3, 256, 256, generator=torch.Generator().manual_seed(7)) * 2 - 1


@pytest.fixture(scope="module")
def official_pth(tmp_path_factory):
    """An official-layout Xception PG-FDD state_dict saved with torch.save, and the model it came from."""
    torch.manual_seed(0)
    model = _calibrated(PGFDD(ModelConfig(backbone="xception")), _x(2))
    path = tmp_path_factory.mktemp("official") / "ff++_fair.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_layout_matches_the_official_network(official_pth):
    _, model = official_pth
    state = model.state_dict()
    layout = collections.OrderedDict()
    for k, v in state.items():
        n, e = layout.get(k.split(".")[0], (0, 0))
        layout[k.split(".")[0]] = (n + 1, e + v.numel())
    assert dict(layout) == OFFICIAL_LAYOUT
    assert len(state) == 903
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(state[key].shape) == shape, key


def test_import_full_and_deploy_score_identically(official_pth, tmp_path):
    pth, source = official_pth
    full_path = import_official(pth, tmp_path / "full.safetensors")
    dep_path = import_official(pth, tmp_path / "dep.safetensors", deploy=True, threshold=0.42)
    full, cfg, info = load_checkpoint(full_path, deploy=False)
    assert cfg.backbone == "xception" and info["kind"] == "full"
    assert info["provenance"]["imported_from"] == "ff++_fair.pth"
    assert len(info["provenance"]["source_sha256"]) == 64
    for k, v in source.state_dict().items():  # every tensor made it across, unchanged
        assert torch.equal(full.state_dict()[k], v), k
    dep, _, dinfo = load_checkpoint(dep_path)
    assert isinstance(dep, PGFDDDeploy) and dinfo["kind"] == "deploy" and dinfo["threshold"] == pytest.approx(0.42)
    x = _x(2)
    with torch.no_grad():
        ref = torch.softmax(source(x, inference=True)["cls_fused"], 1)[:, 1]
        p_full = full(x, inference=True)["prob"]
        p_dep = dep(x)
    torch.testing.assert_close(p_full, ref, rtol=0, atol=0)
    torch.testing.assert_close(p_dep, ref, rtol=1e-5, atol=1e-6)
    assert dep_path.stat().st_size < full_path.stat().st_size


def test_head_sizes_are_read_from_the_file(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="efficientnet_lite0", num_spe=5, num_fair=4,
                      method_names=["real", "a", "b", "c", "d"], group_names=list("wxyz"))
    pth = tmp_path / "variant.pth"
    torch.save(PGFDD(cfg).state_dict(), pth)
    out = import_official(pth, tmp_path / "variant.safetensors", deploy=True)
    meta_cfg = ModelConfig.from_dict(__import__("json").loads(read_metadata(out)["config"]))
    assert (meta_cfg.backbone, meta_cfg.num_spe, meta_cfg.num_fair, meta_cfg.num_fused) == (
        "efficientnet_lite0", 5, 4, 2)


def test_renamed_key_is_named(tmp_path):
    torch.manual_seed(0)
    state = PGFDD(ModelConfig()).state_dict()
    state["head_fused.mlp.3.weight"] = state.pop("head_fused.mlp.2.weight")
    pth = tmp_path / "renamed.pth"
    torch.save(state, pth)
    with pytest.raises(CheckpointError) as err:
        import_official(pth, tmp_path / "out.safetensors")
    msg = str(err.value)
    assert "missing keys (1): head_fused.mlp.2.weight" in msg
    assert "unexpected keys (1): head_fused.mlp.3.weight" in msg
    assert not (tmp_path / "out.safetensors").exists()


def test_wrong_backbone_and_bad_files(tmp_path):
    torch.manual_seed(0)
    pth = tmp_path / "lite.pth"
    torch.save(PGFDD(ModelConfig()).state_dict(), pth)
    with pytest.raises(CheckpointError, match="efficientnet_lite0 PG-FDD, not xception"):
        import_official(pth, tmp_path / "o.safetensors", ModelConfig(backbone="xception"))

    pickled = tmp_path / "code.pth"
    torch.save({"opt": _Opaque()}, pickled)  # unpickling it would run arbitrary code: refused
    with pytest.raises(CheckpointError, match="weights-only loader refused") as err:
        import_official(pickled, tmp_path / "o.safetensors")
    assert "weights_only=False" not in str(err.value)  # never advise unpickling
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="not a tensors-only PyTorch state_dict"):
        import_official(junk, tmp_path / "o.safetensors")
    foreign = tmp_path / "foreign.pth"  # another model's weights: hundreds of keys missing, a few named
    torch.save({f"layer{i}.weight": torch.zeros(1) for i in range(300)}, foreign)
    with pytest.raises(CheckpointError) as err:
        import_official(foreign, tmp_path / "o.safetensors", ModelConfig())
    assert "unexpected keys (300): " in str(err.value) and len(str(err.value)) < 1000
    with pytest.raises(CheckpointError, match="not found"):
        import_official(tmp_path / "missing.pth", tmp_path / "o.safetensors")


def test_cli_import_checkpoint(tmp_path):
    from dfscan.scanner.cli import app

    torch.manual_seed(0)
    pth = tmp_path / "lite.pth"
    torch.save(PGFDD(ModelConfig()).state_dict(), pth)
    runner = CliRunner()
    out = tmp_path / "m.safetensors"
    res = runner.invoke(app, ["import-checkpoint", str(pth), "--out", str(out), "--deploy"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "deploy" in res.output
    _, _, info = load_checkpoint(out)
    assert info["kind"] == "deploy"

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    res = runner.invoke(app, ["import-checkpoint", str(bad), "--out", str(tmp_path / "x.safetensors")])
    assert res.exit_code == 2
    assert "Traceback" not in res.output

    res = runner.invoke(app, ["import-checkpoint", "--help"])
    assert res.exit_code == 0 and "Example" in res.output
