"""Manifests (both dialects, bad input), the dataset, balanced batches, augmentations."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfscan.core.errors import InputError
from dfscan.train.augment import Augment, color_jitter, gaussian_blur, hflip, jpeg
from dfscan.train.data import BalancedBatchSampler, FaceDataset, make_loader, read_manifest, to_tensor, validation_keys
from dfscan.train.images import fit, fit_keypoints
from tests.helpers import face_like, make_crops, write_csv

# ---------------------------------------------------------------- manifests


def test_dfscan_manifest_groups_methods_kp(tmp_path):
    path = make_crops(tmp_path, 12)
    m = read_manifest(path)
    assert m.dialect == "dfscan" and len(m.samples) == 12
    assert m.attributes == ["gender", "race"]  # source/subject/frame/kp are bookkeeping
    s0 = m.samples[0]
    assert s0.path == (tmp_path / "crops/0_000.png").resolve() and s0.path.is_file()
    assert s0.label == 0 and s0.method == "real" and s0.group == "male|asian"
    assert s0.kp.shape == (6, 2) and s0.kp[3, 1] == pytest.approx(float(s0.kp[0, 1]) + 65)
    assert m.samples[1].label == 1 and m.samples[1].method == "fake"
    assert m.group_names == ["female|asian", "female|white", "male|asian", "male|white"]
    # i%3==0 → male; i%4<2 → asian; i in 0..11
    expect = {"male|asian": [0, 9], "male|white": [3, 6], "female|asian": [1, 4, 5, 8], "female|white": [2, 7, 10, 11]}
    assert m.group_counts() == [len(expect[g]) for g in m.group_names]
    assert m.method_names == ["real", "fake"]
    assert m.counts() == {"rows": 12, "real": 6, "fake": 6}
    assert len(m.sha256) == 64


def test_group_and_method_columns_and_numeric_labels(tmp_path):
    make_crops(tmp_path, 4, name="base.csv")
    path = write_csv(tmp_path / "m.csv", ["path", "label", "group", "method", "domain"], [
        ["crops/0_000.png", "0", "g1", "", "ff"],
        ["crops/0_001.png", "1", "g2", "faceswap", "ff"],
        ["crops/0_002.png", "1", "", "deepfakes", "celebdf"],
        ["crops/0_003.png", "0", "g1", "", "ff"],
    ])
    m = read_manifest(path)
    assert [s.label for s in m.samples] == [0, 1, 1, 0]
    assert [s.group for s in m.samples] == ["g1", "g2", None, "g1"]
    assert m.group_names == ["g1", "g2"] and m.group_counts() == [2, 1]
    assert m.method_names == ["real", "deepfakes", "faceswap"]
    assert m.samples[2].domain == "celebdf"


def test_no_groups_is_one_group(tmp_path):
    make_crops(tmp_path, 4, name="base.csv")
    path = write_csv(tmp_path / "m.csv", ["path", "label"], [[f"crops/0_00{i}.png", "real"] for i in range(4)])
    m = read_manifest(path)
    assert not m.has_groups and m.group_names == ["all"] and m.group_counts() == [4]


def test_official_csv(tmp_path):
    make_crops(tmp_path, 4, name="base.csv")
    absolute = str((tmp_path / "crops/0_003.png").resolve())
    path = write_csv(tmp_path / "official.csv",
                     ["img_path", "label", "ismale", "isasian", "iswhite", "isblack", "intersec_label", "spe_label"], [
                         ["crops/0_000.png", "0", "1", "1", "0", "0", "0", "0"],
                         ["crops/0_001.png", "1", "0", "0", "1", "0", "5", "3"],
                         ["crops/0_002.png", "1", "1", "0", "0", "1", "2", "1"],
                         [absolute, "0", "0", "0", "0", "0", "7", "0"],
                     ])
    m = read_manifest(path)
    assert m.dialect == "official" and len(m.group_names) == 8
    assert [s.group for s in m.samples] == ["male|asian", "female|white", "male|black", "female|other"]
    assert [s.method for s in m.samples] == ["real", "fake_3", "fake_1", "real"]
    assert m.samples[3].path == Path(absolute)
    assert m.group_counts() == [1, 0, 1, 0, 0, 1, 0, 1]
    assert m.method_names == ["real", "fake_1", "fake_3"]


def test_missing_columns(tmp_path):
    p = write_csv(tmp_path / "m.csv", ["file", "label"], [["a.png", "real"]])
    with pytest.raises(InputError, match="missing column.*path"):
        read_manifest(p)
    p = write_csv(tmp_path / "o.csv", ["img_path", "label", "ismale"], [["a.png", "0", "1"]])
    with pytest.raises(InputError, match="missing column.*isasian.*intersec_label"):
        read_manifest(p)
    p = write_csv(tmp_path / "e.csv", ["path", "label"], [])
    with pytest.raises(InputError, match="no rows"):
        read_manifest(p)


def test_unknown_labels_name_rows(tmp_path):
    make_crops(tmp_path, 4, name="base.csv")
    p = write_csv(tmp_path / "m.csv", ["path", "label"], [
        ["crops/0_000.png", "real"], ["crops/0_001.png", "deepfake"], ["crops/0_002.png", "FAKE"],
        ["crops/0_003.png", "2"]])
    with pytest.raises(InputError, match=r"row\(s\) 2, 4 \(first: 'deepfake'\)") as e:
        read_manifest(p)
    assert "\n" not in str(e.value)


def test_missing_files_name_rows_and_count(tmp_path):
    make_crops(tmp_path, 2, name="base.csv")
    rows = [["crops/0_000.png", "real"]] + [[f"crops/gone_{i}.png", "fake"] for i in range(8)]
    p = write_csv(tmp_path / "m.csv", ["path", "label"], rows)
    with pytest.raises(InputError, match=r"8 image file\(s\) not found, row\(s\) 2, 3, 4, 5, 6 and 3 more") as e:
        read_manifest(p)
    assert "gone_0.png" in str(e.value) and "\n" not in str(e.value)


def test_bad_kp(tmp_path):
    make_crops(tmp_path, 1, name="base.csv")
    p = write_csv(tmp_path / "m.csv", ["path", "label", "kp"], [["crops/0_000.png", "real", "1 2 3"]])
    with pytest.raises(InputError, match="row 1: kp must be 12 numbers"):
        read_manifest(p)


def test_missing_manifest_through_cli_exit_2(tmp_path):
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    make_crops(tmp_path, 2, name="base.csv")
    bad = write_csv(tmp_path / "bad.csv", ["path", "label"], [["crops/0_000.png", "maybe"]])
    r = CliRunner().invoke(app, ["train", "--train", str(bad), "--val", str(bad), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    assert "unknown label" in r.output and "row(s) 1" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["train", "--train", str(tmp_path / "nope.csv"), "--val", str(bad),
                                 "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "manifest not found" in r.output
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- dataset and batches


def test_dataset_items_and_sbi_items(tmp_path):
    m = read_manifest(make_crops(tmp_path, 6))
    ds = FaceDataset(m, group_names=m.group_names, method_names=m.method_names + ["sbi"])
    item = ds[(0, 5)]
    x = item["image"]
    assert x.shape == (3, 256, 256) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    raw = cv2.cvtColor(cv2.imread(str(m.samples[0].path)), cv2.COLOR_BGR2RGB)
    torch.testing.assert_close(x, to_tensor(raw, (0.5,) * 3, (0.5,) * 3))  # no augmentation: the crop itself
    assert item["label"] == 0 and item["method"] == 0 and item["group"] == m.group_names.index("male|asian")
    fake = ds[(6 + 0, 5)]  # pseudo-fake of row 0
    assert fake["label"] == 1 and fake["method"] == 2 and fake["group"] == item["group"]
    assert not torch.equal(fake["image"], x)
    torch.testing.assert_close(ds[(6, 5)]["image"], fake["image"])  # same key, same fake
    assert not torch.equal(ds[(6, 6)]["image"], fake["image"])


@pytest.mark.parametrize("file_size,input_size", [(256, 64), (128, 128), (128, 64), (128, 256)])
def test_pseudo_fakes_blend_where_the_face_is_at_any_crop_and_input_size(tmp_path, file_size, input_size):
    """`kp` is in the crop file's pixels: the blend must follow the face whatever the file's size
    and the model's input size (a 128-px crop once had its mask put in its top-left quarter)."""
    img, kp = face_like(np.random.default_rng(3))
    kp = np.asarray(kp, np.float64).reshape(6, 2) * (file_size / img.shape[0]) + [0.2 * file_size, 0.15 * file_size]
    shifted = np.roll(img, (int(0.15 * img.shape[0]), int(0.2 * img.shape[0])), axis=(0, 1))  # face off centre
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(cv2.resize(shifted, (file_size, file_size)), cv2.COLOR_RGB2BGR))
    (tmp_path / "m.csv").write_text("path,label,kp\na.png,real," + " ".join(f"{v:.2f}" for v in kp.ravel()) + "\n")
    m = read_manifest(tmp_path / "m.csv")
    ds = FaceDataset(m, group_names=m.group_names, method_names=["real", "sbi"], size=input_size)
    real = ds.image((0, 0))[0].astype(float)
    face = kp.mean(axis=0) * (input_size / file_size)
    for seed in range(6):
        diff = np.abs(ds.image((1, seed))[0].astype(float) - real).sum(axis=2)
        ys, xs = np.indices(diff.shape)
        centre = np.array([(xs * diff).sum(), (ys * diff).sum()]) / diff.sum()
        assert np.linalg.norm(centre - face) < 0.12 * input_size, (seed, centre, face)


def test_augmented_dataset_is_seeded(tmp_path):
    m = read_manifest(make_crops(tmp_path, 2))
    ds = FaceDataset(m, group_names=m.group_names, method_names=m.method_names,
                     augment=Augment(p_flip=1.0, p_color=1.0, p_blur=1.0, p_jpeg=1.0))
    a, b, c = ds[(0, 1)]["image"], ds[(0, 1)]["image"], ds[(0, 2)]["image"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_balanced_sampler_layout_and_epochs():
    labels = np.array([0] * 10 + [1] * 4)
    s = BalancedBatchSampler(labels, 4, seed=3)
    assert len(s) == 5  # the larger class (10 reals) once, 2 per batch
    batches = list(s)
    for b in batches:
        idx = [k for k, _ in b]
        assert [labels[i] for i in idx] == [0, 0, 1, 1]
    reals = [k for b in batches for k, _ in b[:2]]
    assert sorted(reals) == list(range(10))  # each real once per epoch
    assert batches == list(s)  # same epoch, same batches
    s.set_epoch(1)
    assert batches != list(s)
    assert len(BalancedBatchSampler(labels, 4, max_steps=2)) == 2


def test_balanced_sampler_sbi_pairs_and_mix():
    labels = np.array([0] * 8)
    s = BalancedBatchSampler(labels, 6, sbi=True)
    for b in s:
        idx = [k for k, _ in b]
        assert idx[3:] == [8 + i for i in idx[:3]]  # each real beside its own pseudo-fake
    labels = np.array([0] * 40 + [1] * 40)
    keys = [k for b in BalancedBatchSampler(labels, 8, sbi=True) for k, _ in b[4:]]
    n_sbi = sum(k >= 80 for k in keys)
    assert 0 < n_sbi < len(keys)  # mixed with the manifest's fakes
    assert all(labels[k] == 1 for k in keys if k < 80)


def test_balanced_sampler_balances_groups_within_each_label():
    """Known groups of a label are drawn equally often however rare; rows without a group
    (e.g. DFDC crops) keep their natural share of the label."""
    labels = np.array([0] * 1000 + [1] * 300)
    groups = ["common"] * 560 + ["rare"] * 40 + [None] * 400 + [None] * 300
    s = BalancedBatchSampler(labels, 32, seed=0, groups=groups)
    reals = [k for b in s for k, _ in b[:16]]
    kinds = [groups[k] for k in reals]
    n = len(kinds)
    assert kinds.count(None) / n == pytest.approx(0.4, abs=0.05)
    assert kinds.count("rare") / n == pytest.approx(0.3, abs=0.05)  # 4 % of the reals, 30 % of the draws
    assert kinds.count("common") / n == pytest.approx(0.3, abs=0.05)
    assert all(labels[k] == 1 for b in s for k, _ in b[16:])
    assert list(s) == list(s)  # reproducible within an epoch
    ungrouped = [k for b in BalancedBatchSampler(labels, 32, seed=0) for k, _ in b[:16]]
    assert sum(groups[k] == "rare" for k in ungrouped) / len(ungrouped) < 0.1


def test_sampler_bad_input():
    with pytest.raises(InputError, match="no fake rows.*--pseudo-fakes sbi"):
        BalancedBatchSampler(np.zeros(4, int), 4)
    with pytest.raises(InputError, match="no real rows"):
        BalancedBatchSampler(np.ones(4, int), 4, sbi=True)
    with pytest.raises(InputError, match="even"):
        BalancedBatchSampler(np.array([0, 1]), 3)


def test_validation_keys_and_worker_loader(tmp_path):
    m = read_manifest(make_crops(tmp_path, 6))
    keys = validation_keys(m, sbi=True, seed=9)
    assert [k for k, _ in keys] == list(range(6)) + [6, 8, 10]  # rows, then one fake per real row
    ds = FaceDataset(m, group_names=m.group_names, method_names=m.method_names + ["sbi"])
    loader = make_loader(ds, keys=keys, batch_size=4, num_workers=1)  # through a worker process
    batches = list(loader)
    assert [len(b["label"]) for b in batches] == [4, 4, 1]
    labels = torch.cat([b["label"] for b in batches]).tolist()
    assert labels == [0, 1, 0, 1, 0, 1, 1, 1, 1]
    again = torch.cat([b["image"] for b in loader])
    torch.testing.assert_close(again, torch.cat([b["image"] for b in batches]))


# ---------------------------------------------------------------- augmentations


def test_augmentations_keep_shape_and_are_seeded():
    img, _ = face_like(np.random.default_rng(0))
    assert np.array_equal(hflip(hflip(img)), img) and not np.array_equal(hflip(img), img)
    for fn in (color_jitter, gaussian_blur, jpeg):
        a = fn(img, np.random.default_rng(1))
        b = fn(img, np.random.default_rng(1))
        assert a.shape == img.shape and a.dtype == np.uint8 and np.array_equal(a, b)
        assert np.abs(a.astype(int) - img).mean() > 0.2, fn.__name__
    low = jpeg(img, np.random.default_rng(0), quality=(20, 20))
    high = jpeg(img, np.random.default_rng(0), quality=(95, 95))
    assert np.abs(low.astype(int) - img).mean() > np.abs(high.astype(int) - img).mean()
    aug = Augment(p_flip=0, p_color=0, p_blur=0, p_jpeg=0)
    assert np.array_equal(aug(img, np.random.default_rng(0)), img)


def test_non_square_crops_are_cut_to_their_centre_square_not_squashed():
    """Training and `dfscan scan --crops` read crops through `fit`: a wide crop loses its sides."""
    img = np.zeros((100, 160, 3), np.uint8)
    img[:, :30] = 255  # a bar that only the squashing reader would keep
    img[48:52, 78:82] = (0, 200, 0)  # a mark at the centre
    out = fit(img, 50)
    assert out.shape == (50, 50, 3) and out[:, :5].max() < 40
    mark = np.argwhere(out[..., 1] > 100).mean(axis=0)[::-1]
    np.testing.assert_allclose(fit_keypoints(np.array([[80.0, 50.0]]), img.shape, 50)[0], mark, atol=1.0)
    from dfscan.scanner.stage import as_crop

    assert np.array_equal(as_crop(img, 50), out)
