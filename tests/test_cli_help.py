"""Every command's --help ends with its examples, and epilog prose wraps to the terminal."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from scanner.cli import app
from scanner.console import reflow

COMMANDS = ["scan", "extract-faces", "fairness-check", "audit", "build-engine", "train", "import-checkpoint",
            "doctor"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_ends_with_examples(command):
    r = CliRunner().invoke(app, [command, "--help"], terminal_width=100)
    assert r.exit_code == 0, r.output
    assert "Examples" in r.output and f"dfscan {command}" in r.output.split("Examples")[1]
    assert r.output.index("Options") < r.output.index("Examples")  # after the options, as an epilog


def test_reflow_joins_prose_and_keeps_example_lines():
    text = "\nExamples:\n\n    dfscan scan a\n        --b c\n\nExit codes: 0 done;\n1 fake.\n"
    assert reflow(text) == "Examples:\n\n    dfscan scan a\n        --b c\n\nExit codes: 0 done; 1 fake."
