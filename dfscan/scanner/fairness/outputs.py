"""The check's result as rich tables, JSON, a Markdown CI summary and JUnit XML; writing them.

Group, attribute and file names are the user's: shown as written, never read as rich markup or
Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from dfscan.scanner.fairness.analysis import FAIRNESS_KEYS, CheckResult, fmt, scope_order
from dfscan.scanner.markdown import md_escape
from dfscan.scanner.outputs import write_texts

# Per-group metric keys, in table order: (key in our output, column title).
GROUP_COLUMNS = (
    ("n", "n"), ("n_real", "real"), ("n_fake", "fake"), ("auc", "AUC"), ("acc", "ACC"),
    ("tpr", "TPR"), ("fpr", "FPR"), ("tnr", "TNR"), ("fnr", "FNR"),
    ("positive_rate", "pos.rate"), ("eer", "EER"), ("ap", "AP"),
)


def _fair_cell(doc: dict, scope: str, key: str) -> str:
    percent = key.startswith("F_")
    digits = 2 if percent else 3
    text = fmt(doc["fairness"][scope][key], digits)
    ci = doc["intervals"].get(scope, {}).get(key)
    if ci and ci["low"] is not None:
        text += f" [{fmt(ci['low'], digits)}, {fmt(ci['high'], digits)}]" + (" unstable" if ci.get("unstable") else "")
    return text


def _limit(g: dict) -> str:
    return f"{g['op']} {g['limit']:g}"


def _gate_value(g: dict) -> str:
    return fmt(g["value"], 0 if g["gate"] == "min-group" else 3)


def excluded_line(doc: dict) -> str:
    ex = doc["excluded"]
    if not ex["count"]:
        return f"all {doc['scored']} labelled items scored"
    kinds = ", ".join(f"{v} {k}" for k, v in ex["by_status"].items())
    first = ", ".join(i["path"] for i in ex["items"][:3]) + (", ..." if ex["count"] > 3 else "")
    return (f"{ex['count']} of {doc['labels']['rows']} labelled items excluded (no score: {kinds}): "
            f"{first}")


# A terminal narrower than this gets the tables' core columns; the rest are in --json/--markdown.
WIDE_TABLES = 140
NARROW_KEYS = ("n", "n_real", "n_fake", "auc", "tpr", "fpr")


def print_result(result: CheckResult, console: Any) -> None:
    """Rich tables: overall, per group of each scope, fairness gaps, gates, verdict.

    At 140 columns and up every metric is a column; narrower (an 80-column terminal) the tables
    keep n, real, fake, AUC, TPR and FPR, the gaps are one row per scope and gap, and nothing is
    cut: names fold. CI logs are not terminals and get the wide tables (at 160 columns).
    """
    from rich.markup import escape
    from rich.table import Table

    doc = result.report
    if not console.is_terminal and console.width < 160:
        from dfscan.scanner.console import make_console

        console = make_console(file=console.file, width=160, no_color=console.no_color)
    wide = console.width >= WIDE_TABLES
    # group, attribute and file names are the user's: shown as written, never read as rich markup
    console.print(f"[bold]fairness-check[/] {escape(doc['labels']['path'])} ({doc['labels']['format']}, "
                  f"{doc['labels']['rows']} rows) · scores from {escape(doc['scores']['source'])} · "
                  f"threshold {doc['threshold']:.4g} ({doc['threshold_source']}) · "
                  f"min-group {doc['settings']['min_group']}", overflow="fold")
    style = "yellow" if doc["excluded"]["count"] else "dim"
    console.print(f"[{style}]{escape(excluded_line(doc))}[/]", overflow="fold")

    columns = [(k, t) for k, t in GROUP_COLUMNS if wide or k in NARROW_KEYS]
    keys = [k for k, _ in columns]
    titles = [t for _, t in columns]
    table = Table(title="Overall", title_justify="left")
    for t in titles:
        table.add_column(t, justify="right")
    table.add_row(*[fmt(doc["overall"][k]) for k in keys])
    console.print(table)
    if not wide:
        rest = [t for k, t in GROUP_COLUMNS if k not in NARROW_KEYS]
        console.print(f"[dim]{', '.join(rest)}: in --json and --markdown (or at {WIDE_TABLES}+ columns)[/]")

    for scope in scope_order(doc):
        table = Table(title=f"By group: {escape(scope)}", title_justify="left")
        table.add_column("group", overflow="fold")
        for t in titles:
            table.add_column(t, justify="right")
        table.add_column("status", overflow="fold")
        for name, row in doc["by_group"][scope].items():
            status = "ok" if row["sufficient"] else f"[yellow]insufficient ({row['insufficient_reason']})[/]"
            table.add_row(escape(name), *[fmt(row[k]) for k in keys], status)
        console.print(table)

    for col, rows in doc["breakdown"].items():
        what = "each method's fakes against every real" if col == "method" else "rows of each value"
        table = Table(title=f"By {escape(col)} ({what}; not a fairness gate)", title_justify="left")
        table.add_column(escape(col), overflow="fold")
        for t in titles:
            table.add_column(t, justify="right")
        for name, row in rows.items():
            table.add_row(escape(name), *[fmt(row[k]) for k in keys])
        console.print(table)

    ci = (f", {int(doc['settings']['confidence'] * 100)}% bias-corrected bootstrap CI; unstable: the gap lies outside"
          " most resamples (small groups)") if doc["intervals"] else ""
    table = Table(title=f"Fairness gaps (F_* in percent{ci}; over groups with n >= min-group)",
                  title_justify="left")
    names = {"demographic_parity_difference": "DP diff", "equalized_odds_difference": "EO diff"}
    if wide:
        table.add_column("scope")
        for k in FAIRNESS_KEYS:
            table.add_column(names.get(k, k), justify="right")
        for scope in scope_order(doc):
            table.add_row(escape(scope), *[_fair_cell(doc, scope, k) for k in FAIRNESS_KEYS])
    else:  # one row per scope and gap: six columns of "value [low, high] unstable" do not fit
        table.add_column("scope", overflow="fold")
        table.add_column("gap")
        table.add_column("value", overflow="fold")
        for scope in scope_order(doc):
            for i, k in enumerate(FAIRNESS_KEYS):
                table.add_row(escape(scope) if i == 0 else "", names.get(k, k), _fair_cell(doc, scope, k),
                              end_section=i == len(FAIRNESS_KEYS) - 1)
    console.print(table)

    table = Table(title="Gates", title_justify="left")
    gate_columns = ("gate", "scope", "metric", "value", "limit", "result", "note") if wide else \
        ("gate", "scope", "value", "limit", "result", "note")  # the gate's name says its metric
    for col in gate_columns:
        table.add_column(col, justify="right" if col in ("value", "limit") else "left",
                         overflow="fold", no_wrap=col in ("gate", "result"))
    colour = {"pass": "green", "fail": "bold red", "warn": "yellow"}
    for g in doc["gates"]:
        cells = {"gate": g["gate"], "scope": escape(g["scope"]), "metric": g["metric"], "value": _gate_value(g),
                 "limit": _limit(g), "result": f"[{colour[g['status']]}]{g['status'].upper()}[/]",
                 "note": escape(g["note"])}
        table.add_row(*[cells[c] for c in gate_columns])
    console.print(table)
    failed = [g for g in doc["gates"] if g["status"] == "fail"]
    if failed:
        console.print(f"[bold red]FAILED[/]: {len(failed)} of {len(doc['gates'])} gates")
    else:
        warned = sum(g["status"] == "warn" for g in doc["gates"])
        extra = f" ({warned} warning{'s' if warned != 1 else ''})" if warned else ""
        console.print(f"[bold green]PASSED[/]: {len(doc['gates'])} gates{extra}")


def to_json(result: CheckResult) -> str:
    return json.dumps(result.report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def to_markdown(result: CheckResult) -> str:
    """A summary for CI step summaries ($GITHUB_STEP_SUMMARY): verdict first, then the tables."""
    doc = result.report
    failed = [g for g in doc["gates"] if g["status"] == "fail"]
    verdict = (f"❌ **FAILED** — {len(failed)} of {len(doc['gates'])} gates" if failed
               else f"✅ **PASSED** — {len(doc['gates'])} gates")
    out = ["## dfscan fairness-check", "", verdict, "",
           f"Labelled set {md_escape(Path(doc['labels']['path']).name)} ({doc['labels']['rows']} rows), "
           f"scores from {md_escape(doc['scores']['source'])}, threshold {doc['threshold']:.4g} "
           f"({doc['threshold_source']}), min-group {doc['settings']['min_group']}. "
           f"{md_escape(excluded_line(doc))}.", ""]
    out += [f"- ⚠️ {md_escape(w)}" for w in doc.get("warnings", [])] + ([""] if doc.get("warnings") else [])
    out += ["### Gates", "", "| gate | scope | metric | value | limit | result | note |",
            "|---|---|---|---:|---:|---|---|"]
    mark = {"pass": "✅ pass", "fail": "❌ fail", "warn": "⚠️ warn"}
    for g in doc["gates"]:
        out.append(f"| {g['gate']} | {md_escape(g['scope'])} | {g['metric']} | {_gate_value(g)} | "
                   f"{_limit(g)} | {mark[g['status']]} | {md_escape(g['note'])} |")
    ci = " (95% bias-corrected bootstrap interval; *unstable*: the gap lies outside most resamples)" if doc["intervals"] else ""
    out += ["", f"### Fairness gaps{ci}", "",
            "| scope | " + " | ".join(FAIRNESS_KEYS) + " |",
            "|---|" + "---:|" * len(FAIRNESS_KEYS)]
    for scope in scope_order(doc):
        out.append(f"| {md_escape(scope)} | " + " | ".join(_fair_cell(doc, scope, k) for k in FAIRNESS_KEYS) + " |")
    out += ["", "F_* in percent (PG-FDD); Fairlearn differences as fractions.", ""]
    titles = [t for _, t in GROUP_COLUMNS]
    out += ["### Overall", "", "| " + " | ".join(titles) + " |", "|" + "---:|" * len(titles),
            "| " + " | ".join(fmt(doc["overall"][k]) for k, _ in GROUP_COLUMNS) + " |", ""]
    for scope in scope_order(doc):
        out += [f"### By group: {md_escape(scope)}", "", "| group | " + " | ".join(titles) + " | status |",
                "|---|" + "---:|" * len(titles) + "---|"]
        for name, row in doc["by_group"][scope].items():
            status = "ok" if row["sufficient"] else f"⚠️ insufficient ({row['insufficient_reason']})"
            out.append(f"| {md_escape(name)} | " + " | ".join(fmt(row[k]) for k, _ in GROUP_COLUMNS)
                       + f" | {status} |")
        out.append("")
    for col, rows in doc["breakdown"].items():
        what = "each method's fakes against every real" if col == "method" else "rows of each value"
        out += [f"### By {col} ({what}; not a fairness gate)", "", f"| {col} | " + " | ".join(titles) + " |",
                "|---|" + "---:|" * len(titles)]
        out += [f"| {md_escape(name)} | " + " | ".join(fmt(row[k]) for k, _ in GROUP_COLUMNS) + " |"
                for name, row in rows.items()]
        out.append("")
    return "\n".join(out)


def to_junit(result: CheckResult) -> str:
    """JUnit XML, one test case per gate, so CI dashboards list each gate with its value."""
    doc = result.report
    gates = doc["gates"]
    failures = sum(g["status"] == "fail" for g in gates)
    suites = ET.Element("testsuites", name="dfscan fairness-check", tests=str(len(gates)),
                        failures=str(failures), errors="0")
    suite = ET.SubElement(suites, "testsuite", name="dfscan.fairness-check", tests=str(len(gates)),
                          failures=str(failures), errors="0", skipped="0",
                          timestamp=doc["created"])
    for g in gates:
        case = ET.SubElement(suite, "testcase", classname=f"dfscan.fairness.{g['scope']}",
                             name=f"{g['gate']} {g['metric']} {_limit(g)} ({g['scope']})",
                             time="0")
        value = "n/a" if g["value"] is None else _gate_value(g)
        text = (f"{g['metric']} = {value}, limit {_limit(g)} "
                f"({g['scope']}){': ' + g['note'] if g['note'] else ''}")
        if g["status"] == "fail":
            ET.SubElement(case, "failure", message=text, type="GateFailed").text = text
        else:
            ET.SubElement(case, "system-out").text = f"{g['status']}: {text}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_outputs(result: CheckResult, *, json_path: str | Path | None = None,
                  markdown: str | Path | None = None, junit: str | Path | None = None,
                  plots: str | Path | None = None) -> list[Path]:
    """Write each output asked for (atomically); returns the paths written."""
    from dfscan.scanner.fairness.plots import write_plots

    written = write_texts([(json_path, lambda: to_json(result)), (markdown, lambda: to_markdown(result)),
                           (junit, lambda: to_junit(result))])
    if plots:
        written += write_plots(result, plots)
    return written
