"""One place for rich consoles, one-line errors and exit codes, so every command behaves alike."""

from __future__ import annotations

import functools
import os
import sys
import unicodedata
from typing import TYPE_CHECKING, Any, Callable, Iterable, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.segment import Segment
from rich.text import Text

from dfscan.core.errors import InputError

if TYPE_CHECKING:  # rich.progress is imported when a bar or spinner is drawn
    from rich.progress import Progress, TaskID

# Exit codes (DESIGN.md): 0 done, 1 a gate failed, 2 bad usage/input, 3 some inputs unreadable.
EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3

# What a terminal acts on or hides rather than shows: C0/C1 controls and DEL (ESC starts sequences
# that recolour, retitle or clear the terminal, or write to its clipboard), format characters (bidi
# overrides that reorder a line, zero-width ones), line and paragraph separators, and lone
# surrogates (the non-UTF-8 bytes of a file name, which a UTF-8 stream cannot even encode).
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_KEPT = frozenset("\n\t")


def _shown(c: str) -> str:
    if c in _KEPT or unicodedata.category(c) not in _HIDDEN:
        return c
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the file name's own byte
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` with every character a terminal would act on or hide written as its escape
    (ESC as \\x1b, U+202E as \\u202e, a non-UTF-8 byte of a file name as \\xff); newlines and tabs
    stay. File names and checkpoint metadata are anyone's: printed raw, they could
    rewrite the terminal or make one name look like another. Reports keep the text as it is."""
    if text.isprintable():
        return text
    return "".join(_shown(c) for c in text)


class SafeConsole(Console):
    """A rich Console that shows every character of what it prints (`printable`) and sends the
    terminal only rich's own styles and cursor moves. Strings are cleaned before rich measures
    them (render_str: tables keep their shape); anything else is cleaned segment by segment."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text), **kwargs)

    def render(self, renderable: Any, options: Any = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control is None:
                shown = printable(segment.text)
                if shown != segment.text:
                    segment = Segment(shown, segment.style)
            yield segment


def make_console(**kwargs: Any) -> SafeConsole:
    """Every console dfscan prints through (NO_COLOR honoured, no auto-highlighting)."""
    kwargs.setdefault("no_color", bool(os.environ.get("NO_COLOR")))
    kwargs.setdefault("highlight", False)
    return SafeConsole(**kwargs)


console = make_console()
err_console = make_console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one line to stderr and exit; never a traceback for the user's mistakes."""
    # messages quote the user's paths and values: `[/x]` or `[tool.x]` in them is text, not markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, markup=True)
    raise typer.Exit(code)


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn InputError (and a missing file) raised below the CLI into one line and exit 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            fail(str(exc), getattr(exc, "exit_code", EXIT_USAGE))
        except FileNotFoundError as exc:
            fail(f"file not found: {exc.filename or exc}")
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130)

    return wrapper


def quiet_env() -> None:
    """Silence TensorFlow-Lite / absl start-up chatter from MediaPipe before it is imported."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not sys.warnoptions:
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning, module="google.protobuf")


class FileProgress:
    """A transient rich progress bar on stderr over files, with a free-text status column.

    `status(p)` turns the library's progress record (which has `.total` and `.done`) into the
    text shown after the count, e.g. faces/s; disabled (for --quiet) it draws nothing.
    """

    def __init__(self, title: str, *, enabled: bool = True, unit: str = "files",
                 status: Callable[[Any], str] | None = None):
        self.title, self.unit, self.enabled, self.status = title, unit, enabled, status
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> "FileProgress":
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn(self.title), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit),
                                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                console=err_console, transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task(self.title, total=None, status="")
        return self

    def update(self, p) -> None:
        if self.bar is not None and self.task is not None:  # both set by __enter__
            status = getattr(p, "note", "") or (self.status(p) if self.status else "")
            self.bar.update(self.task, total=p.total, completed=p.done, status=status)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


class Steps:
    """What a long, bar-less command is doing now, on stderr, so it is never silent for long.

    In a terminal a transient spinner shows the current step and the time spent; elsewhere (CI
    logs, a pipe) each step is one line, since a spinner is not drawn there. Disabled: nothing.
    """

    def __init__(self, *, enabled: bool = True, out: Console | None = None):
        self.enabled, self.out = enabled, out or err_console
        self.live: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> "Steps":
        if self.enabled and self.out.is_terminal:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.live = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=self.out, transient=True)
            self.live.__enter__()
            self.task = self.live.add_task("", total=None)
        return self

    def __call__(self, text: str) -> None:
        """Start the step `text` (a few words: what is being done, and how long it may take)."""
        if self.live is not None and self.task is not None:  # both set by __enter__
            self.live.update(self.task, description=escape(text))
        elif self.enabled:
            self.out.print(f"{escape(text)} ...", soft_wrap=True, highlight=False)

    def done(self) -> None:
        """Clear the spinner before the results are printed (a no-op without one)."""
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)


def reflow(text: str) -> str:
    """Join each prose paragraph of a help epilog into one line and keep indented example lines.

    Typer's rich help keeps every newline, so prose wrapped at 100 columns in the source breaks
    raggedly at 80 in a terminal; joined, rich wraps it to the terminal's width.
    """
    out: list[str] = []
    for line in text.strip("\n").split("\n"):
        prose = line.strip() and not line.startswith(" ")
        if prose and out and out[-1].strip() and not out[-1].startswith(" "):
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return "\n".join(out)
