"""The steps of a training command, each printed as it starts and timed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(slots=True)
class Steps:
    """Prints one line per step with its duration, and keeps the durations."""

    total: int
    say: Callable[[str], None] = print
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU time of the whole process (every thread) per step."""

    @contextmanager
    def step(self, name: str, what: str) -> Iterator[None]:
        """Time one step."""
        number = len(self.seconds) + 1
        self.say(f"[{number}/{self.total}] {what}")
        started, cpu_started = time.perf_counter(), time.process_time()
        yield
        self.seconds[name] = time.perf_counter() - started
        self.cpu_seconds[name] = time.process_time() - cpu_started
        self.say(f"      {name}: {self.seconds[name]:.1f} s")
