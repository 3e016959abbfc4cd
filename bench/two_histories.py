"""The model against the baseline on both kinds of history, over several seeds (docs/backtest.md).

For each seed: the project's own history (`fraudwatch generate`) backtested with the default periods,
and the second kind (`fraudwatch generate --kind second`) backtested after a warm-up, periods by date;
each backtest's metrics.json gives the model's and the baseline's ROC AUC and average precision on the
test period. Prints one line per run, then the mean and spread (sample standard deviation) per history.

Run: .venv/bin/python -m bench.two_histories [--transactions N] [--seeds 7 8 9]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from infra.cli import main as fraudwatch

METRICS = ("average_precision", "roc_auc")
SECOND_PERIODS = ["--train-start", "2026-03-29", "--train-end", "2026-04-12", "--test-start", "2026-04-19"]
"""60 days from 2026-03-01: 28 days of warm-up, 14 of training, a 7-day gap, the test to the end."""


def run(kind: str, seed: int, transactions: int, directory: Path) -> dict[str, dict[str, float]]:
    """Generate one history and backtest it; each model's figures."""
    data = directory / f"{kind}-{seed}.parquet"
    generate = ["generate", "--kind", kind, "--transactions", str(transactions), "--days", "60"]
    assert fraudwatch([*generate, "--seed", str(seed), "--out", str(data)]) == 0
    out = directory / f"{kind}-{seed}"
    periods = SECOND_PERIODS if kind == "second" else []
    assert (
        fraudwatch(["backtest", str(data), *periods, "--no-compare", "--seed", str(seed), "--out", str(out)])
        == 0
    )
    models = json.loads((out / "metrics.json").read_text())["models"]
    for name in ("with_merchant_risk", "baseline"):
        recall = ", ".join(f"{p} {r:.1%}" for p, r in models[name]["pattern_recall"].items())
        print(f"{kind} seed {seed} {name}: recall at 1% FPR per pattern: {recall}")
    return {name: {m: float(models[name][m]) for m in METRICS} for name in ("with_merchant_risk", "baseline")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--transactions", type=int, default=300_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    args = parser.parse_args(argv)
    started = time.perf_counter()
    lines = []
    with tempfile.TemporaryDirectory() as scratch:
        for kind in ("project", "second"):
            runs = [run(kind, seed, args.transactions, Path(scratch)) for seed in args.seeds]
            for seed, figures in zip(args.seeds, runs, strict=True):
                ours, base = figures["with_merchant_risk"], figures["baseline"]
                ap, auc = "average_precision", "roc_auc"
                lines.append(
                    f"{kind} seed {seed}: AP {ours[ap]:.4f} vs {base[ap]:.4f}, "
                    f"ROC AUC {ours[auc]:.4f} vs {base[auc]:.4f}"
                )
            for metric in METRICS:
                for name in ("with_merchant_risk", "baseline"):
                    values = [r[name][metric] for r in runs]
                    spread = statistics.stdev(values) if len(values) > 1 else 0.0
                    lines.append(
                        f"{kind} {name} {metric}: mean {statistics.mean(values):.4f}, sd {spread:.4f}"
                    )
                margins = [r["with_merchant_risk"][metric] - r["baseline"][metric] for r in runs]
                lines.append(f"{kind} model - baseline {metric}: " + ", ".join(f"{m:+.4f}" for m in margins))
    print("\n".join(lines))
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
