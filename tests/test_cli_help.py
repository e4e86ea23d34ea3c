"""Every command's --help ends with its examples, epilog prose wraps to the terminal, the training
choices come from train.choices, and the CLI starts without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from scanner.cli import app
from scanner.console import reflow
from train import choices

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


def test_train_choices_are_train_choices():
    r = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"})  # no choice list cut short
    assert r.exit_code == 0, r.output
    for names in (choices.BACKBONE_NAMES, choices.OPTIMIZER_NAMES, choices.LR_SCHEDULES, choices.PSEUDO_FAKES,
                  choices.THRESHOLD_METHODS, choices.CURRICULA, choices.BALANCE_MODES):
        assert f"<{'|'.join(names)}>" in r.output, names


def test_cli_starts_without_torch():
    code = "import sys, scanner.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_console_script_imports_nothing_heavy_at_the_top():
    """Spawned scan workers import the launching script again: it must not pull in the CLI (Typer, Rich, commands)."""
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "dfscan"]
    assert script.value == "scanner.launch:main"
    code = f"import sys, {script.module}; print(sorted(m for m in ('typer', 'rich', 'scanner.cli') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_steps_draw_a_spinner_in_a_terminal_and_lines_elsewhere():
    import io

    from rich.console import Console

    from scanner.console import Steps

    piped = Console(file=io.StringIO(), width=80)
    with Steps(out=piped) as step:
        step("exporting to ONNX [fast]")
        step("checking")
    assert piped.file.getvalue() == "exporting to ONNX [fast] ...\nchecking ...\n"  # brackets are text
    tty = Console(file=io.StringIO(), width=80, force_terminal=True)
    with Steps(out=tty) as step:
        step("exporting to ONNX")
    drawn = tty.file.getvalue()
    assert "exporting to ONNX" in drawn and " ...\n" not in drawn  # a transient spinner line, then erased
    quiet = Console(file=io.StringIO(), width=80)
    with Steps(out=quiet, enabled=False) as step:
        step("exporting to ONNX")
    assert quiet.file.getvalue() == ""
