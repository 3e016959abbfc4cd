"""Which models score: the champion, whose decisions act, and an optional challenger scored in its shadow.

The champion decides; the challenger scores the same rows in the same batch (one more predict call), and
its score and would-be decision (its own thresholds' verdict, before rules and lists, which are the same
for both) are stored beside the champion's, never acted on, never alerted. Which versions they are is
read at run time (`fraudwatch.adapters.registry`), so a promotion or a rollback needs no deploy.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from fraudwatch.domain.decision import Thresholds
from fraudwatch.domain.drift import Reference
from fraudwatch.domain.ports import Model


class Lineup(NamedTuple):
    """The models in force for one batch, each with the thresholds it decides with."""

    champion: Model
    thresholds: Thresholds
    challenger: Model | None = None
    challenger_thresholds: Thresholds | None = None
    reference: Reference | None = None
    """The champion's training distributions (its model card), for drift; None in bundles made before."""


class ModelSource(Protocol):
    """Where the scoring service gets the lineup in force (an adapter caches it)."""

    def current(self) -> Lineup:
        """The lineup to score the batch being processed with."""
        ...


class FixedLineup:
    """A lineup that never changes: the bundled model alone (tests, benches, a stack without a registry)."""

    def __init__(self, lineup: Lineup) -> None:
        self._lineup = lineup

    def current(self) -> Lineup:
        """The one lineup."""
        return self._lineup
