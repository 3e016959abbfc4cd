"""Rules and lists beside the model: what a fraud team changes between two trainings, and how it decides.

Priority is fixed: an allow (a rule or a list) approves, else a block rejects, else a review flags, else
the model's thresholds decide. A review never lowers the model's verdict: a payment the model rejects
stays rejected. Every rule and list that matched is named in the decision (`rule:<id>`,
`list:<name>`), whatever won.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from fraudwatch.domain.decision import Decision
from fraudwatch.domain.lists import EMPTY_LISTS, Action, ListSnapshot
from fraudwatch.domain.rules import NO_RULES, RuleSet
from fraudwatch.domain.transaction import Transaction

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

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
    _judgements: dict[tuple[tuple[tuple[Action, str], ...], Decision], Judgement] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_acting", self.lists.acting)
        object.__setattr__(self, "_judgements", {})

    @property
    def version(self) -> str:
        """The rules document's version, recorded with every decision."""
        return self.rules.version

    def judge(self, tx: Transaction, row: Sequence[float], score: float, verdict: Decision) -> Judgement:
        """The decision on one transaction given the model's `verdict` on its `score`."""
        return self.judge_many([tx], [row], [score], [verdict])[0]

    def judge_many(
        self,
        transactions: Sequence[Transaction],
        rows: Sequence[Sequence[float]] | npt.NDArray[np.float64],
        scores: Sequence[float],
        verdicts: Sequence[Decision],
    ) -> list[Judgement]:
        """The decisions on a batch of transactions (rules evaluated over the whole batch at once)."""
        matched = self.rules.matches_many(transactions, rows, scores, self.lists)
        acting, known = self._acting, self._judgements
        judged: list[Judgement] = []
        for tx, rules, verdict in zip(transactions, matched, verdicts, strict=True):
            hits: list[tuple[Action, str]] = [
                (action, f"list:{name}") for name, index, action, values in acting if tx[index] in values
            ]
            if rules:
                hits += [(rule.action, rule.code) for rule in rules]
            if not hits:
                judged.append(_MODEL_ALONE[verdict])
                continue
            key = (tuple(hits), verdict)  # a batch repeats a few combinations: one judgement each
            if (judgement := known.get(key)) is None:
                if len(known) >= MAX_JUDGEMENTS:
                    known.clear()
                judgement = known[key] = _judgement(hits, verdict)
            judged.append(judgement)
        return judged


MAX_JUDGEMENTS = 4096
"""Judgements kept per Controls, one per combination of matches and model verdict."""


def _judgement(hits: list[tuple[Action, str]], verdict: Decision) -> Judgement:
    """The decision the highest-priority match takes, naming every match, the highest first."""
    hits = sorted(hits, key=lambda hit: _RANK[hit[0]])
    return Judgement(_decide(hits[0][0], verdict), tuple(code for _, code in hits))


_MODEL_ALONE = {verdict: Judgement(verdict) for verdict in Decision}
"""The judgement where no rule or list matched: the model's verdict (one instance each: they are frozen)."""


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
