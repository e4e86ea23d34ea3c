"""`dfscan train`: train a PG-FDD detector on manifests of face crops (thin over train.loop.train)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scanner.commands.choices import (Backbone, BalanceGroups, Curriculum, LrSchedule, Optimizer, PseudoFakes,
                                      ThresholdMethod)
from rich.markup import escape

from scanner.console import console, err_console, friendly_errors, reflow

EXAMPLE = """
Examples (real crops only, pseudo-fakes made on the fly; then the recipe that built the shipped model):

    dfscan extract-faces videos/ --out crops/ --manifest crops.csv
    dfscan train --train train.csv --val val.csv --backbone efficientnet_lite0 \\
        --epochs 10 --batch-size 16 --out runs/starter --pseudo-fakes sbi

    python recipes/build_detector.py train --work runs/detector --cosine --lr 1.5e-4

Writes runs/starter/best.safetensors (full), best_deploy.safetensors (use with
`dfscan scan --weights`), last*.safetensors (for --resume), metrics.csv and breakdown.jsonl
(AUC per forgery method and per domain, each epoch); with --curriculum quality also
quality.csv (every fake's ratings per epoch), with --balance-groups synthetic balance.json
(label x group counts before and after); with --keep-epochs epochN.safetensors of every epoch.
"""


@friendly_errors
def train_command(
    train: Path = typer.Option(..., "--train", help="Training manifest CSV (path,label[,group][,method]... or the official PG-FDD CSV)."),
    val: Path = typer.Option(..., "--val", help="Validation manifest CSV (threshold calibration, best-epoch choice)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for checkpoints and metrics.csv."),
    backbone: Backbone = typer.Option(Backbone.efficientnet_lite0, "--backbone", help="efficientnet_lite0 (edge), xception (official PG-FDD) or dinov2_vits14 (self-supervised ViT)."),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Training epochs."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=2, help="Batch size, half real and half fake (even)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    resume: bool = typer.Option(False, "--resume", metavar="", help="Continue the run in --out after its last finished epoch."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from a full checkpoint's weights (fresh optimizer), e.g. a committed training state; --input-size may differ from its own."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling, augmentation and pseudo-fakes."),
    no_sam: bool = typer.Option(False, "--no-sam", metavar="", help="The base optimizer alone, without SAM (half the cost per step)."),
    optimizer: Optimizer = typer.Option(Optimizer.sgd, "--optimizer", help="Base optimizer: sgd (PG-FDD) or adam (fast on a small budget)."),
    lr: float = typer.Option(5e-4, "--lr", help="Learning rate (PG-FDD's SGD: 5e-4; adam: try 3e-4)."),
    lr_schedule: LrSchedule = typer.Option(LrSchedule.constant, "--lr-schedule", help="constant, or cosine: decay from --lr to 1% of it over all epochs' steps."),
    pseudo_fakes: PseudoFakes = typer.Option(PseudoFakes.none, "--pseudo-fakes", help="none, or sbi: self-blended fakes from the real rows."),
    max_steps_per_epoch: Optional[int] = typer.Option(None, "--max-steps-per-epoch", min=1, help="Cap the steps of each epoch."),
    pretrained: bool = typer.Option(True, "--pretrained/--no-pretrained", metavar="", help="Start the backbones from ImageNet weights."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="DataLoader worker processes (default: one per two cores)."),
    input_size: int = typer.Option(256, "--input-size", min=64, help="Crop side the model trains on (multiple of 32); scans crop to it."),
    threshold_method: ThresholdMethod = typer.Option(ThresholdMethod.fpr, "--threshold-method", help="fpr (lowest threshold with FPR <= --target-fpr on validation reals), eer or youden."),
    target_fpr: float = typer.Option(0.05, "--target-fpr", min=0.0, max=0.999, help="The false-positive rate the fpr threshold allows."),
    fairness: bool = typer.Option(True, "--fairness/--no-fairness", metavar="", help="PG-FDD's fairness terms (LDAM demographic head, bi-level CVaR); --no-fairness is the ablation."),
    scale_jitter: float = typer.Option(0.0, "--scale-jitter", min=0.0, max=1.0, help="Probability of a random 0.9-1.2x zoom (for crops cut from tight source crops)."),
    video_aug: float = typer.Option(0.0, "--video-aug", min=0.0, max=1.0, help="Probability of a downscale + H.264 (CRF 23-38) round trip in place of JPEG: reals re-encoded as uploads are must not read fake."),
    fp16_deploy: bool = typer.Option(False, "--fp16-deploy", metavar="", help="Store the deploy checkpoint's weights as float16."),
    keep_epochs: bool = typer.Option(False, "--keep-epochs", metavar="", help="Also keep every epoch's full weights (epochN.safetensors), e.g. to weight-average the last epochs."),
    curriculum: Curriculum = typer.Option(Curriculum.none, "--curriculum", help="none, or quality: rate every fake (closeness to its source real + the model's loss, refreshed each epoch), draw easy fakes first and realistic ones last, frequency-mix the low-quality ones; ratings in quality.csv."),
    pacing_start: float = typer.Option(-3.0, "--pacing-start", help="Curriculum tilt at the first step: fakes drawn with weight exp(k(rating - 0.5)); negative favours easy fakes."),
    pacing_end: float = typer.Option(3.0, "--pacing-end", help="Curriculum tilt at the last step (linear in between); positive favours realistic fakes."),
    quality_dynamic_weight: float = typer.Option(0.5, "--quality-dynamic-weight", min=0.0, max=1.0, help="Share of the model's loss in a fake's rating (the rest: the static score)."),
    quality_aug: float = typer.Option(0.5, "--quality-aug", min=0.0, max=1.0, help="Frequency-mix probability of the lowest-rated fakes (0 from rating 0.5 up)."),
    balance_groups: BalanceGroups = typer.Option(BalanceGroups.none, "--balance-groups", help="none, or synthetic: fill every label x demographic group cell to --balance-target with SBI pseudo-fakes / augmented reals of that group; counts in balance.json."),
    balance_target: Optional[int] = typer.Option(None, "--balance-target", min=1, help="Rows per label x group cell for --balance-groups synthetic (default: the largest cell)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bars or epoch lines."),
) -> None:
    """Train the PG-FDD deepfake detector on face crops, validating and calibrating every epoch."""
    from train.loop import TrainOptions
    from train.loop import train as run_training

    opts = TrainOptions(train=train, val=val, out=out, backbone=backbone.value, epochs=epochs, batch_size=batch_size,
                        device=device, resume=resume, init_from=init_from, seed=seed, no_sam=no_sam,
                        optimizer=optimizer.value, lr=lr, lr_schedule=lr_schedule.value, pseudo_fakes=pseudo_fakes.value,
                        max_steps_per_epoch=max_steps_per_epoch, pretrained=pretrained, num_workers=workers,
                        input_size=input_size, scale_jitter=scale_jitter, video_aug=video_aug, fairness=fairness,
                        threshold_method=threshold_method.value, target_fpr=target_fpr, fp16_deploy=fp16_deploy,
                        keep_epochs=keep_epochs,
                        curriculum=curriculum.value, pacing_start=pacing_start, pacing_end=pacing_end,
                        quality_dynamic_weight=quality_dynamic_weight, quality_aug=quality_aug,
                        balance_groups=balance_groups.value, balance_target=balance_target)
    best = run_training(opts, progress=not quiet, log=None if quiet else (lambda m: console.print(m, soft_wrap=True)),
                        warn=lambda m: err_console.print(f"[yellow]warning:[/] {escape(m)}", soft_wrap=True))
    if not quiet:
        console.print(f"best checkpoint: [bold]{best}[/] (deploy: {best.with_name('best_deploy.safetensors')})")




def register(app: typer.Typer) -> None:
    app.command("train", epilog=reflow(EXAMPLE))(train_command)
