"""`dfscan audit`: metadata shortcuts in a labelled deepfake set, before anyone trains on it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from dfscan.scanner.console import (
    EXIT_GATE,
    EXIT_OK,
    EXIT_PARTIAL,
    FileProgress,
    console,
    err_console,
    friendly_errors,
    reflow,
)

GATE, READ, OUTPUT = "Gate", "What is read", "Output"

EXAMPLE = """
Examples:

    dfscan audit labels.csv

    dfscan audit labels.csv --json audit.json --markdown "$GITHUB_STEP_SUMMARY" --plots audit/
        --max-shortcut-auc 0.7 --feature original_width

labels.csv: path,label[,attributes...] as for fairness-check (videos and images; paths relative
to the CSV). Every item's container, codecs, pixel format, size, fps, duration, frames, bitrate,
file size, rotation, audio, leading silence, stream start times (images: format, JPEG quality,
EXIF) are read without running the detector; each is scored by how well it alone separates
real from fake (AUC folded to >= 0.5), and a shallow cross-validated tree scores them together
(its out-of-fold AUC is not folded: under 0.5 it learned nothing). A set with fewer than
--min-items readable reals or fakes fails as too small: on a few items any feature separates.

Exit codes: 0 no shortcut; 1 a feature (or the metadata model) separates real from fake above
--max-shortcut-auc, or too few items (--min-items); 2 bad labelled set or option; 3 no shortcut, but some items could not be read.
"""


@friendly_errors
def audit(
    labels: Path = typer.Argument(..., metavar="LABELS.CSV", help="Labelled set: labels.csv (path,label[,attributes])."),
    max_shortcut_auc: float = typer.Option(0.70, "--max-shortcut-auc", min=0.5, max=1.0, help="Gate: a feature (or the metadata model) whose AUC exceeds this is a shortcut (exit 1).", rich_help_panel=GATE),
    min_items: Optional[int] = typer.Option(None, "--min-items", min=2, help="Gate: fewest readable reals, and as many fakes, an audit needs (default 30; fewer: fails as too few).", rich_help_panel=GATE),
    feature: Optional[List[str]] = typer.Option(None, "--feature", help="A numeric CSV column to audit as well (repeatable), e.g. original_width.", rich_help_panel=READ),
    attrs: Optional[str] = typer.Option(None, "--attrs", help="Attribute columns for the per-group table, comma-separated (default: every column but path, label and --feature).", rich_help_panel=READ),
    silence_db: float = typer.Option(-60.0, "--silence-db", max=-0.01, help="Leading silence ends where the audio first rises above this level (dBFS).", rich_help_panel=READ),
    bootstrap: int = typer.Option(200, "--bootstrap", min=0, help="Bootstrap resamples for the 95% intervals (0: off).", rich_help_panel=GATE),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and the model's folds.", rich_help_panel=GATE),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Processes reading metadata (default: one per core).", rich_help_panel=READ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full results as JSON.", rich_help_panel=OUTPUT),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown summary (e.g. for $GITHUB_STEP_SUMMARY).", rich_help_panel=OUTPUT),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write the worst features' distributions by label (PNG) to this folder.", rich_help_panel=OUTPUT),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="Only the verdict line (and errors).", rich_help_panel=OUTPUT),
) -> None:
    """Find metadata that separates real from fake in a labelled set (a shortcut a detector would learn)."""
    from dfscan.scanner.audit import output
    from dfscan.scanner.audit.run import AuditOptions, run_audit
    from dfscan.scanner.outputs import check_outputs_apart

    check_outputs_apart([json_out, markdown], [labels])  # before the slow part

    options = AuditOptions(attrs=[a.strip() for a in attrs.split(",") if a.strip()] if attrs else None,
                           features=list(feature or []), max_shortcut_auc=max_shortcut_auc, silence_db=silence_db,
                           bootstrap=bootstrap, seed=seed, workers=workers,
                           **({} if min_items is None else {"min_items": min_items}))
    with FileProgress("reading metadata", enabled=not quiet) as progress:
        result = run_audit(labels, options, progress=progress.update)
    written = output.write_outputs(result, json_path=json_out, markdown=markdown, plots=plots)
    for warning in result.report["warnings"]:  # group names merged, or looking alike
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    if quiet:
        console.print(output.verdict(result.report), soft_wrap=True, markup=False)
        if result.report["excluded"]:
            err_console.print(f"{len(result.report['excluded'])} item(s) could not be read")
    else:
        output.print_result(result, console)
        if written:
            console.print(f"[dim]wrote {escape(', '.join(str(p) for p in written))}[/]")
    if not result.passed:
        raise typer.Exit(EXIT_GATE)
    raise typer.Exit(EXIT_PARTIAL if result.report["excluded"] else EXIT_OK)




def register(app: typer.Typer) -> None:
    app.command("audit", epilog=reflow(EXAMPLE))(audit)
