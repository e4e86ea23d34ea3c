"""`dfscan extract-faces`: face crops + a training manifest, made exactly as the scan makes them."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from dfscan.scanner.commands.choices import FaceModel
from dfscan.scanner.commands.shared import (
    INPUT,
    OUTPUT,
    face_model_option,
    fps_option,
    frames_option,
    timeout_option,
    workers_option,
)
from dfscan.scanner.console import EXIT_OK, EXIT_PARTIAL, FileProgress, console, err_console, friendly_errors, reflow

EXAMPLE = """
Examples:

    dfscan extract-faces videos/ --out crops/ --manifest crops.csv

    dfscan extract-faces --labels labels.csv --out crops/ --manifest crops.csv --frames 64

    dfscan extract-faces fakes/ --label fake --out crops/ --manifest fakes.csv

labels.csv: path,label[,attributes...] (label real|fake or 0|1, paths relative to the CSV);
its attribute columns are copied to every crop's manifest row. Without INPUTS the files listed
in labels.csv are extracted. Rerunning with the same manifest skips unchanged inputs.

Manifest columns: path,label,<attributes>,source,subject,frame,kp (kp: the 6 face keypoints
in crop pixels, "x0 y0 ... x5 y5").

Exit codes: 0 done; 2 bad usage or labels.csv; 3 done but some inputs could not be read.
"""


class LabelChoice(str, Enum):
    real = "real"
    fake = "fake"


@friendly_errors
def extract_faces(
    inputs: Optional[List[str]] = typer.Argument(None, metavar="PATH", help="Video/image files and folders (searched recursively)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="labels.csv with path,label[,attributes] per input.", rich_help_panel=INPUT),
    label: LabelChoice = typer.Option(LabelChoice.real, "--label", help="Label for every input when there is no --labels.", rich_help_panel=INPUT),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNG crops (one subfolder per input).", rich_help_panel=OUTPUT),
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Training manifest CSV to write.", rich_help_panel=OUTPUT),
    frames: int = frames_option(),
    fps: Optional[float] = fps_option(),
    face_model: FaceModel = face_model_option(),
    size: int = typer.Option(256, "--size", min=32, max=1024, help="Crop side in pixels: the --input-size you will train at.", rich_help_panel=OUTPUT),
    workers: Optional[int] = workers_option(),
    timeout: float = timeout_option("a sampled frame decoded", "a skipped input with code `timeout`"),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bar and no summary.", rich_help_panel=OUTPUT),
) -> None:
    """Extract aligned face crops (256x256 unless --size) and a training manifest from videos and images."""
    from dfscan.scanner.extract import extract_faces as run

    if labels is not None and label != LabelChoice.real:
        err_console.print("note: --label is ignored when --labels is given")
    with FileProgress("extracting", enabled=not quiet, unit="inputs", status=lambda p: f"{p.crops} crops") as progress:
        result = run(inputs or [], out, manifest, labels=labels, frames=frames, fps=fps,
                     face_model=face_model.value, progress=progress.update, label=label.value, size=size,
                     workers=workers, timeout=timeout or None)
    if not quiet:
        _print_summary(result)
    raise typer.Exit(EXIT_PARTIAL if result.errors else EXIT_OK)




def _print_summary(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="dfscan extract-faces", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("inputs", f"{len(result.extracted)} with faces, {len(result.no_face)} no face, "
                  f"{len(result.resumed)} unchanged (resumed), {len(result.errors)} unreadable")
    table.add_row("crops", f"{result.crops} written, {result.rows} in the manifest")
    table.add_row("time", f"{result.seconds:.1f} s")
    table.add_row("manifest", escape(str(result.manifest)))
    table.add_row("crops in", escape(str(result.out_dir)))
    console.print(table)
    if result.skipped:
        t = Table(title="skipped", title_justify="left")
        t.add_column("input", overflow="fold")
        t.add_column("code", no_wrap=True)
        t.add_column("reason", overflow="fold")
        for path, code, message in result.skipped[:20]:
            t.add_row(escape(str(path)), code, escape(message))
        console.print(t)
        if len(result.skipped) > 20:
            console.print(f"… and {len(result.skipped) - 20} more")


def register(app: typer.Typer) -> None:
    app.command("extract-faces", epilog=reflow(EXAMPLE))(extract_faces)
