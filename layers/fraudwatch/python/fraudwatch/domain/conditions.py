"""CEL conditions over a whole batch at once: a condition's syntax tree translated into numpy operations.

The CEL library (domain/rules.py) stays the reference: it compiles and validates every condition, and
evaluates per record whatever this module does not translate. Evaluating per record costs ~2 µs a rule
a record, nearly all of it the binding converting each Python value into a CEL value; here a rule costs
a few numpy operations per *batch*.

The condition is parsed by domain/cel_syntax.py (CEL's grammar) into a syntax tree, which is typed
(bool, int, double, string, list) and translated node by node.

What is translated (anything else is evaluated per record, and `untranslatable` says why):

- literals: true, false, integers, doubles, strings without escapes; lists of literals of one kind;
- `tx.<field>`, `features.<name>`, `score`, `has(features.<name>)`, `<string> in lists.<name>`,
  `size(lists.<name>)`;
- `&&`, `||`, `!`, `? :`, `== != < <= > >=`, `in` a list, and `+ - * /` on doubles.

CEL's semantics, as `common-expression-language` 0.10.0 implements them (tests/unit/test_conditions.py
checks every translated form against it on random records):

- an undefined feature (NaN in the row) is absent from `features`: reading it is an error, `has()` is false;
- an error is absorbed by `&&` and `||` when the other side decides (false, true), else the whole
  condition fails, and a failing condition does not match its record;
- doubles are IEEE 754 (x / 0.0 is ±inf or NaN); an ordering (< <= > >=) with a NaN operand is an error,
  == with NaN is false and != true; an integer meets a double as the nearest double (Rust's `as f64`);
- equality between a string and a number is false in CEL; it is left to the reference (not translated),
  as are mixed int/double arithmetic (an error), int arithmetic (overflow errors) and `%`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from fraudwatch.domain.cel_syntax import (
    Binary,
    Call,
    ListOf,
    Literal,
    Name,
    Node,
    Select,
    Unary,
    Untranslatable,
    parse,
)
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.lists import ListSnapshot, list_field
from fraudwatch.domain.rows import feature_matrix
from fraudwatch.domain.transaction import FIELDS, Transaction

type Mask = npt.NDArray[np.bool_]

# ---------------------------------------------------------------- the batch's columns


class Batch:
    """What conditions read, one column per value, each built on first use."""

    def __init__(
        self,
        transactions: Sequence[Transaction],
        rows: Sequence[Sequence[float]] | npt.NDArray[np.float64],
        scores: Sequence[float],
        lists: ListSnapshot,
    ) -> None:
        self.size = len(transactions)
        self._transactions = transactions
        self._rows = rows
        self._scores = scores
        self._lists = lists
        self._features: list[Value] | None = None
        self._columns: dict[object, Value] = {}
        self._on_lists: dict[str, Mask] = {}

    def feature(self, index: int) -> Value:
        """A feature's values; an error where it is undefined (NaN)."""
        if self._features is None:
            self._features = self._feature_columns()
        return self._features[index]

    def _feature_columns(self) -> list[Value]:
        """Every feature's column (contiguous: one row of the transposed matrix), found undefined at once."""
        by_feature = np.ascontiguousarray(feature_matrix(self._rows, np.float64).T)
        undefined = np.isnan(by_feature)
        return [
            Value(values, failed if any_failed else None, False, True)
            for values, failed, any_failed in zip(
                by_feature, undefined, undefined.any(axis=1).tolist(), strict=True
            )
        ]

    def field(self, name: str) -> Value:
        """A transaction field's values: doubles for the amount, Python strings (object array) otherwise."""
        key = ("tx", name)
        if (column := self._columns.get(key)) is None:
            at = FIELDS.index(name)
            if name == "amount":
                values = np.fromiter((tx[at] for tx in self._transactions), np.float64, self.size)
                column = Value(values, None, bool(np.isnan(values).any()))
            else:
                strings = np.fromiter((tx[at] for tx in self._transactions), object, self.size)
                column = Value(strings, None, False)
            self._columns[key] = column
        return column

    def score(self) -> Value:
        """The model's scores."""
        if (column := self._columns.get("score")) is None:
            values = np.asarray(self._scores, dtype=np.float64).reshape(self.size)
            column = self._columns["score"] = Value(values, None, bool(np.isnan(values).any()))
        return column

    def on_list(self, name: str) -> Mask:
        """Whether each transaction's value of the list's field is on the list."""
        if (hits := self._on_lists.get(name)) is None:
            on = self._lists.values.get(name, frozenset())
            at = FIELDS.index(list_field(name))
            hits = self._on_lists[name] = np.fromiter(
                (tx[at] in on for tx in self._transactions), np.bool_, self.size
            )
        return hits


def fired(
    translated: Sequence[tuple[int, Callable[[Batch], Mask | bool]]],
    conditions: int,
    batch: Batch,
    per_record: Iterable[tuple[int, int]],
) -> dict[int, list[int]]:
    """Per record that matches any condition: the positions of those it matches, in order.

    `translated` are run on the batch; `per_record` adds the (condition, record) matches found otherwise.
    """
    matrix = np.zeros((conditions, batch.size), dtype=np.bool_)
    for i, matched in translated:
        matrix[i] = matched(batch)
    for i, j in per_record:
        matrix[i, j] = True
    found: dict[int, list[int]] = {}
    for i, j in zip(
        *(axis.tolist() for axis in np.nonzero(matrix)), strict=True
    ):  # by condition, then record
        found.setdefault(j, []).append(i)
    return found


# ---------------------------------------------------------------- typed, vectorised terms


class Value(NamedTuple):
    """A term's values over the batch (an array, or one scalar for all), where it failed, maybe NaN.

    A boolean term's values are false where it failed, so that `values` alone is "matched". (A tuple:
    one is built per term per batch, and a frozen dataclass costs three times as much.)
    """

    values: Any
    errors: Mask | None
    nan: bool
    """Whether values may be NaN where the term did not fail (after arithmetic)."""
    nan_where_failed: bool = False
    """Whether values are NaN where the term failed (a feature's column): comparing them gives false."""


BOOL, INT, DOUBLE, STRING, LIST = "bool", "int", "double", "string", "list"
NUMBERS = (INT, DOUBLE)


@dataclass(frozen=True, slots=True)
class Term:
    """A translated sub-expression: its CEL type, and how to compute it over a batch."""

    type: str
    run: Callable[[Batch], Value]
    constant: Any = None
    """A literal's value (a tuple of values for a list of literals), else None."""
    list_name: str | None = None
    """For `lists.<name>`, the list it reads."""


def translate(condition: str) -> Callable[[Batch], Mask | bool]:
    """The condition as a function of a batch: which records it matches (one bool: all or none).

    Raises Untranslatable.
    """
    term = _term(parse(condition), need_errors=False)
    if term.type != BOOL:
        raise Untranslatable(f"the condition gives a {term.type}, not a bool")
    run = term.run

    def matched(batch: Batch) -> Mask | bool:
        return run(batch).values  # type: ignore[no-any-return]

    return matched


def untranslatable(condition: str) -> str | None:
    """Why a condition is evaluated per record, or None when it is evaluated on whole batches."""
    try:
        translate(condition)
    except Untranslatable as exc:
        return str(exc)
    return None


def _term(node: Node, need_errors: bool = True) -> Term:
    """The node translated; `need_errors`: whether the term's users need to know where it failed.

    A condition's own result needs only its values (false where it failed); `!`, `? :` and comparisons
    of booleans need their operands' errors, `&&` and `||` only when their own users do.
    """
    if isinstance(node, Literal):
        return _literal(node.value)
    if isinstance(node, Name):
        if node.name == "score":
            return Term(DOUBLE, Batch.score)
        raise Untranslatable(f"the name {node.name!r} on its own")
    if isinstance(node, Select):
        return _select(node)
    if isinstance(node, Call):
        return _call(node)
    if isinstance(node, ListOf):
        items = [_term(item) for item in node.items]
        if any(item.constant is None or item.type == LIST for item in items):
            raise Untranslatable("a list of other things than literals")
        return Term(LIST, _constant(None), tuple(item.constant for item in items))
    if isinstance(node, Unary):
        return _not(_term(node.operand)) if node.op == "!" else _negative(_term(node.operand))
    if isinstance(node, Binary):
        return _binary(node, need_errors)
    return _conditional(_term(node.test), _term(node.then), _term(node.otherwise))


def _feature_index(name: str) -> int:
    if name not in FEATURE_NAMES:
        raise Untranslatable(f"no feature is named {name!r}")
    return FEATURE_NAMES.index(name)


def _constant(value: Any) -> Callable[[Batch], Value]:
    constant = Value(value, None, False)
    return lambda _batch: constant


def _literal(value: bool | int | float | str) -> Term:
    kind = {bool: BOOL, int: INT, float: DOUBLE, str: STRING}[type(value)]
    return Term(kind, _constant(value), value)


def _select(node: Select) -> Term:
    if not isinstance(node.operand, Name) or node.operand.name not in ("tx", "features", "lists"):
        raise Untranslatable("selecting a field of something else than tx, features or lists")
    root, field = node.operand.name, node.field
    if root == "tx" and field not in FIELDS:
        raise Untranslatable(f"tx has no field {field!r}")
    if root == "features":
        index = _feature_index(field)
        return Term(DOUBLE, lambda batch: batch.feature(index))
    if root == "tx":
        return Term(DOUBLE if field == "amount" else STRING, _FieldRun(field))
    return Term(LIST, _constant(None), list_name=field)


def _call(node: Call) -> Term:
    (argument,) = node.args if len(node.args) == 1 else (None,)
    if node.function == "has" and isinstance(argument, Select) and argument.operand == Name("features"):
        index = _feature_index(argument.field)

        def has(batch: Batch) -> Value:
            undefined = batch.feature(index).errors
            return Value(True if undefined is None else ~undefined, None, False)

        return Term(BOOL, has)
    if node.function == "size" and argument is not None:
        term = _term(argument)
        if term.list_name is not None:
            name = term.list_name
            return Term(INT, lambda batch: Value(batch.on_list(name).astype(np.int64), None, False))
        if term.type == LIST:
            return _literal(len(term.constant))
    raise Untranslatable(f"the function {node.function}() on this argument")


def _not(term: Term) -> Term:
    if term.type != BOOL:
        raise Untranslatable(f"! on a {term.type}")
    run = term.run

    def negated(batch: Batch) -> Value:
        value = run(batch)
        values = np.logical_not(value.values)
        return Value(values if value.errors is None else values & ~value.errors, value.errors, False)

    return Term(BOOL, negated, None if term.constant is None else not term.constant)


def _negative(term: Term) -> Term:
    if term.type == INT and term.constant is not None:
        if term.constant == -(2**63):
            raise Untranslatable("an integer overflow")
        return _literal(-term.constant)
    if term.type != DOUBLE:
        raise Untranslatable(f"- on a {term.type}")
    if term.constant is not None:
        return _literal(-term.constant)
    run = term.run

    def negative(batch: Batch) -> Value:
        value = run(batch)
        return Value(np.negative(value.values), value.errors, value.nan, value.nan_where_failed)

    return Term(DOUBLE, negative)


def _binary(node: Binary, need_errors: bool) -> Term:
    if node.op in ("&&", "||"):
        left, right = _term(node.left, need_errors), _term(node.right, need_errors)
        return _logical(node.op, left, right, need_errors)
    left, right = _term(node.left), _term(node.right)
    if node.op == "in":
        return _in(left, right, need_errors)
    if node.op in ("==", "!=", "<", "<=", ">", ">="):
        return _compare(node.op, left, right, need_errors)
    if node.op in ("+", "-", "*", "/") and left.type == right.type == DOUBLE:
        return _arithmetic(node.op, left, right)
    raise Untranslatable(f"{left.type} {node.op} {right.type}")


def _errors(a: Value, b: Value) -> Mask | None:
    if a.errors is None:
        return b.errors
    return a.errors if b.errors is None else a.errors | b.errors


def _logical(op: str, left: Term, right: Term, need_errors: bool) -> Term:
    if left.type != BOOL or right.type != BOOL:
        raise Untranslatable(f"{left.type} {op} {right.type}")
    run_left, run_right = left.run, right.run

    def both(batch: Batch) -> Value:
        a, b = run_left(batch), run_right(batch)
        values = np.logical_and(a.values, b.values)  # true where both are true, neither failed
        if not need_errors or (a.errors is None and b.errors is None):
            return Value(values, None, False)
        # an error is absorbed by the other side's false (a value, not an error)
        false_a = np.logical_not(a.values) if a.errors is None else ~(a.values | a.errors)
        false_b = np.logical_not(b.values) if b.errors is None else ~(b.values | b.errors)
        errors = _errors(a, b) & ~(false_a | false_b)
        return Value(values, errors, False)

    def either(batch: Batch) -> Value:
        a, b = run_left(batch), run_right(batch)
        values = np.logical_or(a.values, b.values)  # true where one is true and did not fail
        if not need_errors or (a.errors is None and b.errors is None):
            return Value(values, None, False)
        return Value(values, _errors(a, b) & np.logical_not(values), False)  # absorbed by a true

    return Term(BOOL, both if op == "&&" else either)


def _family(term: Term) -> str:
    return "number" if term.type in NUMBERS else term.type


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def _compare(op: str, left: Term, right: Term, need_errors: bool) -> Term:
    kinds = (_family(left), _family(right))
    ordering = op not in ("==", "!=")
    if kinds[0] != kinds[1] or kinds[0] == LIST or (ordering and kinds[0] == BOOL):
        raise Untranslatable(f"{left.type} {op} {right.type}")
    mixed = left.type != right.type  # an int meets a double as the nearest double
    run_left, run_right = _as_double(left, mixed), _as_double(right, mixed)
    compare = _COMPARE[op]
    nan_is_false = op != "!=" and kinds[0] == "number"

    def compared(batch: Batch) -> Value:
        a, b = run_left(batch), run_right(batch)
        values = compare(a.values, b.values)
        errors = _errors(a, b)
        if ordering and (a.nan or b.nan):  # NaN has no order: CEL finds no overload
            unordered = np.isnan(a.values) | np.isnan(b.values)
            errors = unordered if errors is None else errors | unordered
            values = values & ~errors
        elif errors is None:
            return Value(values, None, False)
        elif not (nan_is_false and _nan_where_failed(a) and _nan_where_failed(b)):
            values = values & ~errors  # else false already where an operand failed: NaN compares false
        return Value(values, errors if need_errors else None, False)

    return Term(BOOL, compared)


def _nan_where_failed(value: Value) -> bool:
    return value.errors is None or value.nan_where_failed


def _as_double(term: Term, convert: bool) -> Callable[[Batch], Value]:
    if not convert or term.type != INT:
        return term.run
    if term.constant is not None:
        return _constant(float(term.constant))
    run = term.run

    def converted(batch: Batch) -> Value:
        value = run(batch)
        return Value(value.values.astype(np.float64), value.errors, False)

    return converted


def _in(left: Term, right: Term, need_errors: bool) -> Term:
    run_left = left.run
    if right.list_name is not None:
        if left.type != STRING:
            raise Untranslatable(f"a {left.type} in a list of strings")
        name = right.list_name
        own_field = isinstance(left.run, _FieldRun) and left.run.field == list_field(name)

        def listed(batch: Batch) -> Value:
            a = run_left(batch)
            on = batch.on_list(name)
            values = on if own_field else on & np.equal(a.values, batch.field(list_field(name)).values)
            if a.errors is None:
                return Value(values, None, False)
            return Value(values & ~a.errors, a.errors if need_errors else None, False)

        return Term(BOOL, listed)
    if right.type != LIST:
        raise Untranslatable(f"in a {right.type}")
    items = [_literal(item) for item in right.constant]
    if any(_family(item) != _family(left) for item in items) or _family(left) == BOOL:
        raise Untranslatable(f"a {left.type} in a list of other kinds")
    if left.type == STRING:
        strings = frozenset(str(item.constant) for item in items)

        def member(values: Any) -> Any:
            if np.ndim(values) == 0:
                return (values.item() if isinstance(values, np.ndarray) else values) in strings
            return np.fromiter((v in strings for v in values), np.bool_, len(values))
    else:
        numbers = np.array([float(item.constant) for item in items], dtype=np.float64)

        def member(values: Any) -> Any:
            return np.isin(np.asarray(values, dtype=np.float64), numbers)

    def within(batch: Batch) -> Value:
        a = run_left(batch)
        values = member(a.values)
        if a.errors is None:
            return Value(values, None, False)
        return Value(values & ~a.errors, a.errors if need_errors else None, False)

    return Term(BOOL, within)


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
}


def _arithmetic(op: str, left: Term, right: Term) -> Term:
    run_left, run_right, apply = left.run, right.run, _ARITHMETIC[op]

    def computed(batch: Batch) -> Value:
        a, b = run_left(batch), run_right(batch)
        with np.errstate(all="ignore"):  # IEEE 754, as CEL: x / 0.0 is ±inf, 0.0 / 0.0 NaN
            values = apply(np.float64(a.values) if np.ndim(a.values) == 0 else a.values, b.values)
        return Value(values, _errors(a, b), True, _nan_where_failed(a) and _nan_where_failed(b))

    return Term(DOUBLE, computed)


def _conditional(test: Term, then: Term, otherwise: Term) -> Term:
    if test.type != BOOL or then.type != otherwise.type or then.type == LIST:
        raise Untranslatable(f"{test.type} ? {then.type} : {otherwise.type}")
    run_test, run_then, run_otherwise = test.run, then.run, otherwise.run
    boolean = then.type == BOOL

    def chosen(batch: Batch) -> Value:
        c, a, b = run_test(batch), run_then(batch), run_otherwise(batch)
        values = np.where(c.values, a.values, b.values)
        if then.type == STRING:
            values = values.astype(object)
        errors = c.errors
        if a.errors is not None:
            errors = _or(errors, np.logical_and(c.values, a.errors))
        if b.errors is not None:
            taken = np.logical_not(c.values) if c.errors is None else ~(c.values | c.errors)
            errors = _or(errors, np.logical_and(taken, b.errors))
        if boolean and errors is not None:
            values = values & ~errors
        return Value(values, errors, a.nan or b.nan)

    return Term(then.type, chosen)


def _or(errors: Mask | None, more: Mask) -> Mask:
    return more if errors is None else errors | more


class _FieldRun:
    """A tx field's column (a class rather than a lambda, so `in lists.<name>` can see which field)."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __call__(self, batch: Batch) -> Value:
        return batch.field(self.field)
