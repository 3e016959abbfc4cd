"""Drift: the binning training and scoring share, the PSI, and the recorder's writes (not one a batch)."""

import numpy as np
import pytest

from fraudwatch.adapters.drift import DriftStoreError, FlushingDriftRecorder
from fraudwatch.domain.drift import (
    ALARM_PSI,
    BINS,
    COLUMNS,
    SCORE,
    SLOTS,
    Reference,
    WindowDrift,
    bin_counts,
    drifting,
    psi,
    reference_of,
    settled_windows,
    window_drift,
)
from fraudwatch.domain.features import FEATURE_NAMES

AMOUNT = FEATURE_NAMES.index("amount")


def _traffic(rows: int, seed: int, amount_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, len(FEATURE_NAMES)))
    features[:, AMOUNT] = rng.lognormal(3.5, 1.0, rows) * amount_factor
    features[rng.uniform(size=rows) < 0.1, FEATURE_NAMES.index("amount_zscore")] = np.nan
    scores = 1 / (1 + np.exp(-(np.log(features[:, AMOUNT]) - 6)))
    return features, scores


@pytest.fixture(scope="module")
def reference() -> Reference:
    features, scores = _traffic(20_000, seed=0)
    return reference_of(features, scores, ("amount", "velocity_1h"))


def test_the_reference_cuts_each_column_at_its_deciles_with_a_bin_for_missing_values(reference):
    assert reference.shares.shape == (len(COLUMNS), SLOTS)
    np.testing.assert_allclose(reference.shares.sum(axis=1), 1.0)
    amount = reference.shares[AMOUNT]
    np.testing.assert_allclose(amount[:BINS], 0.1, atol=0.01)
    assert amount[BINS] == 0
    assert reference.shares[FEATURE_NAMES.index("amount_zscore")][BINS] == pytest.approx(0.1, abs=0.01)


def test_the_reference_goes_through_the_card_and_back_unchanged(reference):
    again = Reference.from_dict(reference.to_dict())
    np.testing.assert_array_equal(again.edges, reference.edges)
    np.testing.assert_array_equal(again.shares, reference.shares)
    assert again.top_features == ("amount", "velocity_1h")


def test_a_card_reference_that_does_not_fit_is_refused_naming_the_column(reference):
    card = reference.to_dict()
    del card["columns"]["velocity_24h"]
    with pytest.raises(ValueError, match="velocity_24h"):
        Reference.from_dict(card)


def test_traffic_like_training_has_a_small_psi_and_amounts_times_three_a_large_one(reference):
    same = bin_counts(reference, *_traffic(2_000, seed=1))
    shifted = bin_counts(reference, *_traffic(2_000, seed=1, amount_factor=3.0))
    assert same.sum(axis=1).tolist() == [2_000] * len(COLUMNS)
    assert psi(reference.shares, same).max() < 0.05
    drifted = psi(reference.shares, shifted)
    assert drifted[AMOUNT] >= ALARM_PSI
    assert drifted[COLUMNS.index(SCORE)] >= ALARM_PSI
    assert drifted[FEATURE_NAMES.index("velocity_1h")] < 0.05  # untouched columns stay put


def test_drifting_needs_two_windows_in_a_row_and_names_score_and_top_features(reference):
    calm, hot = np.zeros(len(COLUMNS)), np.zeros(len(COLUMNS))
    hot[[AMOUNT, COLUMNS.index(SCORE), FEATURE_NAMES.index("seconds_since_last")]] = 0.5
    assert drifting(reference, [WindowDrift(0, 500, hot)]) == []
    assert drifting(reference, [WindowDrift(0, 500, calm), WindowDrift(900, 500, hot)]) == []
    # seconds_since_last drifted too, but it is not one of the top features whose drift alarms
    assert drifting(reference, [WindowDrift(0, 500, hot), WindowDrift(900, 500, hot)]) == [SCORE, "amount"]


def test_windows_with_too_few_rows_are_not_measured(reference):
    counts = bin_counts(reference, *_traffic(50, seed=3))
    assert window_drift(reference, {0: counts}, min_rows=100) == []
    assert [d.rows for d in window_drift(reference, {0: counts}, min_rows=50)] == [50]


def test_the_windows_measured_are_the_last_closed_ones_their_counts_had_time_to_be_flushed():
    # 15-minute windows, 2 minutes to settle: at 10:32:00 the windows of 10:00 and 10:15 (closed at 10:30)
    assert settled_windows(37_920, window_seconds=900, windows=2, settle_seconds=120) == (36_000, 37_800)
    # at 10:31:59 the 10:15 window closed under two minutes ago: the two before it
    assert settled_windows(37_919, window_seconds=900, windows=2, settle_seconds=120) == (35_100, 36_900)
    assert settled_windows(37_800, window_seconds=900, windows=2, settle_seconds=0) == (36_000, 37_800)


class FakeStore:
    def __init__(self) -> None:
        self.writes: list[tuple[str, int, int]] = []
        self.writers: list[str] = []
        self.fail = False

    def add(self, model_version: str, window: int, writer: str, counts: np.ndarray, expires_at: int) -> None:
        if self.fail:
            raise DriftStoreError("ThrottlingException", operation="PutItem")
        self.writes.append((model_version, window, int(counts[0].sum())))
        self.writers.append(writer)


def test_the_recorder_writes_when_a_window_closes_or_its_flush_period_ends_not_per_batch(reference):
    now = [1000.0]
    store = FakeStore()
    recorder = FlushingDriftRecorder(store, window_seconds=900, flush_every=60, clock=lambda: now[0])
    rows, scores = _traffic(100, seed=4)
    for second in (1000, 1010, 1020):
        now[0] = second
        recorder.observe("v1", reference, rows.tolist(), scores.tolist())
    assert store.writes == []  # three batches, no write yet
    now[0] = 1061
    recorder.observe("v1", reference, rows.tolist(), scores.tolist())
    assert store.writes == [("v1", 900, 400)]
    now[0] = 1800  # the next window: the one before is written at once
    recorder.observe("v1", reference, rows.tolist(), scores.tolist())
    assert store.writes[-1] == ("v1", 1800, 100)
    assert len(set(store.writers)) == 2  # each flush an item of its own: a retry cannot count twice


def test_counts_a_failed_write_left_are_written_at_the_next_flush(reference):
    now = [1000.0]
    store = FakeStore()
    recorder = FlushingDriftRecorder(store, window_seconds=900, flush_every=0, clock=lambda: now[0])
    rows, scores = _traffic(100, seed=5)
    store.fail = True
    recorder.observe("v1", reference, rows.tolist(), scores.tolist())
    assert recorder.write_errors == 1
    store.fail = False
    now[0] = 1001
    recorder.observe("v1", reference, rows.tolist(), scores.tolist())
    assert store.writes == [("v1", 900, 200)]
