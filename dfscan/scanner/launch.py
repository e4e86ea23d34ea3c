"""The `dfscan` console script's entry point, kept apart from dfscan.scanner.cli on purpose.

Scan workers are spawned processes, and a spawned process first imports the script that
launched the parent (as `__mp_main__`). With `from dfscan.scanner.cli import app` at the script's top,
every worker paid for Typer, Rich and every command module it never uses (0.3 s of start-up on
the 2-core dev box); this module imports nothing until the command runs.
"""

from __future__ import annotations


def main() -> None:
    from dfscan.scanner.cli import app

    app()
