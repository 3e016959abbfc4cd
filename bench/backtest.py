"""Backtest on generated history: replay throughput (tx/s, budget 30,000) and the whole run's time by step.

The run is `fraudwatch backtest`'s own (`training.backtest.run.run_backtest`, timed by its Steps) on a
generated history, into a temporary directory. The replay (every transaction through the Lambda's
profile updates and features, labels fed back after 7 days) is the part the budget is on, from issue
6: at least 30,000 transactions per second on these machines. Beside it, the same replay without
labels shows what feeding them back costs, and the replay in one process (no worker processes) what
sharing it between processes gains. The replay's workers are not this process's children (forkserver),
so their CPU time is not counted: the replay's figures are wall time, inflated by whatever else the
machine runs (the load average is printed before and after).

Run: .venv/bin/python -m bench.backtest [--transactions N] [--days D]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench._common import machine, table
from training.backtest.config import BacktestConfig
from training.backtest.run import run_backtest
from training.features import PARALLEL_FROM, compute_features, default_workers
from training.pipeline import generated_history
from training.steps import Steps

BUDGET_TX_PER_SECOND = 30_000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--transactions", type=int, default=1_000_000, help="rows to generate (default 1,000,000)"
    )
    parser.add_argument("--days", type=int, default=60, help="days of history (default 60)")
    parser.add_argument("--train-days", type=int, default=35)
    parser.add_argument("--gap-days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="XGBoost threads (default 2)")
    args = parser.parse_args(argv)

    print(f"backtest: {args.transactions:,} generated transactions over {args.days} days")
    print(machine())
    steps = Steps(total=8, say=lambda _: None)
    with steps.step("generate", "generate"):
        frame = generated_history(args.transactions, args.days, args.seed, progress=False)
    config = BacktestConfig(
        train_days=args.train_days, gap_days=args.gap_days, seed=args.seed, nthread=args.threads
    )
    with tempfile.TemporaryDirectory() as scratch:
        run = run_backtest(
            frame.copy(), source="bench", out=Path(scratch) / "out", config=config, steps=steps
        )
    n = len(frame)
    print()
    print(
        table(
            ["step", "wall s", "CPU s (all threads)"],
            [(name, seconds, steps.cpu_seconds[name]) for name, seconds in steps.seconds.items()],
        )
    )
    backtest_total = sum(seconds for name, seconds in steps.seconds.items() if name != "generate")
    workers = default_workers(n)
    print(
        f"whole backtest (without generate): {backtest_total:.1f} s; the replay ran in {workers} "
        f"process(es) (shared from {PARALLEL_FROM:,} rows): its CPU above is this process's only"
    )

    replay = steps.seconds["replay"]
    rows = [(f"with labels back after 7 days, {workers} process(es) (the backtest's)", replay, n / replay)]
    again = (
        (f"the same again, {workers} process(es)", 7 * 86400.0, None),
        ("with labels, 1 process", 7 * 86400.0, 1),
        (f"without labels, {workers} process(es)", None, None),
    )
    for what, delay, count in again:
        started = time.perf_counter()
        compute_features(frame.copy(), check=False, label_delay=delay, workers=count)
        seconds = time.perf_counter() - started
        rows.append((what, seconds, n / seconds))
    print()
    print(table(["replay of the whole file", "wall s", "tx/s"], rows))
    rate = n / replay
    verdict = "within" if rate >= BUDGET_TX_PER_SECOND else "BELOW"
    print(
        f"replay: {rate:,.0f} tx/s (wall), {verdict} the {BUDGET_TX_PER_SECOND:,.0f} tx/s budget; "
        f"load average now {os.getloadavg()[0]:.1f}"
    )
    models = run.metrics["models"]
    print(
        "figures: "
        + "; ".join(
            f"{name}: ROC AUC {m['roc_auc']:.4f}, AP {m['average_precision']:.4f}, "
            f"recall at 1% FPR {m['at_fpr']['recall']:.1%}"
            for name, m in models.items()
        )
    )
    return 0 if rate >= BUDGET_TX_PER_SECOND else 1


if __name__ == "__main__":
    sys.exit(main())
