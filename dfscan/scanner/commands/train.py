"""`dfscan train`: train a PG-FDD detector on manifests of face crops (thin over dfscan.train.loop.train)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from dfscan.scanner.commands.choices import (
    Backbone,
    BalanceGroups,
    Curriculum,
    LrSchedule,
    Optimizer,
    PseudoFakes,
    ThresholdMethod,
)
from dfscan.scanner.console import console, err_console, friendly_errors, reflow

DATA, MODEL, OPTIMISER, RUN = "Data and run folder", "Model and threshold", "Optimisation", "Machine and output"
DATA_AUG, CURRICULUM = "Fakes and augmentation", "Curriculum and group balance (docs/training.md)"

EXAMPLE = """
Examples (real crops only, pseudo-fakes made on the fly; then the recipe that built the shipped model):

    dfscan extract-faces videos/ --out crops/ --manifest crops.csv
    dfscan train --train train.csv --val val.csv --out runs/starter \\
        --backbone efficientnet_lite0 --epochs 10 --batch-size 16 \\
        --pseudo-fakes sbi

    python recipes/build_detector.py train --work runs/detector \\
        --cosine --lr 1.5e-4

Writes runs/starter/best.safetensors (full), best_deploy.safetensors (use with
`dfscan scan --weights`), last*.safetensors (for --resume), metrics.csv and breakdown.jsonl
(AUC per forgery method and per domain, each epoch). Every option at length, with what each
writes: docs/training.md.
"""


@friendly_errors
def train_command(
    train: Path = typer.Option(..., "--train", help="Training manifest CSV (path,label[,group]...; or the official PG-FDD CSV).", rich_help_panel=DATA),
    val: Path = typer.Option(..., "--val", help="Validation manifest CSV: calibrates the threshold, picks the best epoch.", rich_help_panel=DATA),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for checkpoints and metrics.", rich_help_panel=DATA),
    resume: bool = typer.Option(False, "--resume", metavar="", help="Continue the run in --out after its last epoch.", rich_help_panel=DATA),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from a full checkpoint's weights (fresh optimizer).", rich_help_panel=DATA),
    allow_overlap: bool = typer.Option(False, "--allow-overlap", metavar="", help="Train even when validation rows are training images (the same file or bytes).", rich_help_panel=DATA),
    backbone: Backbone = typer.Option(Backbone.efficientnet_lite0, "--backbone", help="Backbone: efficientnet_lite0 (edge), xception (PG-FDD's) or dinov2_vits14.", rich_help_panel=MODEL),
    input_size: int = typer.Option(256, "--input-size", min=64, max=1024, help="Crop side the model trains on (a multiple of 32).", rich_help_panel=MODEL),
    pretrained: bool = typer.Option(True, "--pretrained/--no-pretrained", metavar="", help="Start the backbone from ImageNet weights.", rich_help_panel=MODEL),
    fairness: bool = typer.Option(True, "--fairness/--no-fairness", metavar="", help="PG-FDD's fairness terms (off: the ablation).", rich_help_panel=MODEL),
    threshold_method: ThresholdMethod = typer.Option(ThresholdMethod.fpr, "--threshold-method", help="Threshold: fpr (FPR <= --target-fpr on validation reals), eer or youden.", rich_help_panel=MODEL),
    target_fpr: float = typer.Option(0.05, "--target-fpr", min=0.0, max=0.999, help="The false-positive rate the fpr threshold allows.", rich_help_panel=MODEL),
    fp16_deploy: bool = typer.Option(False, "--fp16-deploy", metavar="", help="Store the deploy checkpoint in float16.", rich_help_panel=MODEL),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Training epochs.", rich_help_panel=OPTIMISER),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=2, help="Batch size, half real, half fake (even).", rich_help_panel=OPTIMISER),
    max_steps_per_epoch: Optional[int] = typer.Option(None, "--max-steps-per-epoch", min=1, help="Cap the steps of each epoch.", rich_help_panel=OPTIMISER),
    optimizer: Optimizer = typer.Option(Optimizer.sgd, "--optimizer", help="sgd (PG-FDD's) or adam (fast on a small budget).", rich_help_panel=OPTIMISER),
    lr: float = typer.Option(5e-4, "--lr", help="Learning rate (adam: try 3e-4).", rich_help_panel=OPTIMISER),
    lr_schedule: LrSchedule = typer.Option(LrSchedule.constant, "--lr-schedule", help="cosine: decay to 1% of --lr over the run.", rich_help_panel=OPTIMISER),
    no_sam: bool = typer.Option(False, "--no-sam", metavar="", help="Without SAM (half the cost per step).", rich_help_panel=OPTIMISER),
    seed: int = typer.Option(0, "--seed", help="Seed of sampling, augmentation and pseudo-fakes.", rich_help_panel=OPTIMISER),
    pseudo_fakes: PseudoFakes = typer.Option(PseudoFakes.none, "--pseudo-fakes", help="sbi: self-blended fakes made from the real rows.", rich_help_panel=DATA_AUG),
    scale_jitter: float = typer.Option(0.0, "--scale-jitter", min=0.0, max=1.0, help="Probability of a random 0.9-1.2x zoom.", rich_help_panel=DATA_AUG),
    video_aug: float = typer.Option(0.0, "--video-aug", min=0.0, max=1.0, help="Probability of an H.264 round trip in place of JPEG.", rich_help_panel=DATA_AUG),
    curriculum: Curriculum = typer.Option(Curriculum.none, "--curriculum", help="quality: rate the fakes, draw easy ones first.", rich_help_panel=CURRICULUM),
    pacing_start: float = typer.Option(-3.0, "--pacing-start", help="Curriculum tilt at the first step (< 0: easy fakes).", rich_help_panel=CURRICULUM),
    pacing_end: float = typer.Option(3.0, "--pacing-end", help="Curriculum tilt at the last step (> 0: realistic fakes).", rich_help_panel=CURRICULUM),
    quality_dynamic_weight: float = typer.Option(0.5, "--quality-dynamic-weight", min=0.0, max=1.0, help="Share of the model's loss in a fake's rating.", rich_help_panel=CURRICULUM),
    quality_aug: float = typer.Option(0.5, "--quality-aug", min=0.0, max=1.0, help="Frequency-mix probability of the easiest fakes.", rich_help_panel=CURRICULUM),
    balance_groups: BalanceGroups = typer.Option(BalanceGroups.none, "--balance-groups", help="synthetic: fill every label x group cell.", rich_help_panel=CURRICULUM),
    balance_target: Optional[int] = typer.Option(None, "--balance-target", min=1, help="Rows per cell (default: the largest cell).", rich_help_panel=CURRICULUM),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=RUN),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="DataLoader processes (default: one per two cores).", rich_help_panel=RUN),
    keep_epochs: bool = typer.Option(False, "--keep-epochs", metavar="", help="Keep every epoch's weights (epochN.safetensors).", rich_help_panel=RUN),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bars or epoch lines.", rich_help_panel=RUN),
) -> None:
    """Train the PG-FDD deepfake detector on face crops, validating and calibrating every epoch."""
    from dfscan.train.loop import TrainOptions
    from dfscan.train.loop import train as run_training

    opts = TrainOptions(train=train, val=val, out=out, backbone=backbone.value, epochs=epochs, batch_size=batch_size,
                        device=device, resume=resume, init_from=init_from, seed=seed, no_sam=no_sam,
                        optimizer=optimizer.value, lr=lr, lr_schedule=lr_schedule.value, pseudo_fakes=pseudo_fakes.value,
                        max_steps_per_epoch=max_steps_per_epoch, pretrained=pretrained, num_workers=workers,
                        input_size=input_size, scale_jitter=scale_jitter, video_aug=video_aug, fairness=fairness,
                        threshold_method=threshold_method.value, target_fpr=target_fpr, fp16_deploy=fp16_deploy,
                        keep_epochs=keep_epochs,
                        curriculum=curriculum.value, pacing_start=pacing_start, pacing_end=pacing_end,
                        quality_dynamic_weight=quality_dynamic_weight, quality_aug=quality_aug,
                        balance_groups=balance_groups.value, balance_target=balance_target,
                        allow_overlap=allow_overlap)
    best = run_training(opts, progress=not quiet, log=None if quiet else (lambda m: console.print(m, soft_wrap=True)),
                        warn=lambda m: err_console.print(f"[yellow]warning:[/] {escape(m)}", soft_wrap=True))
    if not quiet:
        console.print(f"best checkpoint: [bold]{best}[/] (deploy: {best.with_name('best_deploy.safetensors')})")




def register(app: typer.Typer) -> None:
    app.command("train", epilog=reflow(EXAMPLE))(train_command)
