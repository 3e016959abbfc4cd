"""The labelled-history generator: contract, labels, fraud patterns, determinism, live mode, files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from fraudwatch.domain.transaction import CURRENCIES, transaction_from_mapping
from infra.cli import main
from training.generate import generate_history, iter_live, write_history
from training.population.config import COLUMNS, GeneratorConfig
from training.population.patterns import FRAUD_PATTERNS

CONFIG = GeneratorConfig(n_transactions=20_000, days=30, fraud_rate=0.02, seed=11)
LIVE_START = datetime(2026, 11, 30, 21, 30, 15, tzinfo=UTC)


def records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """The frame's rows as the stream's decoded records: column name to value."""
    return [{str(name): value for name, value in row.items()} for row in frame.to_dict("records")]


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return generate_history(CONFIG)


@pytest.fixture(scope="module")
def parsed(history: pd.DataFrame) -> pd.DataFrame:
    """Epoch and local hour of every row, as the stream's contract derives them."""
    txs = [transaction_from_mapping(row) for row in records(history)]
    return pd.DataFrame({"epoch": [tx.epoch for tx in txs], "hour": [tx.local_hour for tx in txs]})


def test_columns_types_and_values(history):
    assert tuple(history.columns) == COLUMNS
    assert len(history) == CONFIG.n_transactions
    assert history["transaction_id"].is_unique
    assert history["amount"].dtype == np.float64
    assert history["is_fraud"].dtype == bool
    assert (history["amount"] > 0).all()
    assert np.allclose(history["amount"], history["amount"].round(2))
    assert set(history["currency"]) <= CURRENCIES
    assert history["user_id"].str.fullmatch(r"user-\d{6}").all()
    assert history["merchant_id"].str.fullmatch(r"merch-\d{5}").all()
    assert history["timestamp"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d").all()
    assert history["timestamp"].str[-6:].nunique() > 3  # users live in several zones
    assert (history["is_fraud"] == (history["fraud_pattern"] != "none")).all()


def test_every_row_passes_the_transaction_contract(parsed, history):
    assert len(parsed) == len(history)


def test_sorted_by_instant_then_id(history, parsed):
    epochs = parsed["epoch"].to_numpy()
    assert (np.diff(epochs) >= 0).all()
    ties = np.diff(epochs) == 0
    ids = history["transaction_id"].to_numpy()
    assert (ids[1:][ties] > ids[:-1][ties]).all()
    start = CONFIG.start.timestamp()
    assert epochs[0] >= start
    assert epochs[-1] < start + CONFIG.days * 86400


def test_each_merchant_has_one_category_and_users_one_currency(history):
    assert (history.groupby("merchant_id")["category"].nunique() == 1).all()
    assert (history.groupby("user_id")["currency"].nunique() == 1).all()


def test_fraud_rate_near_configured_and_every_pattern_labelled(history):
    assert history["is_fraud"].mean() == pytest.approx(CONFIG.fraud_rate, rel=0.25)
    counts = history["fraud_pattern"].value_counts()
    assert set(counts.index) == {"none", *FRAUD_PATTERNS}
    assert all(counts[pattern] >= 10 for pattern in FRAUD_PATTERNS)


def test_genuine_activity_is_mostly_daytime_and_heavy_tailed(history, parsed):
    genuine = history["fraud_pattern"] == "none"
    assert (parsed["hour"][genuine] < 6).mean() < 0.08
    per_user = history[genuine].groupby("user_id").size()
    assert per_user.max() > 5 * per_user.median()


def test_account_takeover_is_at_night_in_categories_and_merchants_new_to_the_user(history, parsed):
    takeover = history["fraud_pattern"] == "account_takeover"
    assert (parsed["hour"][takeover] < 5).all()
    genuine = history[history["fraud_pattern"] == "none"]
    usual = genuine.groupby("user_id")["amount"].median()
    rows = history[takeover]
    assert (rows["amount"].to_numpy() > 2 * usual.reindex(rows["user_id"]).fillna(0).to_numpy()).all()
    for index, row in rows.iterrows():
        before = genuine[(genuine["user_id"] == row["user_id"]) & (genuine.index < index)]
        assert row["category"] not in set(before["category"])
        assert row["merchant_id"] not in set(before["merchant_id"])
    # bursts: several rows per victim
    assert rows.groupby("user_id").size().median() >= 3


def test_card_testing_is_small_amounts_at_distinct_merchants_within_minutes(history, parsed):
    testing = history["fraud_pattern"] == "card_testing"
    rows = history[testing].assign(epoch=parsed["epoch"][testing])
    assert rows["amount"].between(0.5, 5.0).all()
    for _, burst in rows.groupby("user_id"):
        # a user may be tested twice in the period; split bursts at gaps of over an hour
        burst_number = (burst["epoch"].diff() > 3600).cumsum()
        for _, one in burst.groupby(burst_number):
            assert one["merchant_id"].is_unique
            assert one["epoch"].max() - one["epoch"].min() <= 15 * 60


def test_spending_spike_is_many_times_the_users_usual(history):
    genuine = history[history["fraud_pattern"] == "none"]
    usual = genuine.groupby("user_id")["amount"].median()
    spikes = history[history["fraud_pattern"] == "spending_spike"]
    ratio = spikes["amount"].to_numpy() / usual.reindex(spikes["user_id"]).to_numpy()
    ratio = ratio[~np.isnan(ratio)]
    assert np.median(ratio) >= 5


def test_compromised_merchant_fraud_is_a_few_merchants_for_a_period(history, parsed):
    compromised = history["fraud_pattern"] == "compromised_merchant"
    rows = history[compromised].assign(epoch=parsed["epoch"][compromised])
    assert rows["merchant_id"].nunique() <= 20
    assert rows["user_id"].nunique() > rows["merchant_id"].nunique()  # genuine customers, many of them
    span = rows.groupby("merchant_id")["epoch"].agg(lambda e: e.max() - e.min())
    assert (span <= 30 * 86400).all()
    # ordinary-looking: amounts in the range of the genuine ones
    genuine_amounts = history.loc[history["fraud_pattern"] == "none", "amount"]
    assert rows["amount"].median() < 3 * genuine_amounts.median()


def test_velocity_burst_is_many_transactions_within_an_hour(history, parsed):
    velocity = history["fraud_pattern"] == "velocity_burst"
    rows = history[velocity].assign(epoch=parsed["epoch"][velocity])
    for _, burst in rows.groupby("user_id"):
        burst_number = (burst["epoch"].diff() > 3600).cumsum()
        sizes = burst.groupby(burst_number).size()
        spans = burst.groupby(burst_number)["epoch"].agg(lambda e: e.max() - e.min())
        assert sizes.between(10, 30).all()
        assert (spans <= 3600).all()


def test_same_seed_same_frame_and_other_seed_other_frame(history):
    pd.testing.assert_frame_equal(generate_history(CONFIG), history)
    other = generate_history(GeneratorConfig(n_transactions=20_000, days=30, fraud_rate=0.02, seed=12))
    assert not other["amount"].equals(history["amount"])


def test_population_sizes_scale_with_transactions():
    config = GeneratorConfig(n_transactions=100_000)
    assert (config.users, config.merchants) == (1000, 200)
    assert (GeneratorConfig().users, GeneratorConfig().merchants) == (500, 100)
    frame = generate_history(GeneratorConfig(n_transactions=5_000, n_users=50, n_merchants=60, seed=3))
    assert frame["user_id"].nunique() <= 50
    assert frame["merchant_id"].nunique() <= 60


@pytest.mark.parametrize(
    "changes",
    [{"n_transactions": 10}, {"days": 0}, {"fraud_rate": 0.9}, {"seed": -1}, {"start": datetime(2026, 9, 1)}],
)
def test_invalid_config_is_refused(changes):
    with pytest.raises(ValueError):
        GeneratorConfig(**changes)


@pytest.mark.parametrize(("days", "fraud_rate"), [(1, 0.0), (1, 0.3), (3, 0.5)])
def test_short_periods_and_extreme_rates_still_follow_the_contract(days, fraud_rate):
    config = GeneratorConfig(n_transactions=2000, days=days, fraud_rate=fraud_rate, seed=2)
    frame = generate_history(config)
    assert len(frame) == 2000
    assert frame["is_fraud"].mean() == pytest.approx(fraud_rate, abs=0.02)
    for row in records(frame):
        transaction_from_mapping(row)


def test_too_few_merchants_for_the_categories_is_refused():
    with pytest.raises(ValueError, match="n_merchants"):
        generate_history(GeneratorConfig(n_transactions=1000, n_merchants=10))


def live(limit: int, start: datetime = LIVE_START, seed: int = 5) -> list[dict[str, object]]:
    config = GeneratorConfig(n_transactions=30_000, days=3, fraud_rate=0.02, seed=seed)
    return list(iter_live(config, start=start, limit=limit))


def test_live_is_time_ordered_valid_bounded_and_starts_at_start():
    rows = live(12_000)  # more than a simulated day, so bursts cross the day boundary
    assert len(rows) == 12_000
    txs = [transaction_from_mapping(row) for row in rows]
    epochs = [tx.epoch for tx in txs]
    assert epochs == sorted(epochs)
    assert epochs[0] >= LIVE_START.timestamp()
    assert epochs[0] < LIVE_START.timestamp() + 60
    assert len({row["transaction_id"] for row in rows}) == len(rows)
    assert set(rows[0]) == set(COLUMNS)


def test_live_rate_follows_the_population_and_fraud_appears():
    rows = live(20_000)
    last = datetime.fromisoformat(str(rows[-1]["timestamp"]))
    days = (last - LIVE_START).total_seconds() / 86400
    assert 20_000 / days == pytest.approx(10_000, rel=0.1)  # 30,000 transactions per 3 days
    patterns = {row["fraud_pattern"] for row in rows}
    assert patterns == {"none", *FRAUD_PATTERNS}
    takeover_hours = {
        transaction_from_mapping(row).local_hour for row in rows if row["fraud_pattern"] == "account_takeover"
    }
    assert max(takeover_hours) < 5
    assert np.mean([row["is_fraud"] for row in rows]) == pytest.approx(0.02, rel=0.4)


def test_live_is_deterministic_and_ids_differ_across_starts():
    first = live(500)
    assert live(500) == first
    assert live(200) == first[:200]
    later = live(500, start=LIVE_START + timedelta(seconds=1))
    assert not {row["transaction_id"] for row in later} & {row["transaction_id"] for row in first}
    assert live(500, seed=6) != first


def test_live_shares_the_history_population(history):
    config = GeneratorConfig(n_transactions=20_000, days=30, fraud_rate=0.02, seed=11)
    rows = list(iter_live(config, start=LIVE_START, limit=3000))
    merchant_category = dict(zip(history["merchant_id"], history["category"], strict=True))
    seen = [row for row in rows if row["merchant_id"] in merchant_category]
    assert len(seen) > 2000
    assert all(merchant_category[row["merchant_id"]] == row["category"] for row in seen)


def test_live_requires_an_aware_start():
    with pytest.raises(ValueError):
        iter_live(CONFIG, start=datetime(2026, 11, 30, 12, 0))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_and_read_back(tmp_path, history, suffix):
    path = tmp_path / "nested" / f"history{suffix}"
    write_history(history, path)
    if suffix == ".csv":
        text = dict.fromkeys(["transaction_id", "user_id", "merchant_id", "timestamp"], str)
        back = pd.read_csv(path, dtype=text)
    else:
        back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, history, check_dtype=False)
    assert back["is_fraud"].dtype == bool
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_write_refuses_an_unknown_suffix(tmp_path, history):
    with pytest.raises(ValueError, match="suffix"):
        write_history(history, tmp_path / "history.json")


def test_cli_generates_a_file_and_summarises(tmp_path, capsys):
    out = tmp_path / "h.csv"
    code = main(["generate", "--transactions", "2000", "--days", "5", "--seed", "1", "--out", str(out)])
    assert code == 0
    assert len(pd.read_csv(out)) == 2000
    line = capsys.readouterr().out.strip()
    assert "2,000 rows" in line
    assert "card_testing" in line


def test_cli_refuses_bad_arguments_with_one_line(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path / "h.json"), "--transactions", "500"]) == 2
    assert capsys.readouterr().err.startswith("fraudwatch generate: error: --out")
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--fraud-rate", "2"])
    assert exit_info.value.code == 2
    assert "--fraud-rate" in capsys.readouterr().err


def test_cli_reports_an_unwritable_output_in_one_line(tmp_path, capsys):
    taken = tmp_path / "taken.csv"
    taken.mkdir()
    assert main(["generate", "--transactions", "500", "--days", "2", "--out", str(taken)]) == 1
    messages = [line for line in capsys.readouterr().err.splitlines() if "fraudwatch generate" in line]
    assert len(messages) == 1  # besides the progress bar, one line
    assert messages[0].startswith("fraudwatch generate: error: cannot write")
