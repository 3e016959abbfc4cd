"""The local schedule runner: the template's Schedule events run where EventBridge does not (moto)."""

import threading
from typing import Any

import pytest

from infra.schedule_runner import Schedule, ScheduleRunner, period, schedules_of


def test_rates_and_daily_crons_are_kept_and_other_expressions_refused():
    assert period("rate(15 minutes)") == 900
    assert period("rate(1 minute)") == 60
    assert period("rate(2 hours)") == 7200
    assert period("cron(30 1 * * ? *)") == 86400
    with pytest.raises(ValueError, match="cron"):
        period("cron(0 9 ? * MON-FRI *)")  # weekdays only: not a daily period


def test_the_model_operations_schedules_come_from_the_template():
    found = {s.name: (s.every_s, s.event) for s in schedules_of("ModelOpsFunction")}
    assert found == {
        "Drift": (900, {"job": "drift"}),
        "Matured": (86400, {"job": "matured"}),
        "Activity": (86400, {"job": "activity"}),
    }


def test_each_schedule_runs_at_its_period_with_its_input_and_a_failed_run_stops_nothing():
    stop = threading.Event()
    seen: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        seen.append(event["job"])
        if len(seen) == 5:
            stop.set()
        if event["job"] == "b":
            raise RuntimeError("a failed run")

    runner = ScheduleRunner(
        handler, [Schedule("A", 0.01, {"job": "a"}), Schedule("B", 0.025, {"job": "b"})], "fn"
    )
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert seen == ["a", "a", "b", "a", "a"]  # at 10, 20, 25, 30 and 40 ms
    assert runner.runs == 5


def test_every_overrides_the_template_periods():
    runner = ScheduleRunner(lambda e, c: None, schedules_of("ModelOpsFunction"), "fn", every=5.0)
    assert [runner.period_of(s) for s in runner.schedules] == [5.0, 5.0, 5.0]
