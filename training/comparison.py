"""Models side by side on the same rows: the tables every report shows (the backtest's, the training's).

The figures are `training.backtest.metrics.figures`; the first model is compared with the second (the
"change" column), the others are shown beside them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from training.backtest.metrics import Figures


def fraud_patterns(labels: np.ndarray, patterns: np.ndarray | None) -> dict[str, int]:
    """Each fraud pattern among the rows' frauds with its count, by name (empty without patterns)."""
    if patterns is None:
        return {}
    names, counts = np.unique(patterns[labels], return_counts=True)
    return {str(name): int(count) for name, count in zip(names.tolist(), counts.tolist(), strict=True)}


def side_by_side(
    results: dict[str, Figures], titles: dict[str, str], pattern_counts: dict[str, int]
) -> list[str]:
    """Markdown: the headline figures of each model, then recall per fraud pattern at 1% FPR."""
    names = list(results)
    k = results[names[0]].top_k
    change = f" | change vs {titles[names[1]]} |" if len(names) > 1 else " |"
    rows: list[tuple[str, Callable[[Figures], float], str]] = [
        ("ROC AUC", lambda f: f.roc_auc, "{:.4f}"),
        ("average precision", lambda f: f.average_precision, "{:.4f}"),
        ("recall at 1% FPR", lambda f: f.at_fpr.recall, "{:.1%}"),
        ("precision at 1% FPR", lambda f: f.at_fpr.precision, "{:.1%}"),
        (
            f"card precision top-{k} per day (mean, detected cards removed)",
            lambda f: f.mean_top_k_precision,
            "{:.1%}",
        ),
    ]
    lines = [
        "| metric | " + " | ".join(titles[n] for n in names) + change,
        "| --- " * (len(names) + 1 + (len(names) > 1)) + "|",
        *[_row(label, [getter(results[n]) for n in names], form) for label, getter, form in rows],
        "",
    ]
    if results[names[0]].pattern_recall:
        lines += [
            "Recall per fraud pattern at 1% FPR:",
            "",
            "| pattern | fraud transactions | " + " | ".join(titles[n] for n in names) + change,
            "| --- " * (len(names) + 2 + (len(names) > 1)) + "|",
            *[
                _row(
                    f"{pattern} | {count:,}",
                    [results[n].pattern_recall.get(pattern, math.nan) for n in names],
                    "{:.1%}",
                )
                for pattern, count in pattern_counts.items()
            ],
            "",
        ]
    return lines


def _row(label: str, values: list[float], form: str) -> str:
    cells = [_cell(value, form) for value in values]
    if len(values) > 1:
        change = values[0] - values[1]
        percent = form.endswith("%}")
        cells.append(
            "n/a" if math.isnan(change) else (f"{change * 100:+.1f} pts" if percent else f"{change:+.4f}")
        )
    return f"| {label} | " + " | ".join(cells) + " |"


def _cell(value: float, form: str) -> str:
    return "n/a" if math.isnan(value) else form.format(value)
