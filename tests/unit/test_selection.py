"""Model selection over time (training.selection, training.train.train_model): folds that respect time
and the label delay, every configuration scored on every fold, the best mean kept and refitted."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fraudwatch.domain.features import FEATURE_NAMES
from training.selection import SEARCHES, time_folds
from training.train import TrainingError, time_split, train_model

DAY = 86400.0


def history(days: int = 30, rows: int = 6000, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows over `days` in time order, a column per feature, two of them carrying the fraud signal."""
    rng = np.random.default_rng(seed)
    epochs = np.sort(rng.uniform(0, days * DAY, rows))
    values = rng.normal(size=(rows, len(FEATURE_NAMES)))
    labels = values[:, 0] + 0.5 * values[:, 1] + rng.normal(scale=0.5, size=rows) > 2.3
    return values, labels, epochs


def test_each_fold_trains_only_on_what_was_known_before_its_window() -> None:
    _, _, epochs = history()
    split = time_split(epochs)
    folds = time_folds(epochs, split.train, split.validation, 3, gap=2 * DAY)
    assert len(folds) == 3
    assert np.array_equal(folds[-1].validation, split.validation)
    width = folds[-1].end - folds[-1].start
    for earlier, later in itertools.pairwise(folds):
        assert later.start == pytest.approx(earlier.start + width)  # consecutive windows
    for fold in folds:
        assert fold.train.any()
        assert fold.validation.any()
        assert epochs[fold.train].max() < fold.start - 2 * DAY
        assert epochs[fold.validation].min() >= fold.start
        assert not (fold.train & split.test).any()
        assert not (fold.validation & split.test).any()


def test_the_best_mean_over_the_folds_is_kept_and_refitted_with_its_rounds() -> None:
    values, labels, epochs = history()
    split = time_split(epochs)
    model = train_model(values, labels, split, epochs=epochs, gap=DAY, nthread=1)
    plan = SEARCHES["small"]
    assert [c.name for c in model.candidates] == [c.name for c in plan.configs]
    assert all(len(c.fold_average_precision) == plan.folds for c in model.candidates)
    assert model.chosen.validation_average_precision == max(
        c.validation_average_precision for c in model.candidates
    )
    assert model.booster.num_boosted_rounds() == model.chosen.best_iteration + 1
    assert model.params["max_bin"] == model.chosen.params["max_bin"]
    assert len(model.validation_scores) == int(split.validation.sum())
    assert model.gap == DAY


def test_a_training_period_shorter_than_the_label_delay_takes_its_labels_as_known() -> None:
    values, labels, epochs = history(days=6)
    split = time_split(epochs)
    model = train_model(values, labels, split, epochs=epochs, gap=7 * DAY, nthread=1)
    assert model.gap == 0.0
    assert model.folds[-1].train.any()


def test_an_unknown_search_is_refused_by_name() -> None:
    values, labels, epochs = history(rows=500)
    with pytest.raises(TrainingError, match="unknown search 'huge'"):
        train_model(values, labels, time_split(epochs), epochs=epochs, search="huge", nthread=1)
