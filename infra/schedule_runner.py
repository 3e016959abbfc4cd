"""A local EventBridge schedule runner: a function's `Schedule` events, for endpoints that run none (moto).

It reads the function's schedules from template.yaml (`rate(...)`, or a daily `cron(M H * * ? *)`) and
invokes the handler with each schedule's constant input when it falls due, as EventBridge would; `every`
runs every schedule at that period instead (a laptop's stack is rarely up for a day). A failed run is
logged and the next one comes at its time, as on AWS (the schedules' runs make up for a missed one).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.invoke import LocalContext
from infra.template import TEMPLATE, load_template

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
UNITS = {"minute": 60, "hour": 3600, "day": 86400}
DAILY_CRON = re.compile(r"cron\(\d{1,2} \d{1,2} \* \* \? \*\)")


@dataclass(frozen=True, slots=True)
class Schedule:
    """One Schedule event: its name, its period in seconds, and the input the handler gets."""

    name: str
    every_s: float
    event: dict[str, Any]


def period(expression: str) -> float:
    """Seconds between runs of a schedule expression; ValueError for one this runner cannot keep."""
    rate = re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", expression)
    if rate:
        return int(rate.group(1)) * UNITS[rate.group(2)]
    if DAILY_CRON.fullmatch(expression):
        return float(UNITS["day"])
    raise ValueError(f"schedule {expression!r}: only rate(N minutes|hours|days) and daily crons run locally")


def schedules_of(function: str, template: Path = TEMPLATE) -> list[Schedule]:
    """A function's Schedule events as the template states them."""
    events = load_template(template)["Resources"][function]["Properties"].get("Events", {})
    return [
        Schedule(name, period(e["Properties"]["Schedule"]), json.loads(e["Properties"].get("Input", "{}")))
        for name, e in events.items()
        if e["Type"] in {"Schedule", "ScheduleV2"}
    ]


class ScheduleRunner:
    """Invokes a handler on its schedules until stopped."""

    def __init__(
        self,
        handler: Handler,
        schedules: list[Schedule],
        function_name: str,
        *,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler = handler
        self.schedules = schedules
        self.function_name = function_name
        self.every = every
        self.clock = clock
        self.runs = 0

    def period_of(self, schedule: Schedule) -> float:
        """The schedule's period here: its own, or `every`."""
        return schedule.every_s if self.every is None else self.every

    def run(self, stop: threading.Event) -> None:
        """Invoke each schedule one period after the start, then every period, until `stop` is set."""
        start = self.clock()
        due = {s.name: start + self.period_of(s) for s in self.schedules}
        while self.schedules:
            schedule = min(self.schedules, key=lambda s: due[s.name])
            if stop.wait(max(due[schedule.name] - self.clock(), 0.0)):
                return
            self.invoke(schedule)
            due[schedule.name] += self.period_of(schedule)

    def invoke(self, schedule: Schedule) -> Any:
        """One run of a schedule; its failure is logged, not raised."""
        self.runs += 1
        try:
            return self.handler(dict(schedule.event), LocalContext(function_name=self.function_name))
        except Exception:
            log.exception(
                "%s failed its %s run: the next comes at its time", self.function_name, schedule.name
            )
            return None
