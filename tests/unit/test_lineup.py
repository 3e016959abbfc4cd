"""The lineup in the scoring service: the champion decides, a challenger scores in its shadow, and a new
lineup takes effect for the next batch."""

from collections.abc import Sequence

import numpy as np

from fraudwatch.adapters.memory import MemoryAlertPublisher
from fraudwatch.domain.decision import Decision, Reason, ShadowVerdict, Thresholds
from fraudwatch.domain.drift import Reference, reference_of
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.lineup import FixedLineup, Lineup
from tests.unit.test_scoring import AmountModel, batch, record, service


class Everything:
    """A challenger that scores every row 0.97 (REJECTED at its own thresholds 0.3 / 0.6)."""

    version = "everything-2"
    feature_names = FEATURE_NAMES
    thresholds = Thresholds(flag=0.3, reject=0.6)

    def __init__(self) -> None:
        self.calls = 0

    def score(self, rows: Sequence[Sequence[float]]) -> list[float]:
        self.calls += 1
        return [0.97] * len(rows)

    def explain(self, rows: Sequence[Sequence[float]], top: int) -> list[tuple[Reason, ...]]:
        raise AssertionError("a challenger's scores are never explained: it never alerts")


class Switchable:
    """A model source whose lineup the test changes between batches, as a promotion would."""

    def __init__(self, lineup: Lineup) -> None:
        self.lineup = lineup

    def current(self) -> Lineup:
        return self.lineup


class CountingRecorder:
    def __init__(self) -> None:
        self.batches: list[tuple[str, int, int]] = []

    def observe(
        self,
        model_version: str,
        reference: Reference,
        rows: Sequence[Sequence[float]],
        scores: Sequence[float],
    ) -> None:
        self.batches.append((model_version, len(rows), len(scores)))


def _lineup(challenger: Everything | None = None, reference: Reference | None = None) -> Lineup:
    champion = AmountModel()
    return Lineup(
        champion,
        champion.thresholds,
        challenger,
        None if challenger is None else challenger.thresholds,
        reference,
    )


def test_the_challenger_scores_every_row_in_one_call_and_its_verdict_is_stored_never_acted_on():
    challenger = Everything()
    svc, ports = service(models=FixedLineup(_lineup(challenger)))

    report = svc.process(batch())

    assert challenger.calls == 1
    decided = ports["decisions"].items
    assert decided["tx-1"].decision is Decision.APPROVED  # the champion's verdict
    assert decided["tx-1"].challenger == ShadowVerdict("everything-2", 0.97, Decision.REJECTED)
    assert {d.challenger.model_version for d in report.decisions if d.challenger} == {"everything-2"}
    alerted = {d.transaction_id for d in ports["alerts"].published}
    assert alerted == {d.transaction_id for d in report.decisions if d.decision is not Decision.APPROVED}
    assert "challenger" not in decided["tx-1"].to_dict()  # neither in the alert body nor the API's answer


def test_without_a_challenger_decisions_carry_none():
    svc, ports = service(models=FixedLineup(_lineup()))
    svc.process(batch())
    assert all(d.challenger is None for d in ports["decisions"].items.values())


def test_a_new_lineup_decides_the_next_batch_with_its_version_and_thresholds():
    source = Switchable(_lineup())
    svc, ports = service(models=source)
    svc.process([record(1, amount=700)])
    assert ports["decisions"].items["tx-1"].decision is Decision.FLAGGED

    stricter = AmountModel()
    stricter.version = "amount-rule-2"
    source.lineup = Lineup(stricter, Thresholds(flag=0.5, reject=0.55))
    svc.process([record(2, amount=700, minutes=1)])

    second = ports["decisions"].items["tx-2"]
    assert (second.model_version, second.decision) == ("amount-rule-2", Decision.REJECTED)
    assert second.thresholds == Thresholds(flag=0.5, reject=0.55)
    assert svc.model_version == "amount-rule-2"


def test_drift_is_observed_once_per_batch_with_the_champions_rows_and_scores():
    rng = np.random.default_rng(1)
    reference = reference_of(rng.normal(size=(200, len(FEATURE_NAMES))), rng.uniform(size=200))
    recorder = CountingRecorder()
    svc, _ = service(models=FixedLineup(_lineup(reference=reference)), drift=recorder)
    svc.process(batch())
    assert recorder.batches == [("amount-rule-1", 5, 5)]


def test_without_a_reference_drift_is_not_observed():
    recorder = CountingRecorder()
    svc, _ = service(models=FixedLineup(_lineup()), drift=recorder)
    svc.process(batch())
    assert recorder.batches == []


def test_alerts_stay_the_champions_alone():
    alerts = MemoryAlertPublisher()
    svc, _ = service(models=FixedLineup(_lineup(Everything())), alerts=alerts)
    svc.process([record(1, amount=20)])
    assert alerts.published == []  # the challenger would reject it; nothing is alerted
