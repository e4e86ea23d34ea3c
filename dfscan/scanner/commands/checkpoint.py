"""`dfscan import-checkpoint`: convert an official PG-FDD .pth state_dict into a dfscan checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from dfscan.scanner.console import console, friendly_errors, reflow

EXAMPLE = """
Examples:

    dfscan import-checkpoint ff++_fair.pth --out pgfdd_xception.safetensors --deploy
    dfscan scan clip.mp4 --weights pgfdd_xception.safetensors
"""


@friendly_errors
def import_checkpoint(
    official: Path = typer.Argument(..., help="Official PG-FDD state_dict (.pth), loaded with weights_only=True."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the dfscan .safetensors checkpoint."),
    deploy: bool = typer.Option(False, "--deploy", metavar="", help="Keep only the inference weights (smaller file)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="The backbone it was built on (default: read from its key names)."),
    threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0, help="Decision threshold to store."),
) -> None:
    """Convert an official PG-FDD checkpoint (Xception) to dfscan's safetensors format."""
    from dfscan.train.checkpoint import import_official, load_checkpoint
    from dfscan.train.config import ModelConfig
    from dfscan.train.model import count_parameters

    config = ModelConfig(backbone=backbone) if backbone else None
    path = import_official(official, out, config, deploy=deploy, threshold=threshold)
    model, config, info = load_checkpoint(path, deploy=deploy)
    console.print(
        f"wrote [bold]{escape(str(path))}[/] ({info['kind']}, {config.backbone}, "
        f"{count_parameters(model) / 1e6:.1f}M parameters, heads spe={config.num_spe} "
        f"fair={config.num_fair} fused={config.num_fused}, sha256 {info['sha256'][:12]})"
    )




def register(app: typer.Typer) -> None:
    app.command("import-checkpoint", epilog=reflow(EXAMPLE))(import_checkpoint)
