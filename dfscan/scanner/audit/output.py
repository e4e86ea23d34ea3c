"""The audit's outputs: a Rich table, JSON, Markdown for CI summaries, PNG plots of the worst features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dfscan.scanner.audit.run import AuditResult
from dfscan.scanner.markdown import md_escape
from dfscan.scanner.outputs import save_figure, slug, write_texts

PLOTTED = 4  # the worst features get a plot each


def _auc_text(f: dict[str, Any]) -> str:
    if f["auc"] is None:
        return "n/a"
    ci = f" [{f['ci95'][0]:.2f}, {f['ci95'][1]:.2f}]" if f.get("ci95") else ""
    return f"{f['auc']:.3f}{ci}"


def verdict(doc: dict[str, Any]) -> str:
    if doc.get("too_few"):
        sc, need = doc["scored"], doc["settings"]["min_items"]
        return (f"FAILED: too few items to audit: {sc['real']} real and {sc['fake']} fake read, the gate needs "
                f"{need} of each (--min-items); no AUC on so few items is a finding")
    if doc["shortcuts"]:
        return f"FAILED: {len(doc['shortcuts'])} shortcut(s) over AUC {doc['settings']['max_shortcut_auc']:g}: " \
               + ", ".join(doc["shortcuts"])
    return f"PASSED: no feature separates real from fake above AUC {doc['settings']['max_shortcut_auc']:g}"


def model_auc_text(m: dict[str, Any]) -> str:
    """The metadata model's out-of-fold AUC, which is not folded: under 0.5 it learned nothing."""
    if m["auc"] is None:
        return "n/a"
    return f"{m['auc']:.3f}" + (" (< 0.5: chance)" if m["auc"] < 0.5 else "")


MODEL_AUC_NOTE = ("a feature's AUC is folded to >= 0.5 (lower in fakes separates as well as higher); the metadata "
                  "model's is out-of-fold and not folded: under 0.5 it learned nothing (chance), not a reversed "
                  "shortcut")


def print_result(result: AuditResult, console: Any) -> None:
    from rich.console import JustifyMethod
    from rich.markup import escape
    from rich.table import Table

    # feature (a --feature column), group and file names are the user's: text, never rich markup
    doc = result.report
    table = Table(title=f"Metadata shortcuts in {escape(Path(doc['labels']['path']).name)} "
                        f"({doc['scored']['real']} real, {doc['scored']['fake']} fake scored)")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("feature", "left"), ("kind", "left"), ("n", "right"), ("AUC [95% CI]", "right"),
        ("how it separates", "left"), ("", "left"))
    for col, justify in columns:
        table.add_column(col, justify=justify)
    for f in doc["features"]:
        mark = "[bold red]SHORTCUT[/]" if f["shortcut"] else ""
        table.add_row(escape(f["feature"]), f["kind"], str(f["n"]), _auc_text(f), escape(f["detail"]), mark)
    m = doc["model"]
    table.add_row(m["name"], "all", str(doc["scored"]["rows"]), model_auc_text(m),
                  escape(", ".join(t["feature"] for t in m["top_features"][:3]) or m["note"]),
                  "[bold red]SHORTCUT[/]" if m["shortcut"] else "", end_section=True)
    console.print(table)
    console.print(f"[dim]{MODEL_AUC_NOTE}[/]")
    for attr, groups in doc["by_group"].items():
        worst = [(g, e) for g, e in groups.items() if e["auc"] is not None]
        if worst:
            g, e = max(worst, key=lambda ge: ge[1]["auc"])
            console.print(f"by {escape(attr)}: worst within-group feature {escape(str(e['worst_feature']))} "
                          f"AUC {e['auc']:.3f} in {escape(repr(g))}" + (" [bold red](shortcut)[/]" if e["shortcut"] else ""),
                          soft_wrap=True)
    for f in doc["features"]:
        if f["suggestion"]:
            # the suggestions quote commands (`-vf scale=W:H`, `[...]`): text, not markup
            console.print(f"[bold]{escape(f['feature'])}[/]: {escape(f['suggestion'])}", soft_wrap=True)
    if doc["excluded"]:
        console.print(f"[yellow]{len(doc['excluded'])} item(s) could not be read[/] (first: "
                      f"{escape(doc['excluded'][0]['path'])}: {doc['excluded'][0]['code']})", soft_wrap=True)
    colour = "green" if doc["passed"] else "red"
    console.print(f"[bold {colour}]{escape(verdict(doc))}[/]", soft_wrap=True)


def to_json(result: AuditResult) -> str:
    return json.dumps(result.report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def to_markdown(result: AuditResult) -> str:
    doc = result.report
    mark = "✅" if doc["passed"] else "❌"
    out = ["## dfscan audit", "", f"{mark} **{md_escape(verdict(doc))}**", "",
           f"Labelled set `{md_escape(Path(doc['labels']['path']).name)}`: {doc['scored']['real']} real and "
           f"{doc['scored']['fake']} fake items read, {len(doc['excluded'])} unreadable. 0.5: no shortcut, 95 % bootstrap "
           f"interval; {md_escape(MODEL_AUC_NOTE)}.", "",
           "| feature | kind | n | AUC [95% CI] | how it separates | shortcut |", "|---|---|---:|---:|---|---|"]
    for f in doc["features"]:
        out.append(f"| {md_escape(f['feature'])} | {f['kind']} | {f['n']} | {_auc_text(f)} | "
                   f"{md_escape(f['detail'])} | {'❌' if f['shortcut'] else ''} |")
    m = doc["model"]
    out.append(f"| **{m['name']}** | all | {doc['scored']['rows']} | "
               f"{md_escape(model_auc_text(m))} | "
               f"{md_escape(', '.join(t['feature'] for t in m['top_features'][:3]) or m['note'])} | "
               f"{'❌' if m['shortcut'] else ''} |")
    out += ["", f"Metadata model: {md_escape(m['method'])}.", ""]
    for attr, groups in doc["by_group"].items():
        out += [f"### Worst feature within each {md_escape(attr)} group", "",
                "| group | real | fake | feature | AUC |", "|---|---:|---:|---|---:|"]
        for g, e in groups.items():
            out.append(f"| {md_escape(g)} | {e['n_real']} | {e['n_fake']} | {md_escape(e['worst_feature'] or '')} | "
                       f"{'n/a' if e['auc'] is None else format(e['auc'], '.3f')} |")
        out.append("")
    tips = [f for f in doc["features"] if f["suggestion"]]
    if tips:
        out += ["### Suggested clean-up", ""]
        out += [f"- **{md_escape(f['feature'])}**: `{f['suggestion']}`" for f in tips]
        out.append("")
    return "\n".join(out)


def write_plots(result: AuditResult, out_dir: str | Path) -> list[Path]:
    """One PNG per worst feature: its distribution in reals and fakes, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for f in [f for f in result.report["features"] if f["auc"] is not None][:PLOTTED]:
        vals = result.values[f["feature"]]
        real = [v for v, t in zip(vals, result.y) if v is not None and t == 0]
        fake = [v for v, t in zip(vals, result.y) if v is not None and t == 1]
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        if f["kind"] == "numeric":
            both = np.asarray(real + fake, dtype=np.float64)
            bins = np.histogram_bin_edges(both, bins=min(30, max(5, len(both) // 4)))
            ax.hist([real, fake], bins=bins.tolist(), label=["real", "fake"], color=["#1f77b4", "#d62728"], alpha=0.85)
            ax.set(xlabel=f["feature"], ylabel="items")
        else:
            cats = sorted({str(v) for v in real + fake})
            x = np.arange(len(cats))
            share = [[sum(str(v) == c for v in side) / max(len(side), 1) for c in cats] for side in (real, fake)]
            ax.bar(x - 0.2, share[0], 0.4, label="real", color="#1f77b4")
            ax.bar(x + 0.2, share[1], 0.4, label="fake", color="#d62728")
            ax.set_xticks(x, cats, rotation=30 if len(cats) > 4 else 0, ha="right" if len(cats) > 4 else "center")
            ax.set(ylabel="share of items", ylim=(0, 1.05))
        ax.set_title(f"{f['feature']}: AUC {f['auc']:.3f}" + (" (shortcut)" if f["shortcut"] else ""))
        ax.legend()
        ax.grid(alpha=0.3)
        written.append(save_figure(fig, out_dir / f"audit_{slug(f['feature'], empty='')}.png"))
    return written


def write_outputs(result: AuditResult, *, json_path: str | Path | None = None, markdown: str | Path | None = None,
                  plots: str | Path | None = None) -> list[Path]:
    written = write_texts([(json_path, lambda: to_json(result)), (markdown, lambda: to_markdown(result))])
    if plots:
        written += write_plots(result, plots)
    return written
