"""fairness-check: a labelled set and detector scores → per-group metrics, fairness gaps, CI gates.

Why a library and not CLI code: CI runs the command, tests and notebooks call these functions.
The metric formulas live only in `dfscan/core/metrics.py`, so training validation and this release
check can never disagree about what "F_FPR" means. Split the way Fairlearn splits its metrics:
`labels` (reading), `scores`, `analysis` (metrics, bootstrap), `gates`, `config`, `outputs`
(terminal, JSON, Markdown, JUnit), `plots`, and `check` tying them; the names below are the
package's public surface.

Policy for small groups (documented in docs/fairness-check.md): a group with fewer than
`min_group` scored items, or with only real or only fake items (no AUC, no FPR or no TPR), is
marked `insufficient`; fairness gaps and gates are computed over the sufficient groups only, and
a `min-group` gate per scope fails while any group is insufficient — unless `allow_small_groups`
is set, when it is reported as `warn`. A gate whose value cannot be computed (fewer than two
sufficient groups) always fails, allow_small_groups or not. Nothing small or one-sided passes
silently. Group names are compared ignoring case and Unicode normalisation, and names that mix
look-alike scripts or look like another group are warned about (`labels.group_spellings`).
"""

from dfscan.core.labels import PGFDD_OPTIONAL, PGFDD_REQUIRED
from dfscan.scanner.fairness.analysis import (
                                       BREAKDOWN_COLUMNS,
                                       FAIRNESS_KEYS,
                                       INTERSECTION,
                                       SCHEMA,
                                       CheckResult,
                                       analyse,
)
from dfscan.scanner.fairness.check import run_check
from dfscan.scanner.fairness.config import merge_options, read_config
from dfscan.scanner.fairness.gates import ABSOLUTE, GATES, CheckOptions, evaluate_gates
from dfscan.scanner.fairness.labels import LabelledSet, read_labels
from dfscan.scanner.fairness.outputs import (
                                       GROUP_COLUMNS,
                                       excluded_line,
                                       print_result,
                                       to_json,
                                       to_junit,
                                       to_markdown,
                                       write_outputs,
)
from dfscan.scanner.fairness.plots import write_plots
from dfscan.scanner.fairness.scores import Scores, load_report, score_with_pipeline, scores_from_report

__all__ = [
    "ABSOLUTE", "BREAKDOWN_COLUMNS", "FAIRNESS_KEYS", "GATES", "GROUP_COLUMNS", "INTERSECTION",
    "PGFDD_OPTIONAL", "PGFDD_REQUIRED", "SCHEMA", "CheckOptions", "CheckResult", "LabelledSet", "Scores",
    "analyse", "evaluate_gates", "excluded_line", "load_report", "merge_options", "print_result",
    "read_config", "read_labels", "run_check", "score_with_pipeline", "scores_from_report", "to_json",
    "to_junit", "to_markdown", "write_outputs", "write_plots",
]
