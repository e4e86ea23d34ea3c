"""PG-FDD on a frozen trunk: cached maps, the trunk left as pretrained, a checkpoint the scanner loads."""

from __future__ import annotations

import json

import numpy as np
import torch

from dfscan.train.backbones import create_backbone
from dfscan.train.checkpoint import load_checkpoint
from dfscan.train.data import read_manifest
from dfscan.train.frozen import FrozenOptions, build_cache, scores, train_frozen, trainable
from dfscan.train.model import PGFDD


def test_only_projections_and_pgfdd_parts_train():
    assert trainable("encoder_f.adjust_channel.0.weight") and trainable("head_fused.mlp.0.weight")
    assert trainable("con_gan.conv_last.weight") and trainable("block_sha.conv2d.0.bias")
    assert not trainable("encoder_f.blocks.3.conv_dw.weight") and not trainable("encoder_fair.conv_stem.weight")


def test_frozen_run_selects_by_holdout_and_ships_the_pretrained_trunk(crop_sets, tmp_path):
    train_csv, val_csv = crop_sets
    out = tmp_path / "run"
    opts = FrozenOptions(train=train_csv, val=val_csv, out=out, holdout=[val_csv], backbone="efficientnet_lite0",
                         input_size=64, epochs=2, steps=3, batch_size=4, lr=1e-3)
    best = train_frozen(opts, log=lambda _m: None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert best["select"] == max(r[f"holdout_auc:{val_csv.stem}"] for r in rows)  # chosen by the held-out domain
    assert all(0.0 <= r["val_fpr"] <= 0.05 + 1e-9 for r in rows)

    deploy, cfg, info = load_checkpoint(out / "best.safetensors", deploy=True)
    assert cfg.backbone == "efficientnet_lite0" and cfg.input_size == 64
    assert info["threshold"] == best["threshold"]
    pretrained = create_backbone("efficientnet_lite0", pretrained=True).state_dict()
    for k, v in deploy.encoder_f.state_dict().items():
        if not k.startswith("adjust_channel.") and v.is_floating_point():
            torch.testing.assert_close(v, pretrained[k].half().float())  # frozen: stored as it came (fp16)

    # the shipped graph on images gives the scores training read off the cached maps
    cache = build_cache(create_backbone("efficientnet_lite0", pretrained=True), read_manifest(val_csv), cfg,
                        sbi=False, path=out / "cache" / f"{val_csv.stem}.safetensors", log=lambda _m: None)
    full = PGFDD(cfg)
    full.load_state_dict({k: v for k, v in deploy.state_dict().items()}, strict=False)
    from dfscan.train.data import FaceDataset

    ds = FaceDataset(read_manifest(val_csv), group_names=cfg.group_names, method_names=cfg.method_names,
                     size=cfg.input_size)
    x = torch.stack([ds[i]["image"] for i in range(len(ds) // 2)])
    with torch.no_grad():
        p_images = deploy(x).numpy()
    np.testing.assert_allclose(p_images, scores(full, cache), atol=1e-2)  # fp16 weights in the file, maps in the cache
