"""`dfscan doctor`: what this machine has and which backend a scan would use, and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from scanner.console import console, friendly_errors, reflow

EXAMPLE = """
Examples:

    dfscan doctor
    dfscan doctor --weights my_detector.safetensors --engine ./engine
    dfscan doctor --json
"""


@friendly_errors
def doctor(
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Checkpoint to check (default: the shipped detector)."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="TensorRT engine folder to check (default: the user cache)."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the findings as JSON."),
) -> None:
    """Show the machine (CPU, GPU, CUDA, TensorRT), each backend and why it is or is not used, and the models."""
    from scanner.doctor import doctor_report

    report = doctor_report(weights, engine)
    if as_json:
        console.print_json(json.dumps(report))
        return

    machine = Table(title="machine", show_header=False, title_justify="left")
    machine.add_column(style="bold")
    machine.add_column()
    for key, value in report["machine"].items():
        machine.add_row(key, value)
    console.print(machine)

    backends = Table(title="backends (in --backend auto order)", title_justify="left")
    backends.add_column("candidate", style="bold")
    backends.add_column("usable")
    backends.add_column("why")
    for c in report["candidates"]:
        usable = "[green]chosen[/]" if c["chosen"] else ("yes" if c["available"] else "[red]no[/]")
        backends.add_row(c["name"], usable, c["reason"])
    if report["candidates"]:
        console.print(backends)

    models = Table(title="models", title_justify="left")
    models.add_column("model", style="bold")
    models.add_column("file")
    models.add_column("details")
    for fm in report["face_models"]:
        models.add_row(f"face detector ({fm['name']})", fm["path"],
                       f"{fm['size_kb']} KiB" if fm["present"] else "[red]missing[/]")
    w = report["weights"]
    details = (f"{w['backbone']}, {w['input_size']}px, {w['kind']}, threshold {w['threshold']:.4g}, {w['size_mb']} MB, "
               f"sha256 {w['sha256']}; inference: {w['inference_graph']} ({w['inference_graph_reason']})"
               if w["ok"] else f"[red]{w.get('problem', 'unreadable')}[/]")
    models.add_row("detector weights", w["path"], details)
    console.print(models)

    if report["chosen"]:
        console.print(f"a scan here uses [bold]{report['chosen']}[/] (--backend auto)")
    elif not w["ok"]:
        console.print("no detector weights to check: pass --weights PATH")




def register(app: typer.Typer) -> None:
    app.command("doctor", epilog=reflow(EXAMPLE))(doctor)
