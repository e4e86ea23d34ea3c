"""Per-scope charts (PNG): every group's ROC curve, and FPR/TPR per group at the threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfscan.scanner.fairness.analysis import CheckResult, fmt, scope_order
from dfscan.scanner.outputs import save_figure, slug


def _plain(text: str) -> str:
    """A user's string as literal matplotlib text: `$...$` in a group name is not mathtext
    (a malformed one would stop the plots with a parse error)."""
    return text.replace("$", r"\$")


def write_plots(result: CheckResult, out_dir: str | Path) -> list[Path]:
    """Per scope: ROC curve of every group, and FPR/TPR per group at the threshold (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = result.report
    written: list[Path] = []
    for scope in scope_order(doc):
        g = result.groups[scope]
        rows = doc["by_group"][scope]
        fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
        ax.plot([0, 1], [0, 1], color="0.75", lw=1, ls=":", label="chance")
        cmap = plt.get_cmap("tab10")
        markers = "osD^vP*Xh<>p"
        dots = []
        for i, (name, row) in enumerate(rows.items()):
            sel = g == name
            y, p = result.y[sel], result.p[sel]
            if row["n_real"] == 0 or row["n_fake"] == 0:
                continue
            fpr, tpr, _ = roc_curve(y, p, pos_label=1)
            small = "" if row["sufficient"] else f", n<{doc['settings']['min_group']}"
            colour, marker = cmap(i % 10), markers[i % len(markers)]
            # identical curves hide each other: each group gets its own marker along its curve and
            # its operating point in the legend, so a covered curve is still named and readable
            ax.plot(fpr, tpr, color=colour, lw=1.6, alpha=0.85, ls="-" if row["sufficient"] else "--",
                    marker=marker, markevery=max(1, len(fpr) // 6), ms=4, clip_on=False,
                    label=f"{_plain(name)} (AUC {fmt(row['auc'])}, n={row['n']}{small}; "
                          f"@thr FPR {fmt(row['fpr'], 2)} TPR {fmt(row['tpr'], 2)})")
            dots.append((row["fpr"], row["tpr"], colour, marker))
        for x, y, colour, marker in dots:  # on top of every curve, visible in the corners too
            ax.plot([x], [y], marker=marker, color=colour, ms=9, mec="black", mew=0.8, ls="none",
                    zorder=5, clip_on=False)
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.02), xlabel="False positive rate (real flagged fake)",
               ylabel="True positive rate (fake caught)",
               title=f"ROC per group: {_plain(scope)} (large markers: threshold {doc['threshold']:.3g})")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        written.append(save_figure(fig, out_dir / f"roc_{slug(scope)}.png"))

        names = list(rows)
        x = np.arange(len(names))
        fpr = [rows[k]["fpr"] if rows[k]["fpr"] is not None else np.nan for k in names]
        tpr = [rows[k]["tpr"] if rows[k]["tpr"] is not None else np.nan for k in names]
        fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(names) + 2), 4.8), dpi=110)
        b1 = ax.bar(x - 0.2, fpr, 0.4, label="FPR (real flagged fake)", color="#d62728")
        b2 = ax.bar(x + 0.2, tpr, 0.4, label="TPR (fake caught)", color="#1f77b4")
        for bars in (b1, b2):
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.axhline(doc["overall"]["fpr"] or 0, color="#d62728", lw=1, ls="--", alpha=0.6,
                   label="overall FPR")
        ax.axhline(doc["overall"]["tpr"] or 0, color="#1f77b4", lw=1, ls="--", alpha=0.6,
                   label="overall TPR")
        labels = [f"{_plain(k)}\nn={rows[k]['n']}" + ("" if rows[k]["sufficient"] else
                                                     f" ({rows[k]['insufficient_reason']})") for k in names]
        ax.set_xticks(x, labels, fontsize=8, rotation=30 if len(names) > 5 else 0,
                      ha="right" if len(names) > 5 else "center")
        ax.set(ylim=(0, 1.35), yticks=np.linspace(0, 1, 6), ylabel="rate", title=f"FPR and TPR per group: {_plain(scope)}, threshold {doc['threshold']:.3g}")
        ax.legend(fontsize=8, ncols=4, loc="upper center")  # above the bars (rates stop at 1)
        ax.grid(axis="y", alpha=0.3)
        written.append(save_figure(fig, out_dir / f"rates_{slug(scope)}.png"))
    return written
