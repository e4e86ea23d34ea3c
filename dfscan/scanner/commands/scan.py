"""`dfscan scan`: score every person in every video/image; write the report; exit 0/1/2/3."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from dfscan.scanner.commands.choices import BackendChoice, FaceModel, Format
from dfscan.scanner.commands.shared import (
    MODEL,
    OUTPUT,
    RAY,
    SAMPLING,
    face_model_option,
    fps_option,
    frames_option,
    timeout_option,
    workers_option,
)
from dfscan.scanner.console import (
    EXIT_GATE,
    EXIT_OK,
    EXIT_PARTIAL,
    FileProgress,
    console,
    err_console,
    friendly_errors,
    reflow,
)
from dfscan.scanner.options import MAX_DETECT_EVERY, ScanOptions

EXAMPLE = """
Examples:

    dfscan scan ./uploads --report out.json

    dfscan scan clip.mp4 photos/ --format csv --report out.csv --fail-on-fake

    dfscan scan faces/ --crops --backend onnxruntime --report crops.jsonl

    dfscan scan ./uploads --report out.json --resume   # after a Ctrl-C

    dfscan scan s3://bucket/clips/ --ray-address auto --report out.json

Exit codes: 0 done; 1 --fail-on-fake found a fake; 2 bad usage or weights, or the report
cannot be written (one scan at a time per report); 3 the scan finished but some files could
not be read (they are error items in the report); 130 interrupted (Ctrl-C: the report holds
the finished files).
"""


class Show(str, Enum):
    all = "all"
    fake = "fake"


class Strategy(str, Enum):
    mean = "mean"
    confident = "confident"


@friendly_errors
def scan(
    paths: List[str] = typer.Argument(..., metavar="PATH", help="Video/image files and folders (searched recursively); s3:// or gs:// URIs with --ray."),
    report: Optional[Path] = typer.Option(None, "--report", "-o", help="Write the report here (default: to stdout).", rich_help_panel=OUTPUT),
    fmt: Optional[Format] = typer.Option(None, "--format", "-f", help="Report format (default: from the report's extension, else json).", rich_help_panel=OUTPUT),
    frames: int = frames_option(),
    fps: Optional[float] = fps_option(),
    keyframes: bool = typer.Option(False, "--keyframes", metavar="", help="Sample only keyframes (fast on long videos).", rich_help_panel=SAMPLING),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Face crops per inference batch (default: the backend's).", rich_help_panel=MODEL),
    workers: Optional[int] = workers_option(),
    backend: BackendChoice = typer.Option(BackendChoice.auto, "--backend", help="Inference backend.", rich_help_panel=MODEL),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Detector checkpoint (.safetensors; default: the shipped model).", rich_help_panel=MODEL),
    engine: Optional[Path] = typer.Option(None, "--engine", help="TensorRT engine folder built by `dfscan build-engine`.", rich_help_panel=MODEL),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0, help="Fake if p_fake >= this (default: the model's calibrated threshold).", rich_help_panel=MODEL),
    crops: bool = typer.Option(False, "--crops", metavar="", help="Inputs are already-aligned face crops: no face detection.", rich_help_panel=SAMPLING),
    face_model: FaceModel = face_model_option(),
    tile_every: int = typer.Option(ScanOptions.tile_every, "--tile-every", min=0, help="Also search every K-th frame of 1280 px and up in tiles, for small faces (0: never).", rich_help_panel=SAMPLING),
    detect_every: int = typer.Option(ScanOptions.detect_every, "--detect-every", min=1, max=MAX_DETECT_EVERY, help="Detect faces on every K-th sampled frame, interpolating between (1: every frame).", rich_help_panel=SAMPLING),
    strategy: Strategy = typer.Option(Strategy.mean, "--strategy", help="Frame → person score: mean, or the DFDC winner's confident rule.", rich_help_panel=MODEL),
    timeout: float = timeout_option("a sampled frame decoded, its crops scored", "an error item `timeout`"),
    resume: bool = typer.Option(False, "--resume", metavar="", help="Keep items of an earlier run of this report for files that did not change.", rich_help_panel=OUTPUT),
    fail_on_fake: bool = typer.Option(False, "--fail-on-fake", metavar="", help="Exit 1 if any file is judged fake.", rich_help_panel=OUTPUT),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bar and no summary table.", rich_help_panel=OUTPUT),
    show: Show = typer.Option(Show.all, "--show", help="Files listed in the summary: all (fakes first) or only those judged fake.", rich_help_panel=OUTPUT),
    ray: bool = typer.Option(False, "--ray", metavar="", help="Run the stages on Ray (pip install \"dfscan\\[ray]\"): a local Ray instance unless --ray-address.", rich_help_panel=RAY),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join (implies --ray): auto (RAY_ADDRESS or this node's cluster), host:port or ray://host:10001.", rich_help_panel=RAY),
    ray_cpu_tasks: Optional[int] = typer.Option(None, "--ray-cpu-tasks-per-node", min=1, help="Decode/detect/crop actors per node (default: the node's CPUs, less the CPU inference actors).", rich_help_panel=RAY),
    ray_actors_per_gpu: int = typer.Option(1, "--ray-actors-per-gpu", min=1, help="Inference actors sharing each GPU.", rich_help_panel=RAY),
    ray_max_in_flight: Optional[int] = typer.Option(None, "--ray-max-in-flight", min=1, help="Files being decoded at once across the cluster, which bounds memory (default: 2 per CPU actor).", rich_help_panel=RAY),
) -> None:
    """Scan videos and images for deepfakes: a score per person, per file."""
    from dfscan.scanner import report as rp
    from dfscan.scanner.pipeline import scan as run_scan
    from dfscan.scanner.pipeline import scan_to_report

    options = ScanOptions(
        frames=frames, fps=fps, keyframes=keyframes, batch_size=batch_size, workers=workers,
        backend=backend.value, weights=weights, engine=engine, threshold=threshold, crops=crops,
        face_model=face_model.value, tile_every=tile_every, detect_every=detect_every,
        strategy=strategy.value, timeout=timeout or None, resume=resume,
        report=report,
    )
    fmt_name = fmt.value if fmt else (None if report else "json")  # a report's name is read by the scan

    with FileProgress("scanning", enabled=not quiet, status=_faces_per_second) as progress:
        if ray or ray_address:
            from dfscan.scanner.ray_scan import RayOptions, scan_ray

            result = scan_ray(paths, options, RayOptions(address=ray_address, cpu_tasks_per_node=ray_cpu_tasks,
                                                         actors_per_gpu=ray_actors_per_gpu, max_in_flight=ray_max_in_flight),
                              fmt_name, progress=progress.update)
        elif report is not None:  # written before the report's lock is released
            result = scan_to_report(paths, options, fmt_name, progress=progress.update)
        else:
            result = run_scan(paths, options, progress=progress.update)

    if report is None:
        rp.print_report(result, fmt_name or "json", sys.stdout)  # never None here: no report file

    summary = result["summary"]
    if crops:
        _warn_unlike_crops(result)
    _warn_media(result)
    if not quiet:
        _print_summary(result, report, show.value)
    if summary.get("interrupted"):
        where = f" to {report}" if report else ""
        err_console.print(f"interrupted: wrote {summary['files']} finished items{where}; rerun with --resume to finish")
        raise typer.Exit(130)
    if fail_on_fake and summary["fakes"]:
        if quiet:  # the exit code alone does not say why
            err_console.print(f"--fail-on-fake: {summary['fakes']} file(s) judged fake"
                              + (f" (see {report})" if report else ""))
        raise typer.Exit(EXIT_GATE)
    if summary["error"]:
        if quiet:  # the exit code alone does not say why
            err_console.print(f"{summary['error']} file(s) could not be read: error items"
                              + (f" in {report}" if report else " in the report"))
        raise typer.Exit(EXIT_PARTIAL)
    raise typer.Exit(EXIT_OK)


def unlike_crops(result: dict) -> list[dict]:
    """--crops items that do not look like face crops: far from square, or much larger than a crop."""
    from dfscan.train.images import unlike_crop

    odd = []
    for item in result["items"]:
        media = item.get("media") or {}
        if item.get("kind") == "crop" and unlike_crop(media.get("width") or 0, media.get("height") or 0):
            odd.append(item)
    return odd


def _warn_unlike_crops(result: dict) -> None:
    from rich.markup import escape

    odd = unlike_crops(result)
    if odd:
        first = odd[0]
        err_console.print(f"[yellow]warning:[/] --crops: {len(odd)} input(s) do not look like face crops (e.g. "
                          f"{escape(first['path'])}, {first['media']['width']}x{first['media']['height']}); each was "
                          "centre-cropped and scored as one face. Scan without --crops to find the faces.")


def _warn_media(result: dict) -> None:
    """Files whose verdict does not cover all of them (media.warnings: streams not scanned, repaired timestamps)."""
    from rich.markup import escape

    flagged = [i for i in result["items"] if (i.get("media") or {}).get("warnings")]
    if flagged:
        first = flagged[0]
        err_console.print(f"[yellow]warning:[/] {len(flagged)} file(s) with media warnings (media.warnings in the "
                          f"report), e.g. {escape(first['path'])}: {escape(first['media']['warnings'][0])}")


def _faces_per_second(p) -> str:
    return f"{p.faces / p.elapsed:.1f} faces/s" if p.elapsed > 0 and p.faces else ""


def in_words(rate: float) -> str:
    """0.05 -> "about 1 in 20", 0.62 -> "about 2 in 3": a rate as people say it (else a percentage)."""
    if rate <= 0:
        return "none"
    if rate >= 1:
        return "all"
    if rate > 0.99:
        return "nearly all"
    if rate < 0.01:
        return "under 1 in 100"
    for denominator in (2, 3, 4, 5, 10, 6, 8, 20, 25, 50, 100):  # the plainest first
        numerator = max(1, int(rate * denominator + 0.5))
        if numerator < denominator and abs(numerator / denominator - rate) <= 0.05 * rate:
            return f"about {numerator} in {denominator}"
    return f"about {rate:.0%}"


def verdict_meaning(model: dict) -> str:
    """What a verdict means, in the words a newcomer needs: the rates behind the threshold, and
    that `real` is an absence of evidence."""
    rates = model.get("validation")
    said = ""
    if rates:
        said = f"On its validation set ({rates['on']}) this model called {in_words(rates['fpr'])} real faces fake"
        if rates.get("tpr") is not None:
            said += f" and caught {in_words(rates['tpr'])} fakes"
        said += "; other sources may differ. "
    return said + "`real` means no evidence of a deepfake was found, not that a file is authentic."


SHOW_ALL_UP_TO = 50  # --show all: files listed before "... and N more in the report"


def _print_summary(result: dict, report: Optional[Path], show: str = "all") -> None:
    from rich.markup import escape
    from rich.table import Table

    s = result["summary"]
    out = console if report is not None else err_console  # stdout holds the report when there is no file
    table = Table(title="dfscan scan", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("files", f"{s['files']} ({s['ok']} ok, {s['no_face']} no face, {s['error']} error"
                  + (f", {s['resumed']} resumed" if s.get("resumed") else "") + ")"
                  + (f"; {s['skipped']} other file(s) skipped (not video or image)" if s.get("skipped") else ""))
    thr = result["model"]["threshold"]
    table.add_row("verdicts", f"[red]{s['fakes']} fake[/] / {s['real']} real (fake when p_fake >= {thr:.3g})")
    table.add_row("meaning", escape(verdict_meaning(result["model"])))
    table.add_row("people", str(s.get("subjects", 0)))
    table.add_row("time", f"{s['seconds']:.1f} s ({s['throughput']['files_per_s']:.2f} files/s, "
                  f"{s['throughput']['faces_per_s']:.1f} faces/s)")
    table.add_row("model", f"{escape(result['model']['name'])} ({result['model']['backbone']})")
    if result["model"].get("caveat"):
        table.add_row("", f"[yellow]{escape(result['model']['caveat'])}[/]")
    table.add_row("backend", f"{result['backend']['name']} {result['backend']['device']} {result['backend']['precision']}")
    if report is not None:
        table.add_row("report", escape(str(report)))
    out.print(table)
    _print_files(result, out, show)
    errors = [i for i in result["items"] if i["status"] == "error"]
    if errors:
        t = Table(title="could not read", title_justify="left")
        t.add_column("file", overflow="fold", ratio=2)
        t.add_column("code", no_wrap=True)
        t.add_column("message", overflow="fold", ratio=3)
        for item in errors[:10]:
            t.add_row(escape(item["path"]), item["error"]["code"], escape(item["error"]["message"]))
        out.print(t)
        if len(errors) > 10:
            out.print(f"... and {len(errors) - 10} more in the report")


def _common_folder(paths: list[str]) -> str:
    """The folder every scanned file is under (names are shown from there), or '' for none."""
    local = [p for p in paths if "://" not in p]
    if len(local) != len(paths) or not local:
        return ""
    try:
        folder = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in local])
    except ValueError:
        return ""
    return "" if folder in ("", os.sep) else folder


def _print_files(result: dict, out, show: str) -> None:
    """Every file with a verdict (or only those judged fake), fakes first, score beside the
    threshold; names fold onto further lines rather than being cut."""
    from rich.markup import escape
    from rich.table import Table

    thr = result["model"]["threshold"]
    judged = [i for i in result["items"] if i.get("verdict") in ("fake", "real")]
    if show == "fake":
        judged = [i for i in judged if i["verdict"] == "fake"]
    if not judged:
        return
    judged.sort(key=lambda i: (i["verdict"] != "fake", -i["score"]))
    folder = _common_folder([i["path"] for i in result["items"]])
    title = "judged fake" if show == "fake" else "files"
    t = Table(title=title + (f" in {escape(folder)}" if folder else ""), title_justify="left")
    t.add_column("file", overflow="fold")
    t.add_column("verdict", no_wrap=True)
    t.add_column(f"p_fake (fake >= {thr:.3g})", justify="right", no_wrap=True)
    t.add_column("people fake", justify="right", no_wrap=True)
    limit = SHOW_ALL_UP_TO if show == "all" else 10
    for item in judged[:limit]:
        fake_people = sum(x["verdict"] == "fake" for x in item["subjects"])
        verdict = "[red]fake[/]" if item["verdict"] == "fake" else "real"
        name = os.path.relpath(item["path"], folder) if folder else item["path"]
        t.add_row(escape(name), verdict, f"{item['score']:.3f}", f"{fake_people} of {len(item['subjects'])}")
    out.print(t)
    if len(judged) > limit:
        out.print(f"... and {len(judged) - limit} more in the report")


def register(app: typer.Typer) -> None:
    app.command("scan", epilog=reflow(EXAMPLE))(scan)
