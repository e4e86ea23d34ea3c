"""`dfscan fairness-check`: per-group accuracy and fairness gates on a labelled set, for CI."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from dfscan.scanner.commands.choices import BackendChoice
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

SET, GATES, OUTPUT, SCANNING = "Labelled set and scores", "Gates", "Output", "Scanning (when there is no --scores)"

EXAMPLE = """
Examples:

    dfscan fairness-check labels.csv --scores report.json --max-ffpr 10 --min-auc 0.8

    dfscan fairness-check faces/labels.csv --crops --weights detector.safetensors
        --attrs gender,race --json out.json --markdown summary.md --junit out.xml --plots plots/

labels.csv: path,label,<attributes> (label real|fake or 0|1, paths relative to the CSV), or the
official PG-FDD CSV (img_path,label,ismale,isasian,iswhite,isblack,intersec_label).
Every path is checked before scoring starts. Paths may leave the CSV's folder (../, absolute,
symlinks): pass --root DIR to refuse any that does not resolve inside DIR.
Gates also come from \\[tool.dfscan.fairness] in ./pyproject.toml or --config FILE; options win.
Groups under --min-group items, or with only real or only fake items, are insufficient: they
fail the min-group gate unless --allow-small-groups.

Exit codes: 0 all gates passed; 1 a gate failed; 2 bad labelled set, report or option;
3 gates passed but some items could not be read (listed as excluded).
"""


@friendly_errors
def fairness_check(
    labels: Path = typer.Argument(..., metavar="LABELS.CSV", help="Labelled set: labels.csv (or the official PG-FDD CSV)."),
    scores: Optional[Path] = typer.Option(None, "--scores", help="Use the scores of an earlier `dfscan scan` report (json/jsonl) instead of scanning.", rich_help_panel=SET),
    attrs: Optional[str] = typer.Option(None, "--attrs", help="Attribute columns to check, comma-separated (default: all).", rich_help_panel=SET),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0, help="Fake if p_fake >= this (default: the model's threshold).", rich_help_panel=SET),
    min_group: Optional[int] = typer.Option(None, "--min-group", min=1, help="Smallest group size that counts (default 30).", rich_help_panel=GATES),
    allow_small_groups: Optional[bool] = typer.Option(None, "--allow-small-groups/--no-allow-small-groups", metavar="", help="Warn instead of failing on a group under --min-group or of one class (gates use the other groups).", rich_help_panel=GATES),
    max_ffpr: Optional[float] = typer.Option(None, "--max-ffpr", help="Gate: F_FPR at most this (percent).", rich_help_panel=GATES),
    max_fmeo: Optional[float] = typer.Option(None, "--max-fmeo", help="Gate: F_MEO at most this (percent).", rich_help_panel=GATES),
    max_fdp: Optional[float] = typer.Option(None, "--max-fdp", help="Gate: F_DP at most this (percent).", rich_help_panel=GATES),
    max_foae: Optional[float] = typer.Option(None, "--max-foae", help="Gate: F_OAE at most this (percent).", rich_help_panel=GATES),
    min_auc: Optional[float] = typer.Option(None, "--min-auc", help="Gate: overall AUC and every group's AUC at least this.", rich_help_panel=GATES),
    max_fpr: Optional[float] = typer.Option(None, "--max-fpr", help="Gate: overall FPR and every group's FPR at most this (fraction of reals called fake).", rich_help_panel=GATES),
    min_tpr: Optional[float] = typer.Option(None, "--min-tpr", help="Gate: overall TPR and every group's TPR at least this (fraction of fakes caught).", rich_help_panel=GATES),
    bootstrap: Optional[int] = typer.Option(None, "--bootstrap", min=0, help="Bootstrap resamples for 95% intervals of the gaps (default 200; 0: off).", rich_help_panel=GATES),
    seed: Optional[int] = typer.Option(None, "--seed", help="Bootstrap seed (default 0).", rich_help_panel=GATES),
    root: Optional[Path] = typer.Option(None, "--root", help="Refuse labelled paths that resolve (symlinks followed) outside this folder (default: none refused).", rich_help_panel=SET),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with the settings (default: \\[tool.dfscan.fairness] of ./pyproject.toml).", rich_help_panel=SET),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full results as JSON.", rich_help_panel=OUTPUT),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown summary (e.g. for $GITHUB_STEP_SUMMARY).", rich_help_panel=OUTPUT),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML, one test case per gate.", rich_help_panel=OUTPUT),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write per-group ROC and FPR/TPR charts (PNG) to this folder.", rich_help_panel=OUTPUT),
    crops: bool = typer.Option(False, "--crops", metavar="", help="The media are already-aligned face crops.", rich_help_panel=SCANNING),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Detector checkpoint (default: the shipped model).", rich_help_panel=SCANNING),
    backend: BackendChoice = typer.Option(BackendChoice.auto, "--backend", help="Inference backend.", rich_help_panel=SCANNING),
    engine: Optional[Path] = typer.Option(None, "--engine", help="TensorRT engine folder.", rich_help_panel=SCANNING),
    frames: int = typer.Option(32, "--frames", min=1, help="Frames sampled per video.", rich_help_panel=SCANNING),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Crops per inference batch.", rich_help_panel=SCANNING),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Decode/detect processes.", rich_help_panel=SCANNING),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="Only the verdict line (and errors).", rich_help_panel=OUTPUT),
) -> None:
    """Check that the detector is equally accurate across demographic groups; exit 1 when a gate fails."""
    from dfscan.scanner import fairness as fc
    from dfscan.scanner.outputs import check_outputs_apart

    check_outputs_apart([json_out, markdown, junit], [labels, scores, config, weights])  # before the slow part
    cli = {"attrs": [a.strip() for a in attrs.split(",") if a.strip()] if attrs else None,
           "threshold": threshold, "min_group": min_group, "allow_small_groups": allow_small_groups,
           "bootstrap": bootstrap, "seed": seed, "max_ffpr": max_ffpr, "max_fmeo": max_fmeo,
           "max_fdp": max_fdp, "max_foae": max_foae, "min_auc": min_auc,
           "max_fpr": max_fpr, "min_tpr": min_tpr}
    options = fc.merge_options(cli, fc.read_config(config))

    scan_options = None
    if scores is None:
        from dfscan.scanner.pipeline import ScanOptions

        scan_options = ScanOptions(frames=frames, batch_size=batch_size, workers=workers,
                                   backend=backend.value, weights=weights, engine=engine, crops=crops)
    with FileProgress("scoring labelled set", enabled=not quiet and scores is None) as progress:
        result = fc.run_check(labels, options, scores_report=scores, scan_options=scan_options,
                              progress=progress.update, root=root)

    written = fc.write_outputs(result, json_path=json_out, markdown=markdown, junit=junit, plots=plots)
    doc = result.report
    for warning in doc["warnings"]:  # group names merged, or looking alike: even with --quiet
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    if quiet:
        failed = sum(g["status"] == "fail" for g in doc["gates"])
        line = f"FAILED: {failed} of {len(doc['gates'])} gates" if failed else f"PASSED: {len(doc['gates'])} gates"
        console.print(line)
        if doc["excluded"]["count"]:
            err_console.print(fc.excluded_line(doc), markup=False)
    else:
        fc.print_result(result, console)
        if written:
            console.print(f"[dim]wrote {escape(', '.join(str(p) for p in written))}[/]")
    if not result.passed:
        raise typer.Exit(EXIT_GATE)
    if doc["excluded"]["by_status"].get("error"):
        raise typer.Exit(EXIT_PARTIAL)
    raise typer.Exit(EXIT_OK)




def register(app: typer.Typer) -> None:
    app.command("fairness-check", epilog=reflow(EXAMPLE))(fairness_check)
