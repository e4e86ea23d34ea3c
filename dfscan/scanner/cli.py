"""The `dfscan` Typer app. Thin: each command lives in dfscan/scanner/commands/ and calls library code."""

from __future__ import annotations

import typer
from typer.core import TyperCommand

from dfscan.scanner import __version__
from dfscan.scanner.commands import audit, checkpoint, doctor, engine, extract, fairness, scan, train
from dfscan.scanner.console import console, quiet_env
from dfscan.scanner.help import HelpCommand, HelpGroup

quiet_env()


def _plain_usage_errors() -> None:
    """Typer 0.2x coerces option values through pydantic, whose message for a bad choice starts
    "Value error, " (`--format xml`: "Value error, 'xml' is not one of ..."). Drop that prefix
    from every usage error; a Typer without this hook is left as it is."""
    from typer import _coercion

    original = getattr(_coercion, "get_error_msg", None)
    if original is None or getattr(original, "_dfscan_plain", False):
        return

    def get_error_msg(exc):
        return original(exc).removeprefix("Value error, ")

    setattr(get_error_msg, "_dfscan_plain", True)  # a mark on the function: installed once
    _coercion.get_error_msg = get_error_msg


_plain_usage_errors()

app = typer.Typer(
    name="dfscan",
    cls=HelpGroup,  # --help laid out for 80 columns (dfscan.scanner.help)
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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="", help="Show the version."),
) -> None:
    """dfscan: deepfake scanning with per-person reports and fairness gates."""


for _module in (scan, extract, fairness, audit, engine, train, checkpoint, doctor):
    _module.register(app)
for _info in app.registered_commands:  # every command's --help: option names whole, values in words
    if _info.cls in (None, TyperCommand):  # Typer fills in its own class
        _info.cls = HelpCommand
