"""The `dfscan` Typer app. Thin: each command lives in scanner/commands/ and calls library code."""

from __future__ import annotations

import importlib

import typer

from scanner import __version__
from scanner.console import console, quiet_env

quiet_env()

app = typer.Typer(
    name="dfscan",
    help="Scan video and images for deepfakes with a fairness-aware (PG-FDD) detector.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        console.print(f"dfscan {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """dfscan: deepfake scanning with per-person reports and fairness gates."""


# Each module in scanner/commands defines `register(app)`; modules that are not there yet are skipped.
for _name in ("scan", "extract", "fairness", "engine", "train", "checkpoint", "doctor"):
    try:
        _module = importlib.import_module(f"scanner.commands.{_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"scanner.commands.{_name}":
            raise
        continue
    _module.register(app)
