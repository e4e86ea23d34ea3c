"""Quality curriculum (ratings, pacing, weighted balanced batches, frequency mix) and synthetic
group balance (counts before/after), alone and in short training runs."""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfscan.core.errors import InputError
from dfscan.train.balance import balance_groups, cell_counts
from dfscan.train.checkpoint import load_checkpoint
from dfscan.train.curriculum import (
    QualityBatchSampler,
    QualityCurriculum,
    augment_probability,
    combine_ratings,
    expected_rating,
    pacing_kappa,
    percentile_rank,
    static_scores,
)
from dfscan.train.data import BalancedBatchSampler, FaceDataset, read_manifest
from dfscan.train.loop import train
from dfscan.train.sbi import amplitude_mix
from tests.helpers import face_like, make_crops, read_rows, train_options, write_csv

# ---------------------------------------------------------------- ratings


def test_percentile_rank_and_the_static_dynamic_combination():
    r = percentile_rank(np.array([3.0, np.nan, 1.0, 2.0, 2.0]))
    assert np.isnan(r[1]) and r[[2, 0]].tolist() == [0.0, 1.0] and r[3] == r[4] == pytest.approx(0.5)
    assert percentile_rank(np.array([7.0, np.nan]))[0] == 0.5  # one value: the middle
    static = np.array([0.0, 1.0, 0.5, np.nan, np.nan])
    loss = np.array([0.3, 0.1, np.nan, 0.2, np.nan])  # ranks 1, 0, -, 0.5, -
    q = combine_ratings(static, loss, 0.25)
    assert q[0] == pytest.approx(0.75 * 0.0 + 0.25 * 1.0) and q[1] == pytest.approx(0.75)
    assert q[2] == 0.5 and q[3] == 0.5 and q[4] == 0.5  # static alone, dynamic alone, neither
    assert combine_ratings(static, loss, 0.0)[:2].tolist() == [0.0, 1.0]
    assert combine_ratings(static, loss, 1.0)[:2].tolist() == [1.0, 0.0]


def _write(path: Path, img: np.ndarray) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path.name


def test_static_score_ranks_fakes_by_closeness_to_their_source_real(tmp_path):
    """Fakes further from their source real (colour cast + blur growing) rate lower; a fake whose
    source is not in the manifest is compared with the mean real and still rated."""
    rng = np.random.default_rng(0)
    real, _ = face_like(rng)
    other, _ = face_like(rng)
    rows = [[_write(tmp_path / "real.png", real), "real", "v1"], [_write(tmp_path / "other.png", other), "real", "v2"]]
    for k, amount in enumerate([3, 12, 30, 60]):  # increasingly poor forgeries of real.png
        fake = cv2.GaussianBlur(real, (0, 0), 0.3 + amount / 20).astype(np.int16) + np.array([amount, 0, -amount // 2])
        rows.append([_write(tmp_path / f"fake{k}.png", np.clip(fake, 0, 255).astype(np.uint8)), "fake", "v1"])
    rows.append([_write(tmp_path / "orphan.png", real), "fake", "gone"])
    m = read_manifest(write_csv(tmp_path / "m.csv", ["path", "label", "source"], rows))
    s = static_scores(m)
    assert np.isnan(s[:2]).all()  # reals have none
    assert list(s[2:6]) == sorted(s[2:6], reverse=True) and s[2] > s[5]
    assert np.isfinite(s[6])


def test_pacing_moves_from_easy_to_realistic_fakes_monotonically():
    assert pacing_kappa(0.0, -3, 3) == -3 and pacing_kappa(1.0, -3, 3) == 3 and pacing_kappa(0.5, -3, 3) == 0
    assert pacing_kappa(2.0, -3, 3) == 3  # past the end: stays
    q = np.linspace(0, 1, 50) ** 2  # skewed ratings: uniform mean is not 0.5
    means = [expected_rating(q, pacing_kappa(t, -4, 4)) for t in np.linspace(0, 1, 21)]
    assert means[0] < q.mean() - 0.1 and means[-1] > q.mean() + 0.1
    assert means[10] == pytest.approx(q.mean())  # kappa 0 is uniform
    assert all(a < b for a, b in zip(means, means[1:]))
    p = augment_probability(np.array([0.0, 0.25, 0.5, 0.9]), 0.6)
    assert p.tolist() == pytest.approx([0.6, 0.3, 0.0, 0.0])  # only the low-quality half is mixed


def test_curriculum_refreshes_dynamic_scores_from_training_losses(tmp_path):
    m = read_manifest(make_crops(tmp_path / "d", 8, seed=0))
    fakes = np.flatnonzero(m.labels == 1)
    cur = QualityCurriculum(m, epochs=3, steps_per_epoch=4, dynamic_weight=1.0,
                            static=np.where(m.labels == 1, np.linspace(0, 1, 8), np.nan))
    before = cur.ratings.copy()
    assert before[m.labels == 0].tolist() == [0.5] * 4
    # two fakes seen (one twice: the mean counts), a real and a pseudo-fake index ignored
    cur.observe(np.array([fakes[0], fakes[0], fakes[1], 0, 100]), np.array([2.0, 4.0, 1.0, 9.0, 9.0]))
    cur.end_epoch()
    assert cur.dynamic[fakes[0]] == 3.0 and cur.dynamic[fakes[1]] == 1.0 and np.isnan(cur.dynamic[0])
    assert cur.ratings[fakes[0]] == 1.0 and cur.ratings[fakes[1]] == 0.0  # by loss, the hard one is realistic
    assert cur.ratings[fakes[2]] == before[fakes[2]]  # never seen: its static score alone
    cur.observe(np.array([fakes[1]]), np.array([5.0]))
    cur.end_epoch()  # refreshed: fakes[1] now the hardest; fakes[0] unseen keeps its last loss
    assert cur.dynamic[fakes[1]] == 5.0 and cur.dynamic[fakes[0]] == 3.0 and cur.ratings[fakes[1]] == 1.0
    w_first, w_last = cur(1, 0), cur(3, 3)  # kappa -3 and +3
    assert w_last[fakes[1]] > w_last[fakes[2]] and w_first[fakes[1]] < w_first[fakes[2]]
    cur.save(tmp_path / "q.safetensors")
    again = QualityCurriculum(m, epochs=3, steps_per_epoch=4, dynamic_weight=1.0, static=cur.static)
    again.load(tmp_path / "q.safetensors")
    np.testing.assert_array_equal(again.ratings, cur.ratings)


def test_weighted_fakes_keep_label_and_group_balance_and_follow_the_weights():
    labels = np.array([0, 1] * 40)
    groups = ["a" if i < 60 else "b" for i in range(80)]  # fakes: 30 in a, 10 in b
    favoured = 1  # a fake of group a
    weights = np.ones(80)
    weights[favoured] = 50.0

    def batches(seed: int) -> list[list]:
        s = BalancedBatchSampler(labels, 20, seed=seed, groups=groups, fake_weights=lambda e, k: weights)
        s.set_epoch(1)
        return list(s)

    got = batches(0)
    assert got == batches(0) and got != batches(1)  # seeded: the same batches again
    fakes = [k for b in got for k, _ in b[10:]]
    assert all(labels[k] == 0 for b in got for k, _ in b[:10]) and all(labels[k] == 1 for k in fakes)
    by_group = [sum(groups[k] == g for k in fakes) for g in "ab"]
    assert by_group[0] == by_group[1]  # group balance as without weights
    share = fakes.count(favoured) / by_group[0]
    assert share > 0.4  # 50 / (50 + 29) of group a's draws expected, 1/30 unweighted


def test_quality_sampler_mixes_only_low_quality_fakes_with_their_source_reals(tmp_path):
    m = read_manifest(make_crops(tmp_path / "d", 16, seed=0))
    fakes = np.flatnonzero(m.labels == 1)
    static = np.full(16, np.nan)
    static[fakes] = np.where(np.arange(fakes.size) < 4, 0.0, 1.0)  # first four fakes: lowest quality
    cur = QualityCurriculum(m, epochs=1, steps_per_epoch=4, aug=1.0, static=static)
    base = BalancedBatchSampler(m.labels, 8, seed=0, fake_weights=cur)
    qs = QualityBatchSampler(base, cur)
    qs.set_epoch(1)
    out = list(qs)
    assert [[k[:2] for k in b] for b in out] == [[k[:2] for k in b] for b in base]  # same underlying batches
    mixed = [k for b in out for k in b if len(k) == 3]
    assert mixed and all(k[0] in fakes[:4] for k in mixed)  # q = 0: probability 1; q = 1: never
    for idx, _, ref in mixed:  # the reference is a real of the same source video
        assert m.samples[ref].label == 0 and m.samples[ref].source == m.samples[idx].source
    ds = FaceDataset(m, group_names=m.group_names, method_names=m.method_names, size=64)
    plain, *_ = ds.image(mixed[0][:2])
    mixed_img, label, *_ = ds.image(mixed[0])
    assert label == 1 and not np.array_equal(plain, mixed_img)


def test_amplitude_mix_takes_the_reals_low_frequencies_and_keeps_the_fakes_structure():
    rng = np.random.default_rng(0)
    fake = np.zeros((64, 64, 3), np.uint8)
    fake[:, :32] = (200, 60, 60)  # a sharp edge: phase structure
    fake[:, 32:] = (120, 60, 60)
    real = np.full((64, 64, 3), (90, 140, 170), np.uint8)
    out = amplitude_mix(fake, real, rng, band=(0.02, 0.02), ratio=(1.0, 1.0))
    # DC amplitude from the real: the mean colour moves to the real's (clipping aside)
    assert np.abs(out.reshape(-1, 3).mean(0) - real.reshape(-1, 3).mean(0)).max() < 12
    assert np.abs(out.reshape(-1, 3).mean(0) - fake.reshape(-1, 3).mean(0)).max() > 50
    grey = out.astype(float).mean(2)
    assert abs(grey[:, 33:40].mean() - grey[:, 24:31].mean()) > 5  # the edge is still there
    with pytest.raises(ValueError):
        amplitude_mix(fake, real[:32], rng)


# ---------------------------------------------------------------- synthetic group balance


def test_balance_counts_before_and_after(tmp_path):
    m = read_manifest(make_crops(tmp_path / "d", 24, seed=0))  # groups from gender x race attributes
    before = cell_counts(m.samples, m.group_names)
    assert before == {"female|asian": {"real": 4, "fake": 4}, "female|white": {"real": 4, "fake": 4},
                      "male|asian": {"real": 2, "fake": 2}, "male|white": {"real": 2, "fake": 2}}
    bal, rep = balance_groups(m, seed=0)
    assert rep.target == 4 and rep.before == before
    assert all(c == {"real": 4, "fake": 4} for c in rep.after.values())
    assert rep.after == cell_counts(bal.samples, m.group_names)
    assert rep.added == {"sbi_fakes": 4, "augmented_reals": 4} and len(bal.samples) == 32
    assert bal.samples[:24] == m.samples and "sbi" in bal.method_names
    for s in bal.samples[24:]:  # made from a real of the same group
        origin = next(o for o in m.samples if o.path == s.path)
        assert origin.label == 0 and origin.group == s.group and s.synthetic in ("sbi", "augment")
    big, rep6 = balance_groups(m, target=6, seed=0)
    assert all(c == {"real": 6, "fake": 6} for c in rep6.after.values()) and len(big.samples) == 48
    # each of a group's reals is used once before any twice
    made = [s.path for s in big.samples[24:] if s.group == "male|white" and s.synthetic == "sbi"]
    assert len(made) == 4 and len(set(made)) == 2 and all(made.count(p) == 2 for p in set(made))
    assert balance_groups(m, seed=0)[0].samples == bal.samples  # seeded


def test_balance_reports_groups_without_reals_and_needs_groups(tmp_path):
    rows = [["a.png", "real", "g1"], ["b.png", "fake", "g1"], ["c.png", "fake", "g1"], ["d.png", "fake", "g2"]]
    m = read_manifest(write_csv(tmp_path / "m.csv", ["path", "label", "group"], rows), check_files=False)
    bal, rep = balance_groups(m)
    assert rep.target == 2 and rep.unfillable == ["g2"]
    assert rep.after == {"g1": {"real": 2, "fake": 2}, "g2": {"real": 0, "fake": 1}}
    assert any("no real rows" in ln for ln in rep.lines())
    plain = read_manifest(write_csv(tmp_path / "p.csv", ["path", "label"], [r[:2] for r in rows]), check_files=False)
    with pytest.raises(InputError, match="needs demographic groups"):
        balance_groups(plain)


def test_synthetic_rows_are_made_at_each_draw(tmp_path):
    m = read_manifest(make_crops(tmp_path / "d", 24, seed=0))
    bal, _ = balance_groups(m, seed=0)
    ds = FaceDataset(bal, group_names=bal.group_names, method_names=bal.method_names, size=64)
    sbi_row = next(i for i, s in enumerate(bal.samples) if s.synthetic == "sbi")
    aug_row = next(i for i, s in enumerate(bal.samples) if s.synthetic == "augment")
    origin = next(i for i, s in enumerate(m.samples) if s.path == bal.samples[aug_row].path)
    img, label, group, method = ds.image((sbi_row, 1))
    assert label == 1 and bal.method_names[method] == "sbi" and bal.group_names[group] == bal.samples[sbi_row].group
    assert not np.array_equal(img, ds.image((sbi_row, 2))[0])  # another pseudo-fake per draw
    real_img, real_label, *_ = ds.image((aug_row, 1))
    assert real_label == 0 and not np.array_equal(real_img, ds.image((origin, 1))[0])  # augmented, never a plain copy


# ---------------------------------------------------------------- in training


_opts = partial(train_options, batch_size=4)


def test_both_options_end_to_end_with_sam_writes_ratings_and_counts(crop_sets, tmp_path):
    lines: list[str] = []
    out = tmp_path / "run"
    best = train(_opts(crop_sets, out, curriculum="quality", balance_groups="synthetic", balance_target=5),
                 progress=False, log=lines.append)
    q = read_rows(out / "quality.csv")
    assert {r["epoch"] for r in q} == {"1", "2"}
    first = [r for r in q if r["epoch"] == "1"]
    assert len(first) == 12 + 8  # the 12 manifest fakes + 8 synthetic pseudo-fakes (4 groups x up to 5)
    assert all(r["dynamic_loss"] == "" for r in first)  # nothing trained yet: static only
    assert any(r["dynamic_loss"] for r in q if r["epoch"] == "2")  # refreshed from epoch 1's steps
    assert all(r["static"] for r in first if not r["synthetic"]) and all(not r["static"] for r in first if r["synthetic"])
    bal = json.loads((out / "balance.json").read_text())
    assert bal["target"] == 5 and all(c == {"real": 5, "fake": 5} for c in bal["after"].values())
    _, cfg, info = load_checkpoint(best, deploy=False)
    prov = info["provenance"]
    assert prov["balance"]["before"]["male|white"] == {"real": 2, "fake": 2} and prov["sam"] is True
    assert prov["curriculum"]["pacing_start"] == -3.0 and prov["train_counts"]["rows"] == 24
    assert "sbi" in cfg.method_names
    assert any("quality curriculum" in ln and "kappa -3.00" in ln for ln in lines)
    assert any(ln.startswith("group balance (target 5") for ln in lines)
    assert (out / "last_quality.safetensors").is_file()


class _Killed(Exception):
    pass


def _kill_after_epoch_1(line: str) -> None:
    if line.startswith("epoch 1: AUC by method"):  # logged after the epoch's state is saved
        raise _Killed


def test_resume_with_both_options_matches_an_uninterrupted_run(crop_sets, tmp_path):
    """A run of 2 epochs killed after epoch 1 and resumed equals the uninterrupted run: the same
    batches (the pacing is a function of the step of the whole --epochs budget, and the dynamic
    scores come back from last_quality.safetensors), so the same weights and ratings."""
    kw = dict(epochs=2, max_steps_per_epoch=3, no_sam=True, augment=False, curriculum="quality",
              balance_groups="synthetic", quality_aug=1.0)
    train(_opts(crop_sets, tmp_path / "a", **kw), progress=False)
    with pytest.raises(_Killed):
        train(_opts(crop_sets, tmp_path / "b", **kw), progress=False, log=_kill_after_epoch_1)
    train(_opts(crop_sets, tmp_path / "b", resume=True, **kw), progress=False)
    a = load_checkpoint(tmp_path / "a" / "last.safetensors", deploy=False)[0].state_dict()
    b = load_checkpoint(tmp_path / "b" / "last.safetensors", deploy=False)[0].state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    assert read_rows(tmp_path / "a" / "quality.csv") == read_rows(tmp_path / "b" / "quality.csv")
    # resuming a plain run with the curriculum switched on is refused, not silently restarted
    train(_opts(crop_sets, tmp_path / "c", epochs=1, max_steps_per_epoch=1, no_sam=True), progress=False)
    with pytest.raises(InputError, match="without --curriculum quality"):
        train(_opts(crop_sets, tmp_path / "c", epochs=2, max_steps_per_epoch=1, no_sam=True, resume=True,
                    curriculum="quality"), progress=False)


def test_curriculum_changes_which_fakes_are_drawn(crop_sets, tmp_path):
    """Same seed, same budget: the curriculum draws other fakes than the plain sampler (it acts)."""
    m = read_manifest(crop_sets[0])
    plain = BalancedBatchSampler(m.labels, 4, seed=0, max_steps=6)
    plain.set_epoch(1)
    cur = QualityCurriculum(m, epochs=1, steps_per_epoch=6)
    paced = BalancedBatchSampler(m.labels, 4, seed=0, max_steps=6, fake_weights=cur)
    paced.set_epoch(1)
    assert [k for b in plain for k, _ in b[2:]] != [k for b in paced for k, _ in b[2:]]


def test_bad_research_options(crop_sets, tmp_path):
    with pytest.raises(InputError, match="--curriculum must be one of none, quality"):
        train(_opts(crop_sets, tmp_path / "r", curriculum="loss"), progress=False)
    with pytest.raises(InputError, match="--balance-groups must be one of none, synthetic"):
        train(_opts(crop_sets, tmp_path / "r", balance_groups="oversample"), progress=False)
    with pytest.raises(InputError, match="--balance-target"):
        train(_opts(crop_sets, tmp_path / "r", balance_groups="synthetic", balance_target=0), progress=False)
    with pytest.raises(InputError, match="--quality-aug"):
        train(_opts(crop_sets, tmp_path / "r", curriculum="quality", quality_aug=1.5), progress=False)
    assert not (tmp_path / "r").exists()


def test_cli_passes_the_research_options(tmp_path):
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    tr = make_crops(tmp_path / "train", 12, seed=2)
    va = make_crops(tmp_path / "val", 4, seed=3)
    out = tmp_path / "run"
    args = ["train", "--train", str(tr), "--val", str(va), "--out", str(out), "--epochs", "1", "--batch-size", "4",
            "--max-steps-per-epoch", "1", "--no-pretrained", "--no-sam", "--input-size", "64", "--workers", "0",
            "--device", "cpu", "--quiet", "--curriculum", "quality", "--pacing-start", "-2", "--pacing-end", "5",
            "--quality-dynamic-weight", "0.3", "--quality-aug", "0.2", "--balance-groups", "synthetic",
            "--keep-epochs", "--balance-target", "3"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    o = load_checkpoint(out / "best.safetensors", deploy=False)[2]["provenance"]["options"]
    assert (o["curriculum"], o["pacing_start"], o["pacing_end"], o["quality_dynamic_weight"], o["quality_aug"],
            o["balance_groups"], o["balance_target"]) == ("quality", -2.0, 5.0, 0.3, 0.2, "synthetic", 3)
    assert o["keep_epochs"] is True and (out / "epoch1.safetensors").is_file()
    r = CliRunner().invoke(app, args[:-1] + ["0"])
    assert r.exit_code == 2


def test_recipe_ablation_runs_four_variants_per_seed_at_one_budget(tmp_path):
    """The ablation's commands differ only in the two options, the seed and the run folder."""
    import subprocess
    import sys

    (tmp_path / "prepare.json").write_text('{"size": 128}')
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "build_detector.py"
    r = subprocess.run([sys.executable, str(recipe), "ablation", "--work", str(tmp_path), "--seeds", "0", "1",
                        "--epochs", "2", "--steps", "50", "--dry-run"], capture_output=True, text=True, check=True)
    cmds = [ln.split() for ln in r.stdout.splitlines()]
    assert len(cmds) == 8
    variants = {c[c.index("--out") + 1].rsplit("/", 1)[-1]: c for c in cmds}
    assert set(variants) == {f"{v}-s{s}" for v in ("plain", "curriculum", "balance", "both") for s in (0, 1)}

    def opt(c: list[str], name: str) -> str | None:
        return c[c.index(name) + 1] if name in c else None

    for name, c in variants.items():
        assert (opt(c, "--epochs"), opt(c, "--max-steps-per-epoch"), opt(c, "--seed")) == ("2", "50", name[-1])
        assert opt(c, "--curriculum") == ("quality" if name.startswith(("curriculum", "both")) else None)
        assert opt(c, "--balance-groups") == ("synthetic" if name.startswith(("balance", "both")) else None)
    strip = {"--out", "--seed", "--curriculum", "--balance-groups", "--pacing-start", "--pacing-end"}

    def budget(c: list[str]) -> list[str]:
        return [t for i, t in enumerate(c) if t not in strip and (i == 0 or c[i - 1] not in strip)]

    assert len({tuple(budget(c)) for c in cmds}) == 1


def test_recipe_ablation_table_reads_each_runs_validation_predictions(tmp_path):
    """The table's AUC, FPR at the shipped threshold and fairness gaps come from each run's
    val_predictions.csv: mean and sample spread over the seeds."""
    import subprocess
    import sys

    from dfscan.core.metrics import binary_metrics

    (tmp_path / "prepare.json").write_text('{"size": 128}')
    rng = np.random.default_rng(0)
    aucs = []
    for seed in (0, 1):
        for variant in ("plain", "curriculum", "balance", "both"):
            folder = tmp_path / "ablation" / f"{variant}-s{seed}"
            folder.mkdir(parents=True)
            (folder / "best.safetensors").write_bytes(b"")  # only its presence marks a finished run
            rows, y, p = [], [], []
            for i in range(80):
                utk = i % 2 == 0
                label = int(i % 4 >= 2)
                prob = float(np.clip(0.3 + 0.4 * label + rng.normal(0, 0.25), 0, 1))
                group = ("female|asian", "male|white")[i % 8 >= 4] if utk else ""
                rows.append([f"x{i}.png", int(utk and label), "sbi" if utk and label else ("real" if not label else "df"),
                             "utkface" if utk else "dfdc", group, label, f"{prob:.6g}"])
                y.append(label)
                p.append(float(f"{prob:.6g}"))
            if variant == "plain":
                aucs.append(binary_metrics(np.array(y), np.array(p))["auc"])
            with open(folder / "val_predictions.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["path", "pseudo_fake", "method", "domain", "group", "label", "p_fake"])
                w.writerows(rows)
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "build_detector.py"
    r = subprocess.run([sys.executable, str(recipe), "ablation-table", "--work", str(tmp_path), "--seeds", "0", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "ablation.json").read_text())
    plain = out["runs"]["plain"]
    assert [run["seed"] for run in plain] == [0, 1]
    assert [run["auc"] for run in plain] == pytest.approx(aucs)
    assert all(run["F_FPR"] >= 0 and 0 <= run["fpr"] <= 1 for runs in out["runs"].values() for run in runs)
    assert f"| plain | 2 | {np.mean(aucs):.4f} ± {np.std(aucs, ddof=1):.4f} |" in r.stdout
