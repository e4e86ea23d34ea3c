"""Seconds per PG-FDD training step on this machine (synthetic batch, no data loading).

    python recipes/bench_train_step.py --batch-size 8 --steps 3 [--backbone efficientnet_lite0] [--channels-last]

Prints one line per (backbone, SAM on/off): the median of `--steps` timed steps after one
warm-up step. The step is exactly the loop's: PG-FDD forward, full loss, backward, and SGD
(one pass) or SAM (two passes, BN statistics frozen in the second).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dfscan.train.config import ModelConfig
from dfscan.train.losses import PGFDDLoss
from dfscan.train.model import PGFDD
from dfscan.train.sam import DEFAULT_SGD, SAM, bn_stats_frozen


def bench(backbone: str, sam: bool, batch: int, steps: int, channels_last: bool) -> float:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, num_fair=2, group_names=["a", "b"], num_spe=2, method_names=["real", "sbi"])
    model = PGFDD(cfg).train()
    x = torch.rand(batch, 3, 256, 256) * 2 - 1
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.tensor([0] * (batch // 2) + [1] * (batch // 2))
    g = torch.arange(batch) % 2
    loss_fn = PGFDDLoss([batch // 2, batch // 2])
    opt = SAM(model.parameters(), torch.optim.SGD, **DEFAULT_SGD) if sam else torch.optim.SGD(model.parameters(), **DEFAULT_SGD)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss_fn(model(x), y, y, g)["loss"].backward()
        if sam:
            opt.first_step(zero_grad=True)
            with bn_stats_frozen(model):
                loss_fn(model(x), y, y, g)["loss"].backward()
            opt.second_step(zero_grad=True)
        else:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--backbone", action="append", choices=["efficientnet_lite0", "xception"])
    ap.add_argument("--no-sam-only", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch_size}")
    for bb in a.backbone or ["efficientnet_lite0", "xception"]:
        for sam in ([False] if a.no_sam_only else [False, True]):
            s = bench(bb, sam, a.batch_size, a.steps, a.channels_last)
            print(f"{bb:20s} {'SAM' if sam else 'SGD'}  {s:6.2f} s/step  ({a.batch_size / s:.2f} img/s)", flush=True)


if __name__ == "__main__":
    main()
