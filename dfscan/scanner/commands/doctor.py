"""`dfscan doctor`: what this machine has and which backend a scan would use, and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from dfscan.scanner.console import console, fail, friendly_errors, reflow

EXAMPLE = """
Examples:

    dfscan doctor
    dfscan doctor --weights my_detector.safetensors --engine ./engine
    dfscan doctor --verbose
    dfscan doctor --json
"""


@friendly_errors
def doctor(
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Checkpoint to check (default: the shipped detector)."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="TensorRT engine folder to check (default: the user cache)."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the findings as JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", metavar="", help="Also the models' files, hashes and inference graph."),
) -> None:
    """Show the machine (CPU, GPU, CUDA, TensorRT), each backend and why it is or is not used, and the models."""
    from dfscan.scanner.doctor import doctor_report

    if weights is not None and not weights.is_file():  # asked for this file: checking another is no answer
        fail(f"--weights {weights}: " + ("is a folder, not a checkpoint file" if weights.is_dir() else "file not found"))
    report = doctor_report(weights, engine)
    if as_json:
        console.print_json(json.dumps(report))
        return

    machine = Table(title="machine", show_header=False, title_justify="left")
    machine.add_column(style="bold")
    machine.add_column(overflow="fold")
    for key, value in report["machine"].items():
        machine.add_row(key, escape(value))
    console.print(machine)

    backends = Table(title="backends (in --backend auto order)", title_justify="left")
    backends.add_column("candidate", style="bold")
    backends.add_column("usable")
    backends.add_column("why", overflow="fold")
    for c in report["candidates"]:
        usable = "[green]chosen[/]" if c["chosen"] else ("yes" if c["available"] else "[red]no[/]")
        backends.add_row(c["name"], usable, escape(c["reason"]))
    if report["candidates"]:
        console.print(backends)

    console.print(_models_table(report, verbose))
    w = report["weights"]
    if report["chosen"]:
        console.print(f"a scan here uses [bold]{report['chosen']}[/] (--backend auto)")
    elif not w["ok"]:
        console.print("no detector weights to check: pass --weights PATH")


def _models_table(report: dict, verbose: bool) -> Table:
    """One short line per model; its files, hash and inference graph only with --verbose."""
    models = Table(title="models", show_header=False, title_justify="left")
    models.add_column(style="bold", no_wrap=True)
    models.add_column(overflow="fold")
    w = report["weights"]
    if w["ok"]:
        models.add_row("detector", f"{escape(w['name'])}: {w['backbone']}, {w['input_size']} px faces, "
                                   f"fake when p_fake >= {w['threshold']:.3g}")
        if w.get("caveat"):
            models.add_row("", f"[yellow]{escape(w['caveat'])}[/]")
    else:
        models.add_row("detector", f"[red]{escape(w.get('problem', 'unreadable'))}[/]: {escape(w['path'])}")
    faces = report["face_models"]
    models.add_row("face detector", ", ".join(
        f"{fm['name']} range" if fm["present"] else f"{fm['name']} range [red]missing[/]" for fm in faces)
        + " (MediaPipe)")
    if verbose:
        if w["ok"]:
            models.add_row("detector file", f"{escape(w['path'])} ({w['kind']}, {w['size_mb']} MB)")
            models.add_row("sha256", w["sha256"])
            models.add_row("inference", f"{w['inference_graph']}: {escape(w['inference_graph_reason'])}")
        for fm in faces:
            models.add_row(f"face ({fm['name']})", escape(fm["path"])
                           + (f" ({fm['size_kb']} KiB)" if fm["present"] else " [red]missing[/]"))
    else:
        models.add_row("", "[dim]files, sha256 and inference graph: --verbose[/]")
    return models


def register(app: typer.Typer) -> None:
    app.command("doctor", epilog=reflow(EXAMPLE))(doctor)
