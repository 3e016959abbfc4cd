"""Rules as data: a versioned document of conditions in CEL (Common Expression Language), compiled once.

A document is a mapping (the CLI reads it from YAML or JSON):

    version: "2026-12-06.1"
    rules:
      - id: burst_of_big_payments
        description: many payments in a day, and a big one
        condition: features.velocity_24h > 20.0 && tx.amount > 500.0
        action: block          # allow | block | review
        enabled: true

A condition reads four names: `tx` (the contract's fields: tx.merchant_id, tx.amount, ...),
`features` (FEATURE_NAMES by name; an undefined one, NaN, is absent: test it with `has()`), `score`
(the model's probability) and `lists` (`tx.merchant_id in lists.watched_merchants`). Conditions are
compiled and checked by the `common-expression-language` package (CEL's Rust implementation), whose
evaluation is the reference: never `eval`. On a batch, the conditions domain/conditions.py translates
run as numpy operations over the whole batch, with the library's results (a conformance test checks it
on random conditions and records); the others run through the library, record by record.

Compiling refuses a document with the rule's id and the position of the error in its condition. A
condition that fails on one record (a missing feature, a type mismatch) does not match it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from fraudwatch.domain.cel_syntax import Untranslatable
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.lists import Action, ListSnapshot, list_name_problem
from fraudwatch.domain.transaction import FIELDS, Transaction
from fraudwatch.errors import FraudwatchError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from fraudwatch.domain.conditions import Batch, Mask

MAX_RULES = 200
MAX_CONDITION_CHARS = 2000
RULE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}")
NAMES = ("tx", "features", "score", "lists")
_MEMBER = re.compile(r"\b(tx|features|lists)\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_BARE = re.compile(r"\b(tx|features|lists)\b(?!\s*\.)")
_CEL_POSITION = re.compile(r"<input>:(\d+):(\d+)")


def _load_cel() -> ModuleType:
    """CEL's compiled extension, without the package's `__init__`, which imports its command line.

    `import cel` also imports typer, rich and prompt_toolkit for the `cel` REPL (about 300 ms, and
    packages the layer does not carry); the extension module itself needs nothing.
    """
    if "cel.cel" in sys.modules:
        return sys.modules["cel.cel"]
    package = importlib.util.find_spec("cel")
    for directory in (package and package.submodule_search_locations) or ():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(directory) / f"cel{suffix}"
            spec = importlib.util.spec_from_file_location("cel.cel", path) if path.is_file() else None
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                sys.modules["cel.cel"] = module
                return module
    raise ImportError("the common-expression-language package (module cel) is not installed")


_cel = _load_cel()


class RulesError(FraudwatchError):
    """A rules document that cannot be used: which rule, where in its condition, and what is wrong."""

    def __init__(self, problem: str, *, rule_id: str | None = None, line: int = 0, column: int = 0):
        where = f"rule {rule_id!r}" if rule_id else "rules document"
        at = f" (condition line {line}, column {column})" if line else ""
        super().__init__(f"{where}{at}: {problem}")
        self.rule_id = rule_id
        self.line = line
        self.column = column
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a document."""

    id: str
    description: str
    condition: str
    action: Action
    enabled: bool = True

    @property
    def code(self) -> str:
        """The stable code that names the rule in a decision's reasons."""
        return f"rule:{self.id}"

    def to_dict(self) -> dict[str, Any]:
        """The rule as the document states it."""
        return {
            "id": self.id,
            "description": self.description,
            "condition": self.condition,
            "action": self.action.value,
            "enabled": self.enabled,
        }


@dataclass(frozen=True, slots=True)
class _Needs:
    """What some conditions read, so a record's context holds only that (each value costs ~1 µs)."""

    tx: tuple[tuple[str, int], ...]
    features: tuple[tuple[str, int], ...]
    score: bool
    lists: tuple[str, ...]

    @classmethod
    def of(cls, rules: Sequence[Rule], programs: Sequence[Any]) -> _Needs:
        tx: set[str] = set()
        features: set[str] = set()
        lists: set[str] = set()
        for rule in rules:
            for name, member in _MEMBER.findall(rule.condition):
                {"tx": tx, "features": features, "lists": lists}[name].add(member)
        return cls(
            tuple((f, FIELDS.index(f)) for f in sorted(tx)),
            tuple((f, FEATURE_NAMES.index(f)) for f in sorted(features)),
            any("score" in program.variables() for program in programs),
            tuple(sorted(lists)),
        )

    def context(
        self, tx: Transaction, row: Sequence[float], score: float, lists: ListSnapshot
    ) -> dict[str, Any]:
        """The values these conditions read, as CEL gets them."""
        context: dict[str, Any] = {}
        if self.tx:
            context["tx"] = {name: tx[i] for name, i in self.tx}
        if self.features:
            # NaN (undefined) is left out: CEL has no NaN-safe comparison, `has()` tests for it
            context["features"] = {name: v for name, i in self.features if (v := row[i]) == v}
        if self.score:
            context["score"] = score
        if self.lists:
            context["lists"] = {name: lists.hits(name, tx) for name in self.lists}
        return context


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to evaluate the conditions when some features are undefined.

    The rules that read none of them run together in one CEL program (one conversion of the values);
    each of the others (`fragile`: reading an absent feature fails unless guarded by `has()`) runs
    alone on the few values it reads, so that its failure costs the rest nothing.
    """

    together: tuple[int, ...]
    program: Any
    needs: _Needs
    fragile: tuple[int, ...]


MAX_PLANS = 64
"""Plans kept per rule set: one per pattern of undefined features seen (a handful in practice)."""


class _PerRecord:
    """Some conditions evaluated by the CEL library, one record at a time: the reference semantics."""

    def __init__(self, rules: Sequence[Rule], programs: Sequence[Any]) -> None:
        self.rules = tuple(rules)
        self._programs = tuple(programs)
        self._rule_needs = tuple(_Needs.of([r], [p]) for r, p in zip(self.rules, programs, strict=True))
        self.needs = _Needs.of(self.rules, programs)
        self.all = self._plan(frozenset())
        self._plans: dict[frozenset[int], _Plan] = {}

    def matching(self, tx: Transaction, row: Sequence[float], score: float, lists: ListSnapshot) -> list[int]:
        """The positions (in `rules`) of the conditions true for this transaction."""
        if not self.rules:
            return []
        undefined = frozenset(i for _, i in self.needs.features if row[i] != row[i])
        plan = self.all if not undefined else self._plans.get(undefined) or self._remember(undefined)
        results: list[object] = [None] * len(self.rules)
        if plan.together:
            context = plan.needs.context(tx, row, score, lists)
            try:
                together = plan.program.execute(context)
            except Exception:  # a condition failing where it should not: each alone
                together = [self._alone(i, tx, row, score, lists) for i in plan.together]
            for i, result in zip(plan.together, together, strict=True):
                results[i] = result
        for i in plan.fragile:
            results[i] = self._alone(i, tx, row, score, lists)
        return [i for i, result in enumerate(results) if result is True]

    def _alone(
        self, i: int, tx: Transaction, row: Sequence[float], score: float, lists: ListSnapshot
    ) -> object:
        """One condition on the values it reads; one that fails on this record does not match it."""
        try:
            return self._programs[i].execute(self._rule_needs[i].context(tx, row, score, lists))
        except Exception:  # CEL's errors: a missing key, no such overload, ...
            return None

    def _plan(self, undefined: frozenset[int]) -> _Plan:
        fragile = tuple(
            i for i, needs in enumerate(self._rule_needs) if any(f in undefined for _, f in needs.features)
        )
        together = tuple(i for i in range(len(self.rules)) if i not in fragile)
        rules = [self.rules[i] for i in together]
        program = _cel.compile("[" + ", ".join(f"({r.condition})" for r in rules) + "]")
        needs = _Needs.of(rules, [self._programs[i] for i in together])
        return _Plan(together, program, needs, fragile)

    def _remember(self, undefined: frozenset[int]) -> _Plan:
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        plan = self._plans[undefined] = self._plan(undefined)
        return plan


class RuleSet:
    """A compiled rules document: its version, its rules, and how each enabled condition is evaluated.

    `matches` evaluates one record with the CEL library (the reference). `matches_many` evaluates a
    batch: each condition that domain/conditions.py translates runs as numpy operations over the whole
    batch, the others (`per_record`, with the reason) with the CEL library, record by record.
    """

    def __init__(self, version: str, rules: Sequence[Rule]) -> None:
        self.version = version
        self.rules = tuple(rules)
        self.enabled = tuple(rule for rule in self.rules if rule.enabled)
        programs = [_compile(rule) for rule in self.enabled]
        self._reference = _PerRecord(self.enabled, programs)
        samples = [self._sample(value) for value in (0.0, 1e6)]
        for rule, program in zip(self.enabled, programs, strict=True):
            for sample in samples:
                _dry_run(rule, program, sample)
        translated: list[tuple[int, Callable[[Batch], Mask | bool]]] = []
        self.per_record: dict[str, str] = {}
        """The enabled rules evaluated record by record on a batch (rule id: why); the others per batch."""
        if self.enabled:
            # imported here, with numpy: the cases function, whose layers have no numpy, imports this
            # module to put entries on lists, and never evaluates a rule
            from fraudwatch.domain.conditions import translate
        for i, rule in enumerate(self.enabled):
            try:
                translated.append((i, translate(rule.condition)))
            except Untranslatable as exc:
                self.per_record[rule.id] = str(exc)
        self._translated = tuple(translated)
        left = [i for i, rule in enumerate(self.enabled) if rule.id in self.per_record]
        self._left = tuple(left)
        self._fallback = _PerRecord([self.enabled[i] for i in left], [programs[i] for i in left])

    def to_dict(self) -> dict[str, Any]:
        """The document, as compiled (what `rules show` prints and `rules push` stores)."""
        return {"version": self.version, "rules": [rule.to_dict() for rule in self.rules]}

    def matches(self, tx: Transaction, row: Sequence[float], score: float, lists: ListSnapshot) -> list[Rule]:
        """The enabled rules whose condition is true for this transaction, in the document's order."""
        return [self.enabled[i] for i in self._reference.matching(tx, row, score, lists)]

    def matches_many(
        self,
        transactions: Sequence[Transaction],
        rows: Sequence[Sequence[float]] | npt.NDArray[np.float64],
        scores: Sequence[float],
        lists: ListSnapshot,
    ) -> list[tuple[Rule, ...]]:
        """Per transaction, the enabled rules whose condition is true for it, in the document's order."""
        size = len(transactions)
        if not self.enabled or not size:
            return [()] * size
        if size == 1:  # the inline API's: the CEL library alone costs half the batch's setup (bench/rules.py)
            return [tuple(self.matches(transactions[0], _plain(rows[0]), float(scores[0]), lists))]
        from fraudwatch.domain.conditions import Batch, fired  # numpy: see __init__

        per_record = (
            [
                (self._left[i], j)
                for j, tx in enumerate(transactions)
                for i in self._fallback.matching(tx, _plain(rows[j]), float(scores[j]), lists)
            ]
            if self._left
            else []
        )
        found = fired(
            self._translated, len(self.enabled), Batch(transactions, rows, scores, lists), per_record
        )
        matched: list[tuple[Rule, ...]] = [()] * size
        for j, positions in found.items():
            matched[j] = tuple(self.enabled[i] for i in positions)
        return matched

    def _context(
        self, tx: Transaction, row: Sequence[float], score: float, lists: ListSnapshot
    ) -> dict[str, Any]:
        """Every value the enabled conditions read."""
        return self._reference.needs.context(tx, row, score, lists)

    def _sample(self, number: float) -> dict[str, Any]:
        """A context of every value the conditions read, numbers all `number`: to try each at compile time.

        Two samples, small and large numbers, take both sides of most comparisons, so that the part of a
        condition behind a `&&` or `||` is evaluated too.
        """
        sample_tx = Transaction("t", "u", "m", number, "EUR", "2026-01-01T00:00:00+00:00", "misc", 0.0, 0)
        return self._context(sample_tx, [number] * len(FEATURE_NAMES), min(number, 1.0), ListSnapshot({}))


def _plain(row: Sequence[float]) -> Sequence[float]:
    """A feature row as the CEL library takes it: Python floats (a row of a numpy matrix is not)."""
    return row if isinstance(row, list | tuple) else [float(value) for value in row]


def compile_rules(document: object) -> RuleSet:
    """Compile a rules document (a mapping); raise RulesError naming the rule and the error's position."""
    if not isinstance(document, Mapping):
        raise RulesError("must be a mapping with `version` and `rules`")
    unknown = set(document) - {"version", "rules"}
    if unknown:
        raise RulesError(f"unknown keys {sorted(unknown)}: a document has `version` and `rules`")
    version = document.get("version")
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise RulesError(
            f"`version` must be 1-64 letters, digits or _.:+- (e.g. 2026-12-06.1), got {version!r}"
        )
    items = document.get("rules")
    if not isinstance(items, list):
        raise RulesError("`rules` must be a list (it may be empty)")
    if len(items) > MAX_RULES:
        raise RulesError(f"{len(items)} rules, over the limit of {MAX_RULES}")
    rules: list[Rule] = []
    for position, item in enumerate(items, start=1):
        rule = _rule(item, position)
        if any(rule.id == seen.id for seen in rules):
            raise RulesError("the id is used twice", rule_id=rule.id)
        rules.append(rule)
    return RuleSet(version, rules)


def _rule(item: object, position: int) -> Rule:
    if not isinstance(item, Mapping):
        raise RulesError(f"rule number {position} is not a mapping")
    rule_id = item.get("id")
    if not isinstance(rule_id, str) or not RULE_ID.fullmatch(rule_id):
        raise RulesError(
            f"rule number {position}: `id` must be 1-64 lower-case letters, digits, _ or -, got {rule_id!r}"
        )
    unknown = set(item) - {"id", "description", "condition", "action", "enabled"}
    if unknown:
        raise RulesError(f"unknown keys {sorted(unknown)}", rule_id=rule_id)
    description, condition = item.get("description"), item.get("condition")
    if not isinstance(description, str) or not description.strip():
        raise RulesError("`description` must say what the rule is for", rule_id=rule_id)
    if not isinstance(condition, str) or not condition.strip():
        raise RulesError("`condition` must be a CEL expression", rule_id=rule_id)
    if len(condition) > MAX_CONDITION_CHARS:
        raise RulesError(f"`condition` is over {MAX_CONDITION_CHARS} characters", rule_id=rule_id)
    action = item.get("action")
    if action not in set(Action):
        raise RulesError(f"`action` must be allow, block or review, got {action!r}", rule_id=rule_id)
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RulesError(f"`enabled` must be true or false, got {enabled!r}", rule_id=rule_id)
    rule = Rule(rule_id, description, condition, Action(action), enabled)
    _compile(rule)  # a disabled rule must compile too: enabling it must not break the document
    return rule


def _compile(rule: Rule) -> Any:
    """The rule's CEL program, its names checked; raise RulesError at the position of the first error."""
    try:
        program = _cel.compile(rule.condition)
    except ValueError as exc:
        message = str(exc)
        found = _CEL_POSITION.search(message)
        line, column = (int(found.group(1)), int(found.group(2))) if found else (1, 1)
        detail = message.split("ERROR: ", 1)[-1].split("\n", 1)[0]
        detail = _CEL_POSITION.sub("", detail).lstrip(": ")
        raise RulesError(detail, rule_id=rule.id, line=line, column=column) from exc
    for name in program.variables():
        if name not in NAMES:
            offset = _offset(rule.condition, rf"\b{re.escape(name)}\b")
            raise RulesError(
                f"unknown name {name!r}: a condition reads tx, features, score and lists",
                rule_id=rule.id,
                **_line_column(rule.condition, offset),
            )
    if bare := _BARE.search(rule.condition):
        raise RulesError(
            f"read {bare.group(1)} by field name ({bare.group(1)}.<name>), not as a whole",
            rule_id=rule.id,
            **_line_column(rule.condition, bare.start()),
        )
    for found in _MEMBER.finditer(rule.condition):
        name, member = found.groups()
        if problem := _member_problem(name, member):
            raise RulesError(problem, rule_id=rule.id, **_line_column(rule.condition, found.start(2)))
    return program


def _member_problem(name: str, member: str) -> str | None:
    if name == "tx" and member not in FIELDS:
        return f"tx has no field {member!r}: it has {', '.join(FIELDS)}"
    if name == "features" and member not in FEATURE_NAMES:
        return f"no feature is named {member!r}: they are {', '.join(FEATURE_NAMES)}"
    if name == "lists":
        return list_name_problem(member)
    return None


def _dry_run(rule: Rule, program: Any, sample: dict[str, Any]) -> None:
    """Evaluate the condition once on sample values: it must give true or false."""
    try:
        result = program.execute(sample)
    except Exception as exc:  # CEL raises TypeError, KeyError, ValueError, RuntimeError
        raise RulesError(f"cannot be evaluated: {exc}", rule_id=rule.id, line=1, column=1) from exc
    if not isinstance(result, bool):
        problem = f"must give true or false, gives {type(result).__name__} {result!r}"
        raise RulesError(problem, rule_id=rule.id, line=1, column=1)


def _offset(text: str, pattern: str) -> int:
    found = re.search(pattern, text)
    return found.start() if found else 0


def _line_column(text: str, offset: int) -> dict[str, int]:
    """1-based line and column of a character offset."""
    before = text[:offset]
    return {"line": before.count("\n") + 1, "column": offset - (before.rfind("\n") + 1) + 1}


NO_RULES = RuleSet("none", ())
"""What runs before any document is pushed: no rules, so the model and the lists decide."""
