"""Training pipeline on 1,000,000 transactions: generate → features → train → evaluate, against 120 s.

Each step is the one `fraudwatch train` runs (the bundle and report go to a temporary directory, so
the repository's bundle is left alone). Budget from DESIGN.md: 120 s in all on these 2-core machines.

Run: .venv/bin/python -m bench.training_pipeline [--transactions N]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

# Before xgboost loads: passive OpenMP waiting, as `fraudwatch train` runs (see training/train.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import xgboost as xgb

from training.bundle import model_version
from training.evaluate import evaluate, write_report
from training.features import compute_features
from training.generate import GeneratorConfig, generate_history
from training.pipeline import model_card
from training.train import choose_thresholds, predict, time_split, train_model

BUDGET_SECONDS = 120.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="XGBoost threads (default 2)")
    args = parser.parse_args(argv)

    seconds: dict[str, float] = {}
    cpu_started = [time.process_time()]

    def timed(name: str, started: float) -> None:
        seconds[name] = time.perf_counter() - started
        cpu = time.process_time() - cpu_started[0]
        cpu_started[0] = time.process_time()
        print(f"{name:<10} {seconds[name]:7.1f} s   (CPU {cpu:6.1f} s, all threads)", flush=True)

    print(
        f"training pipeline: {args.transactions:,} transactions, {args.days} days; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, xgboost {xgb.__version__}; "
        f"load average {os.getloadavg()[0]:.1f} (other work on the machine slows every step)"
    )
    started = time.perf_counter()
    frame = generate_history(
        GeneratorConfig(n_transactions=args.transactions, days=args.days, seed=args.seed)
    )
    timed("generate", started)

    started = time.perf_counter()
    matrix = compute_features(frame, source="generated")
    timed("features", started)

    started = time.perf_counter()
    labels = frame["is_fraud"].to_numpy(dtype=bool)
    split = time_split(matrix.epochs)
    model = train_model(matrix.values, labels, split, seed=args.seed, nthread=args.threads)
    thresholds = choose_thresholds(model.validation_scores, labels[split.validation])
    timed("train", started)

    started = time.perf_counter()
    test_scores = predict(model.booster, matrix.values[split.test])
    patterns = frame["fraud_pattern"].to_numpy(dtype=str)[split.test]
    evaluation = evaluate(model.booster, test_scores, labels[split.test], patterns, thresholds)
    trained_at = datetime.now(UTC)
    version = model_version(model.booster, trained_at)
    card = model_card(
        version, trained_at, "bench", frame, matrix.epochs, split, model, thresholds, evaluation
    )
    with tempfile.TemporaryDirectory() as scratch:
        write_report(
            Path(scratch) / version,
            version=version,
            evaluation=evaluation,
            scores=test_scores,
            labels=labels[split.test],
            card=card,
        )
    timed("evaluate", started)

    total = sum(seconds.values())
    verdict = "within" if total <= BUDGET_SECONDS else "OVER"
    print(
        f"{'total':<10} {total:7.1f} s   ({verdict} the {BUDGET_SECONDS:.0f} s budget; "
        f"load average now {os.getloadavg()[0]:.1f})"
    )
    rounds = ", ".join(f"{c.name} {c.best_iteration + 1}" for c in model.candidates)
    print(
        f"model: test ROC AUC {evaluation.roc_auc:.4f}, "
        f"average precision {evaluation.average_precision:.4f}; "
        f"imbalance kept {model.chosen.name}; rounds {rounds}"
    )
    return 0 if total <= BUDGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
