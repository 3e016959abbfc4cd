"""The fit step: train → thresholds → evaluate → model card → bundle, on features already computed.

`fraudwatch train` (on a 70/15/15 time split) and `fraudwatch backtest` (on its periods) both fit
their model here; the split, the feature matrix and where the bundle goes are theirs.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Before anything loads xgboost: passive OpenMP waiting (why: training/train.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from training.backtest.metrics import figures
from training.baseline import BASELINE, BASELINE_NOTE, baseline_scores
from training.bundle import git_state, libraries, model_version, write_bundle
from training.comparison import fraud_patterns, side_by_side
from training.defaults import CARD_TOP_K
from training.evaluate import Evaluation, evaluate, write_report
from training.features import FeatureMatrix
from training.io import LABEL, PATTERN, defaulted_columns, id_texts
from training.reference import training_reference
from training.selection import DEFAULT_SEARCH
from training.steps import Steps
from training.train import (
    Boosting,
    ThresholdChoice,
    TimeSplit,
    TrainedModel,
    choose_thresholds,
    predict,
    train_model,
)

MODEL = "model"
TITLES = {MODEL: "model", BASELINE: "baseline"}

SELECTION_RULE = (
    "each configuration trained on every fold (rows before the fold's validation window, less the label "
    "delay) and early-stopped on its window; the best mean average precision over the folds kept, then "
    "refitted on the training and validation periods with its mean stopping rounds; thresholds chosen on "
    "its last fold's scores of the validation period (out of sample)"
)
THRESHOLD_RULE = (
    "REJECTED = the lowest score whose alerts reach precision >= {reject_precision:.2f} "
    "(with at least {min_alerts} alerts); FLAGGED = the highest score that still reaches "
    "recall >= {flag_recall:.2f}, unless that flags more than {review_budget:.1%} of transactions, "
    "in which case the lowest score within that review budget; FLAGGED never above REJECTED."
)


@dataclass(slots=True)
class Fitted:
    """What a fit produced."""

    version: str
    model: TrainedModel
    thresholds: ThresholdChoice
    evaluation: Evaluation
    """On the split's test rows, at the chosen thresholds."""
    card: dict[str, Any]
    bundle: Path
    report: Path | None
    """The evaluation report, when a reports directory was given."""
    baseline: np.ndarray
    """The baseline's scores of the split's test rows (`training.baseline`)."""


def fit(
    frame: pd.DataFrame,
    matrix: FeatureMatrix,
    split: TimeSplit,
    *,
    source: str,
    bundle_dir: Path,
    reports_dir: Path | None = None,
    label_delay: float,
    seed: int,
    nthread: int,
    steps: Steps,
    training: str,
    search: str = DEFAULT_SEARCH,
    progress: bool = False,
    boosting: Boosting | None = None,
) -> Fitted:
    """Train on the split, choose thresholds on its validation rows, evaluate on its test rows, write
    the model card into the bundle at `bundle_dir` (and the evaluation report under `reports_dir`).

    `frame` is the labelled history whose rows `matrix` holds; `training` says what the train step does;
    `boosting` boosts the models on a Dask cluster instead of this process (`training.distributed`).
    """
    labels = frame[LABEL].to_numpy(dtype=bool)
    with steps.step("train", training):
        model = train_model(
            matrix.values,
            labels,
            split,
            epochs=matrix.epochs,
            gap=label_delay,
            search=search,
            seed=seed,
            nthread=nthread,
            progress=progress,
            boosting=boosting,
        )
        thresholds = choose_thresholds(model.validation_scores, labels[split.validation])
    trained_at = datetime.now(UTC).replace(microsecond=0)
    version = model_version(model.booster, trained_at)
    evaluating = "evaluating on the test period beside the baseline" + (
        " and writing the report" if reports_dir else ""
    )
    with steps.step("evaluate", evaluating):
        test_scores = predict(model.booster, matrix.values[split.test])
        patterns = frame[PATTERN].to_numpy(dtype=str)[split.test] if PATTERN in frame.columns else None
        evaluation = evaluate(model.booster, test_scores, labels[split.test], patterns, thresholds)
        baseline = baseline_scores(
            frame,
            split.train | split.validation,
            split.test,
            label_delay=label_delay,
            seed=seed,
            nthread=nthread,
        )
        cards = id_texts(frame["user_id"]).to_numpy(dtype=str)[split.test]
        results = {
            name: figures(scored, labels[split.test], patterns, matrix.epochs[split.test], cards, CARD_TOP_K)
            for name, scored in ((MODEL, test_scores), (BASELINE, baseline))
        }
        card = model_card(
            version,
            trained_at,
            source,
            frame,
            matrix.epochs,
            split,
            model,
            thresholds,
            evaluation,
            label_delay,
        )
        card["reference"] = training_reference(
            model.booster, matrix.values[split.validation], model.validation_scores
        ).to_dict()
        card["baseline"] = {
            "what": BASELINE_NOTE,
            "test": {name: figure.to_dict() for name, figure in results.items()},
        }
        report = None
        if reports_dir is not None:
            report = write_report(
                reports_dir / version,
                version=version,
                evaluation=evaluation,
                scores=test_scores,
                labels=labels[split.test],
                card=card,
                comparison=[
                    f"The baseline: {BASELINE_NOTE}",
                    "",
                    *side_by_side(results, TITLES, fraud_patterns(labels[split.test], patterns)),
                ],
            )
    with steps.step("bundle", f"writing the model bundle to {bundle_dir}"):
        bundle = write_bundle(bundle_dir, model.booster, thresholds_file(thresholds), card)
    return Fitted(version, model, thresholds, evaluation, card, bundle, report, baseline)


def thresholds_file(choice: ThresholdChoice) -> dict[str, Any]:
    """The content of thresholds.json."""
    targets = asdict(choice.targets)
    return {
        "flag": choice.flag.threshold,
        "reject": choice.reject.threshold,
        "targets": targets,
        "rule": THRESHOLD_RULE.format(**targets),
        "validation": {"flag": asdict(choice.flag), "reject": asdict(choice.reject)},
        "notes": list(choice.notes),
    }


def model_card(
    version: str,
    trained_at: datetime,
    source: str,
    frame: pd.DataFrame,
    epochs: np.ndarray,
    split: TimeSplit,
    model: TrainedModel,
    thresholds: ThresholdChoice,
    evaluation: Evaluation,
    label_delay: float,
) -> dict[str, Any]:
    """The content of model_card.json."""
    labels = frame[LABEL].to_numpy(dtype=bool)
    commit, dirty = git_state()
    patterns: dict[str, int] = {}
    if PATTERN in frame.columns:
        counts = frame.loc[frame[LABEL], PATTERN].value_counts()
        patterns = {str(name): int(count) for name, count in counts.items()}
    return {
        "version": version,
        "trained_at": trained_at.isoformat(),
        "git_commit": commit,
        "git_dirty": dirty,
        "data": {
            "source": source,
            "rows": len(frame),
            "frauds": int(labels.sum()),
            "fraud_rate": float(labels.mean()),
            "users": int(frame["user_id"].nunique()),
            "patterns": patterns,
            "label_delay_days": label_delay / 86400,
            "defaulted_columns": defaulted_columns(frame),
            "periods": {
                name: _period(epochs[mask], labels[mask])
                for name, mask in (
                    ("training", split.train),
                    ("validation", split.validation),
                    ("test", split.test),
                )
            },
        },
        "model": {
            "objective": "binary:logistic",
            "features": list(model.booster.feature_names or ()),
            "params": model.params,
            "rounds": model.booster.num_boosted_rounds(),
        },
        "selection": {
            "search": model.search,
            "rule": SELECTION_RULE,
            "label_delay_gap_days": model.gap / 86400,
            "folds": [
                {
                    "validation_start": _instant(fold.start),
                    "training_rows": int(fold.train.sum()),
                    "validation_rows": int(fold.validation.sum()),
                    "validation_frauds": int(labels[fold.validation].sum()),
                }
                for fold in model.folds
            ],
            "chosen": model.chosen.name,
            "scale_pos_weight": model.chosen.scale_pos_weight,
            "rounds": model.chosen.best_iteration + 1,
            "candidates": [c.to_dict() for c in model.candidates],
        },
        "thresholds": thresholds_file(thresholds),
        "metrics": {
            "validation": {
                "average_precision": model.chosen.validation_average_precision,
                "roc_auc": float(roc_auc_score(labels[split.validation], model.validation_scores)),
            },
            "test": evaluation.to_dict(),
        },
        "libraries": libraries(),
    }


def _instant(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _period(epochs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    return {
        "start": _instant(float(epochs.min())),
        "end": _instant(float(epochs.max())),
        "rows": len(epochs),
        "frauds": int(labels.sum()),
    }
