"""Rules and lists beside the model: what a fraud team changes between two trainings, and how it decides.

Priority is fixed: an allow (a rule or a list) approves, else a block rejects, else a review flags, else
the model's thresholds decide. A review never lowers the model's verdict: a payment the model rejects
stays rejected. Every rule and list that matched is named in the decision (`rule:<id>`,
`list:<name>`), whatever won.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fraudwatch.domain.decision import Decision
from fraudwatch.domain.lists import EMPTY_LISTS, Action, ListSnapshot
from fraudwatch.domain.rules import NO_RULES, RuleSet
from fraudwatch.domain.transaction import Transaction

_RANK = {Action.ALLOW: 0, Action.BLOCK: 1, Action.REVIEW: 2}


@dataclass(frozen=True, slots=True)
class Judgement:
    """A decision once rules and lists have had their say, and the codes of those that matched."""

    decision: Decision
    matched: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Controls:
    """One compiled rules document and one snapshot of the lists."""

    rules: RuleSet = NO_RULES
    lists: ListSnapshot = EMPTY_LISTS
    _acting: tuple[tuple[str, int, Action, frozenset[str]], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_acting", self.lists.acting)

    @property
    def version(self) -> str:
        """The rules document's version, recorded with every decision."""
        return self.rules.version

    def judge(self, tx: Transaction, row: Sequence[float], score: float, verdict: Decision) -> Judgement:
        """The decision on one transaction given the model's `verdict` on its `score`."""
        hits: list[tuple[Action, str]] = [
            (action, f"list:{name}") for name, index, action, values in self._acting if tx[index] in values
        ]
        hits += [(rule.action, rule.code) for rule in self.rules.matches(tx, row, score, self.lists)]
        if not hits:
            return Judgement(verdict)
        hits.sort(key=lambda hit: _RANK[hit[0]])
        return Judgement(_decide(hits[0][0], verdict), tuple(code for _, code in hits))


def _decide(action: Action, verdict: Decision) -> Decision:
    if action is Action.ALLOW:
        return Decision.APPROVED
    if action is Action.BLOCK:
        return Decision.REJECTED
    return Decision.REJECTED if verdict is Decision.REJECTED else Decision.FLAGGED


class ControlsSource(Protocol):
    """Where the scoring service gets the rules and lists in force (an adapter caches them)."""

    def current(self) -> Controls:
        """The controls to apply to the batch being scored."""
        ...


class FixedControls:
    """Controls that never change: tests, backtests and benches."""

    def __init__(self, controls: Controls) -> None:
        self._controls = controls

    def current(self) -> Controls:
        """The one set of controls."""
        return self._controls
