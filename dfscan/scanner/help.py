"""`--help` that reads at 80 columns: option names never cut, value names in words, panels.

Typer's own Rich help puts every option in a six-column table (long name, short name, negative
name, parser type, help) that an 80-column terminal cannot hold: names were cut with "…",
types showed as `<int range> [x>=1]`, `<list[Path]>` and `<bool>`, and the help column was a few
words wide. Here each option is one left cell (`-o, --report PATH`, `--[no-]pretrained`) and its
help, with the default, range and choices in words after it. The value names come from the
command function's own signature and `typer.Option` (ParameterInfo), so nothing here depends on
how a Typer version describes its types. Commands and the app use it through dfscan.scanner.cli.
"""

from __future__ import annotations

import inspect
import io
import os
import textwrap
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from typer.core import TyperArgument, TyperCommand, TyperGroup
from typer.models import ParameterInfo

MAX_WIDTH = 100  # wider terminals get 100 columns: long lines of help read badly
LONG_CHOICES = 24  # longer choice lists are named in the help ("one of: ...") instead of the left cell
WORDS = {Path: "PATH", int: "INT", float: "FLOAT", str: "TEXT"}


def _declared(command: Any) -> tuple[dict[str, ParameterInfo], dict[str, Any]]:
    """Each parameter's typer.Option/Argument and its type, from the command function itself."""
    func = inspect.unwrap(command.callback) if command.callback else None
    if func is None:
        return {}, {}
    try:
        hints = typing.get_type_hints(func)
    except (NameError, TypeError):
        hints = {}
    infos = {name: p.default for name, p in inspect.signature(func).parameters.items()
             if isinstance(p.default, ParameterInfo)}
    return infos, hints


def _base(annotation: Any) -> Any:
    """Optional[X] and List[X] → X."""
    while typing.get_origin(annotation) in (typing.Union, list, tuple) or type(annotation).__name__ == "UnionType":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if not args:
            break
        annotation = args[0]
    return annotation


def _choices(annotation: Any) -> list[str]:
    base = _base(annotation)
    return [str(m.value) for m in base] if isinstance(base, type) and issubclass(base, Enum) else []


def _value_name(param: Any, info: ParameterInfo | None, annotation: Any) -> str:
    """The word after an option (PATH, INT, json|jsonl|csv) or an argument's name; "" for a flag."""
    if info is not None and info.metavar is not None:
        return info.metavar
    if getattr(param, "is_flag", False) or _base(annotation) is bool:
        return ""
    choices = _choices(annotation)
    if choices:
        joined = "|".join(choices)
        return joined if len(joined) <= LONG_CHOICES else "NAME"
    return WORDS.get(_base(annotation), "VALUE")


def _names(param: Any, pad: bool) -> str:
    """`-o, --report`, `    --frames` (aligned when the command has short names), `--[no-]fairness`."""
    short = [o for o in param.opts if not o.startswith("--")]
    long = [o for o in param.opts if o.startswith("--")]
    negative = list(param.secondary_opts)
    if len(long) == 1 and negative == [f"--no-{long[0][2:]}"]:
        long, negative = [f"--[no-]{long[0][2:]}"], []
    text = ", ".join(short + long + negative)
    return text if short or not pad else "    " + text


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _extras(param: Any, info: ParameterInfo | None, annotation: Any) -> list[str]:
    """[default: ...; range; choices; required] in words."""
    out = []
    default = info.default if info is not None else None
    shown = info is None or info.show_default is not False
    if param.required:
        out.append("required")
    elif shown and default is not None and default is not ... and default != [] and not (
            default is False and not param.secondary_opts):
        if isinstance(default, Enum):
            default = default.value
        if isinstance(default, bool):
            name = param.opts[0] if default else param.secondary_opts[0]
            out.append(f"default: {name}")
        else:
            out.append(f"default: {_number(default)}")
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    if low is not None and high is not None:
        out.append(f"{_number(low)} to {_number(high)}")
    elif low is not None:
        out.append(f">={_number(low)}")
    elif high is not None:
        out.append(f"<={_number(high)}")
    choices = _choices(annotation)
    if choices and len("|".join(choices)) > LONG_CHOICES and not all(c in (param.help or "") for c in choices):
        out.insert(0, "one of: " + ", ".join(choices))  # the left cell says NAME; unless the help names them
    return out


def _markup(text: str) -> Text:
    return Text.from_markup(inspect.cleandoc(text).replace("\n", " "))


def _rows(command: Any, ctx: Any) -> tuple[list[tuple[str, list[tuple[str, Text]]]], list[str]]:
    """(panel, [(left cell, help)]) in order of first appearance, and the usage line's arguments."""
    infos, hints = _declared(command)
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    pad = any(not o.startswith("--") for p in params for o in p.opts if not isinstance(p, TyperArgument))
    panels: dict[str, list[tuple[str, Text]]] = {}
    usage = []
    for p in params:
        info, annotation = infos.get(p.name), hints.get(p.name)
        name = _value_name(p, info, annotation)
        if isinstance(p, TyperArgument):
            name = (name or p.name.upper()) + ("..." if p.nargs == -1 else "")
            usage.append(name if p.required else f"[{name}]")
            left, panel = name, "Arguments"
        else:
            left, panel = (_names(p, pad) + (f" {name}" if name else "")), "Options"
        panel = getattr(info, "rich_help_panel", None) or panel
        help_text = _markup(p.help or (info.help if info is not None and info.help else ""))
        extras = _extras(p, info, annotation)
        if extras:
            help_text.append(f" [{'; '.join(extras)}]", style="dim")
        panels.setdefault(panel, []).append((left, help_text))
    if [p.name for p in params if (getattr(infos.get(p.name), "rich_help_panel", None) or "Options") == "Options"
            and not isinstance(p, TyperArgument)] == ["help"] and len(panels) > 2:
        panels[list(panels)[-2]] += panels.pop("Options")  # -h alone: at the end of the last panel
    if "Arguments" in panels:  # arguments first, as in the usage line
        panels = {"Arguments": panels.pop("Arguments"), **panels}
    return list(panels.items()), usage


def _epilog(text: str, width: int) -> Text:
    """Prose wraps to the terminal; an indented example line too long for it continues indented."""
    out = Text()
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip())
        if indent and len(line) > width:
            line = "\n".join(textwrap.wrap(line.strip(), width, initial_indent=" " * indent,
                                           subsequent_indent=" " * (indent + 4), break_long_words=False,
                                           break_on_hyphens=False))
        out.append_text(Text.from_markup(line))
        out.append("\n")
    out.rstrip()
    return out


def render_help(command: Any, ctx: Any, width: int | None = None) -> str:
    """The whole --help text of a command or of the app, laid out for `width` columns."""
    width = width or min(Console().width, MAX_WIDTH)
    buf = io.StringIO()
    console = Console(file=buf, width=width, highlight=False, no_color=bool(os.environ.get("NO_COLOR")),
                      force_terminal=os.isatty(1) or None, soft_wrap=False)
    usage = [ctx.command_path, "[OPTIONS]"]
    panels, arguments = _rows(command, ctx)
    usage += arguments
    if isinstance(command, TyperGroup):
        usage.append("COMMAND [ARGS]...")
    parts: list[Any] = [Padding(Text.assemble(("Usage: ", "yellow"), (" ".join(usage), "bold")), (0, 1))]
    help_text = inspect.cleandoc(command.help or "").partition("\f")[0]
    if help_text:
        first, _, rest = help_text.partition("\n\n")
        parts += [Text(""), Padding(_markup(first), (0, 1))]
        if rest:
            parts.append(Padding(Text.from_markup(rest, style="dim"), (0, 1)))
    parts.append(Text(""))
    if isinstance(command, TyperGroup):
        rows = []
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                rows.append((name, _markup(inspect.cleandoc(sub.help or "").split("\n\n")[0])))
        panels.append(("Commands", rows))
    left_width = max((len(left) for _, rows in panels for left, _ in rows), default=0)
    for title, rows in panels:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True, overflow="fold", min_width=min(left_width, width // 2))
        grid.add_column(overflow="fold")
        for left, text in rows:
            grid.add_row(Text(left), text)  # a name like --[no-]x is text, not markup
        parts.append(Panel(grid, title=title, title_align="left", border_style="dim"))
    if command.epilog:
        parts.append(Padding(_epilog(command.epilog, width - 2), (1, 1, 0, 1)))
    console.print(Padding(Group(*parts), (1, 0, 1, 0)))
    return buf.getvalue()


class HelpCommand(TyperCommand):
    """A Typer command whose --help is render_help's."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.write(render_help(self, ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """The usage line of error messages, spelled as --help spells it (`PATH...`, not Typer's `{PATH}...`)."""
        return ["[OPTIONS]", *_rows(self, ctx)[1]]


class HelpGroup(TyperGroup):
    """The app (`dfscan --help`), laid out as its commands are."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.write(render_help(self, ctx))
