"""Every command's --help ends with its examples, epilog prose wraps to the terminal, the training
choices come from dfscan.train.choices, and the CLI starts without torch."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dfscan.scanner.cli import app
from dfscan.scanner.console import reflow
from dfscan.train import choices

COMMANDS = ["scan", "extract-faces", "fairness-check", "audit", "build-engine", "train", "import-checkpoint",
            "doctor"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_ends_with_examples(command):
    r = CliRunner().invoke(app, [command, "--help"], terminal_width=100)
    assert r.exit_code == 0, r.output
    assert "Examples" in r.output and f"dfscan {command}" in r.output.split("Examples")[1]
    assert r.output.rindex("╰") < r.output.index("Examples")  # after the option panels, as an epilog


def test_reflow_joins_prose_and_keeps_example_lines():
    text = "\nExamples:\n\n    dfscan scan a\n        --b c\n\nExit codes: 0 done;\n1 fake.\n"
    assert reflow(text) == "Examples:\n\n    dfscan scan a\n        --b c\n\nExit codes: 0 done; 1 fake."


def test_train_choices_are_train_choices():
    r = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"})  # no choice list cut short
    assert r.exit_code == 0, r.output
    for names in (choices.BACKBONE_FILES, choices.OPTIMIZER_NAMES, choices.LR_SCHEDULES, choices.PSEUDO_FAKES,
                  choices.THRESHOLD_METHODS, choices.CURRICULA, choices.BALANCE_MODES):
        # short lists as the option's value (--optimizer sgd|adam), long ones named in its help
        assert "|".join(names) in r.output or all(n in r.output for n in names), names


def test_cli_starts_without_torch():
    code = "import sys, dfscan.scanner.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_console_script_imports_nothing_heavy_at_the_top():
    """Spawned scan workers import the launching script again: it must not pull in the CLI (Typer, Rich, commands)."""
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "dfscan"]
    assert script.value == "dfscan.scanner.launch:main"
    code = f"import sys, {script.module}; print(sorted(m for m in ('typer', 'rich', 'dfscan.scanner.cli') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_steps_draw_a_spinner_in_a_terminal_and_lines_elsewhere():
    import io

    from rich.console import Console

    from dfscan.scanner.console import Steps

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


def _help(*command: str) -> str:
    r = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    return r.output


def _params(command: str) -> list:
    import typer.main

    return [p for p in typer.main.get_command(app).commands[command].params if not getattr(p, "hidden", False)]


PARSER_TYPES = re.compile(r"<(bool|path|str|int|float|list\[|int range|float range)|\{\w+\}")


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_help_reads_at_80_columns(command):
    """No line over 80, no option name cut with "…", value names in words (PATH, INT), not parser types."""
    out = _help(*command)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
    assert not PARSER_TYPES.search(out), PARSER_TYPES.search(out)
    from typer.core import TyperArgument

    for p in _params(command[0]) if command else []:
        if isinstance(p, TyperArgument):
            continue
        for name in p.opts:  # every option name whole; a flag pair as --[no-]name
            assert re.search(rf"(^|[\s,]){re.escape(name)}([\s,]|$)", out) or f"--[no-]{name[2:]}" in out, name
        for name in p.secondary_opts:
            assert f"--[no-]{name[5:]}" in out or name in out, name


def _flat(out: str) -> str:
    """The help with its panels' borders gone and wrapped cells joined (for phrases that wrap)."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())


def test_help_names_values_and_defaults_in_words():
    out = _help("train")
    assert "--[no-]pretrained" in out and "[default: --pretrained]" in out
    assert re.search(r"-b, --batch-size INT +Batch size", out)
    flat = _flat(out)
    assert "[default: 32; >=2]" in flat and "[default: 0.05; 0 to 0.999]" in flat
    assert "Usage: " in out and "Optimisation" in out  # options grouped in panels
    assert len(out.splitlines()) < 120  # was 249 lines at 80 columns
    scan = _help("scan")
    assert re.search(r"Usage: \S.* scan \[OPTIONS\] PATH\.\.\.", scan)
    assert "--ray-cpu-tasks-per-node INT" in scan  # the name Typer cut to --ray-cpu-tasks-per-n…
    assert "-w, --weights PATH" in scan and "one of: auto, tensorrt, torch, onnxruntime" in _flat(scan)
    assert "[OPTIONS] LABELS.CSV" in _help("fairness-check")


def test_long_example_lines_continue_indented():
    from dfscan.scanner.help import _epilog

    text = _epilog("Examples:\n\n    dfscan scan a b c d e f g h i j k --report out.json  # why", 40).plain
    assert text.splitlines()[2:] == ["    dfscan scan a b c d e f g h i j k", "        --report out.json  # why"]


@pytest.mark.parametrize("command,usage", [("scan", "scan [OPTIONS] PATH..."),
                                           ("extract-faces", "extract-faces [OPTIONS] [PATH...]"),
                                           ("fairness-check", "fairness-check [OPTIONS] LABELS.CSV")])
def test_error_usage_line_spells_arguments_as_help_does(command, usage):
    """Typer 0.29 writes a required argument `{PATH}...` in the usage line of errors."""
    r = CliRunner().invoke(app, [command, "--no-such-option"], terminal_width=80)
    assert r.exit_code == 2
    assert f"Usage: dfscan {usage}\n" in r.output.replace("root ", "dfscan ")
    assert "{" not in r.output.splitlines()[0]
