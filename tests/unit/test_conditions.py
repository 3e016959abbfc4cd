"""Rules over a whole batch (domain/conditions.py) against the CEL library record by record, the reference.

Random conditions of the translated grammar on random records (undefined features, zeros, negative and
huge numbers, infinities, strings, lists empty or not): every record's matched rules must be the
library's. The conditions that are not translated are evaluated per record, and say why.
"""

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudwatch.domain.cel_syntax import parse
from fraudwatch.domain.conditions import untranslatable
from fraudwatch.domain.controls import Controls
from fraudwatch.domain.decision import Decision
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.lists import ListEntry, ListSnapshot
from fraudwatch.domain.rules import RulesError, RuleSet, compile_rules
from fraudwatch.domain.transaction import Transaction
from infra.cli import main

T0 = 1_796_000_000.0
FEATURES = ("velocity_24h", "amount_zscore", "seconds_since_last", "merchant_fraud_rate_7d", "is_night")
"""The features the random conditions read: few, so that rules and records meet on the same ones."""
MERCHANTS = ("merch-1", "merch-2", "merch-3")
USERS = ("user-1", "user-2")
CATEGORIES = ("grocery", "gift_cards", "crypto", "é-ü", "")
CURRENCIES = ("EUR", "USD", "NGN")
STRINGS = MERCHANTS + USERS + CATEGORIES + CURRENCIES
LISTS = ("watched_merchants", "vip_users", "risky_categories", "empty_currencies")
DOUBLES = (0.0, -0.0, 1.0, -1.0, 0.5, 2.5, 20.0, 500.0, 1e300, -1e300, 1e-300, 5e-324, 123456.789)
INTS = (0, 1, -1, 2, 20, 500, 2**53 + 1, 2**63 - 1, -(2**63))
LISTED = ListSnapshot.of(
    [
        ListEntry("watched_merchants", "merch-1", "test", "test", T0),
        ListEntry("watched_merchants", "merch-3", "test", "test", T0),
        ListEntry("vip_users", "user-2", "test", "test", T0),
        ListEntry("risky_categories", "crypto", "test", "test", T0),
        ListEntry("risky_categories", "é-ü", "test", "test", T0),
    ],
    T0,
)


# ---------------------------------------------------------------- random conditions


def _wrap(text: str, parenthesise: bool) -> str:
    return f"({text})" if parenthesise else text


def _double_literal(value: float) -> str:
    return repr(value)


@st.composite
def terms(draw: st.DrawFn, kind: str, depth: int, parens: bool) -> str:
    """A CEL term of `kind` (bool, double, int, string): fully parenthesised when `parens`, else at random."""
    wrap = parens or draw(st.booleans())
    leaf = depth <= 0 or draw(st.integers(0, 3)) == 0
    if kind == "double":
        if leaf:
            return draw(
                st.one_of(
                    st.sampled_from(FEATURES).map(lambda f: f"features.{f}"),
                    st.just("tx.amount"),
                    st.just("score"),
                    st.sampled_from(DOUBLES).map(_double_literal),
                )
            )
        choice = draw(st.integers(0, 2))
        if choice == 0:
            op = draw(st.sampled_from(("+", "-", "*", "/")))
            left, right = draw(terms("double", depth - 1, parens)), draw(terms("double", depth - 1, parens))
            return _wrap(f"{left} {op} {right}", wrap)
        if choice == 1:
            return _wrap(f"-{_wrap(draw(terms('double', depth - 1, parens)), True)}", wrap)
        return _conditional(draw, "double", depth, parens, wrap)
    if kind == "int":
        if leaf or draw(st.booleans()):
            return draw(
                st.one_of(
                    st.sampled_from(INTS).map(str),
                    st.sampled_from(LISTS).map(lambda name: f"size(lists.{name})"),
                    st.lists(st.sampled_from(DOUBLES), max_size=3).map(
                        lambda items: f"size([{', '.join(map(_double_literal, items))}])"
                    ),
                )
            )
        return _conditional(draw, "int", depth, parens, wrap)
    if kind == "string":
        if leaf or draw(st.booleans()):
            return draw(
                st.one_of(
                    st.sampled_from(("tx.merchant_id", "tx.user_id", "tx.category", "tx.currency")),
                    st.sampled_from(STRINGS).map(lambda s: f"'{s}'"),
                )
            )
        return _conditional(draw, "string", depth, parens, wrap)
    return draw(booleans(depth, parens, wrap))


def _conditional(draw: st.DrawFn, kind: str, depth: int, parens: bool, wrap: bool) -> str:
    test = draw(terms("bool", depth - 1, parens))
    then, otherwise = draw(terms(kind, depth - 1, parens)), draw(terms(kind, depth - 1, parens))
    return _wrap(f"{_wrap(test, True)} ? {then} : {otherwise}", wrap or True)


@st.composite
def booleans(draw: st.DrawFn, depth: int, parens: bool, wrap: bool) -> str:
    """A CEL condition: comparisons, has(), in, &&, ||, !, ? :, literals."""
    if depth <= 0 or draw(st.integers(0, 4)) == 0:
        return draw(
            st.one_of(
                st.sampled_from(("true", "false")),
                st.sampled_from(FEATURES).map(lambda f: f"has(features.{f})"),
                st.sampled_from(LISTS).map(lambda name: _wrap(f"tx.{_field_of(name)} in lists.{name}", wrap)),
            )
        )
    below = depth - 1
    choice = draw(st.integers(0, 7))
    if choice <= 1:
        kinds = draw(
            st.sampled_from((("double", "double"), ("double", "int"), ("int", "double"), ("int", "int")))
        )
        op = draw(st.sampled_from(("<", "<=", ">", ">=", "==", "!=")))
        left, right = draw(terms(kinds[0], below, parens)), draw(terms(kinds[1], below, parens))
        return _wrap(f"{left} {op} {right}", wrap)
    if choice == 2:
        op = draw(st.sampled_from(("==", "!=", "<", ">=")))
        return _wrap(
            f"{draw(terms('string', below, parens))} {op} {draw(terms('string', below, parens))}", wrap
        )
    if choice == 3:
        op = draw(st.sampled_from(("&&", "||", "==", "!=")))
        return _wrap(
            f"{draw(booleans(below, parens, True))} {op} {draw(booleans(below, parens, True))}", wrap
        )
    if choice == 4:
        return _wrap(f"!{_wrap(draw(booleans(below, parens, True)), True)}", wrap)
    if choice == 5:
        if draw(st.booleans()):
            items = draw(st.lists(st.sampled_from(STRINGS), max_size=3))
            listed = ", ".join(f"'{s}'" for s in items)
            return _wrap(f"{draw(terms('string', below, parens))} in [{listed}]", wrap)
        numbers = draw(
            st.lists(
                st.one_of(st.sampled_from(DOUBLES).map(repr), st.sampled_from(INTS).map(str)), max_size=3
            )
        )
        return _wrap(f"{draw(terms('double', below, parens))} in [{', '.join(numbers)}]", wrap)
    if choice == 6:
        name = draw(st.sampled_from(LISTS))
        return _wrap(f"{draw(terms('string', below, parens))} in lists.{name}", wrap)
    return _conditional(draw, "bool", depth, parens, wrap)


def _field_of(list_name: str) -> str:
    return {
        "merchants": "merchant_id",
        "users": "user_id",
        "categories": "category",
        "currencies": "currency",
    }[list_name.rsplit("_", 1)[1]]


# ---------------------------------------------------------------- random records

FEATURE_VALUES = st.one_of(
    st.just(math.nan),  # undefined: a third of the values
    st.sampled_from((math.inf, -math.inf, *DOUBLES)),
    st.floats(allow_nan=True, allow_infinity=True),
)


@st.composite
def records(draw: st.DrawFn) -> tuple[Transaction, list[float], float]:
    row = [draw(FEATURE_VALUES) if name in FEATURES else 1.0 for name in FEATURE_NAMES]
    amount = draw(st.one_of(st.sampled_from((0.0, 1.0, 20.0, 500.0, 1e6)), st.floats(0.0, 1e6)))
    tx = Transaction(
        f"tx-{draw(st.integers(0, 10**6))}",
        draw(st.sampled_from(USERS)),
        draw(st.sampled_from(MERCHANTS)),
        amount,
        draw(st.sampled_from(CURRENCIES)),
        "2026-12-06T01:00:00+00:00",
        draw(st.sampled_from(CATEGORIES)),
        T0,
        1,
    )
    score = draw(st.one_of(st.sampled_from((0.0, 0.5, 1.0)), st.floats(0.0, 1.0), st.just(math.nan)))
    return tx, row, score


def _document(conditions: list[str]) -> dict[str, Any]:
    return {
        "version": "prop-1",
        "rules": [
            {"id": f"r{i}", "description": "random", "condition": c, "action": "review"}
            for i, c in enumerate(conditions)
        ],
    }


def _compiled(conditions: list[str]) -> RuleSet | None:
    """The rule set, or None when the document is refused (its dry run fails: 0.0 / 0.0 < 1.0, ...)."""
    try:
        return compile_rules(_document(conditions))
    except RulesError:
        return None


def _assert_conforms(rules: RuleSet, batch: list[tuple[Transaction, list[float], float]]) -> None:
    transactions = [tx for tx, _, _ in batch]
    rows = [row for _, row, _ in batch]
    scores = [score for _, _, score in batch]
    expected = [tuple(rules.matches(tx, row, score, LISTED)) for tx, row, score in batch]
    assert rules.matches_many(transactions, rows, scores, LISTED) == expected
    assert rules.matches_many(transactions, np.array(rows), scores, LISTED) == expected
    for i, (tx, row, score) in enumerate(batch):  # a batch of one, as the inline API's
        assert rules.matches_many([tx], [row], [score], LISTED) == [expected[i]]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    st.lists(terms("bool", 3, True), min_size=1, max_size=4),
    st.lists(records(), min_size=1, max_size=12),
)
def test_translated_conditions_match_the_cel_library_on_every_record(conditions, batch):
    rules = _compiled(conditions)
    if rules is None:
        return
    assert rules.per_record == {}, "the generated grammar is the translated subset"
    _assert_conforms(rules, batch)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    st.lists(terms("bool", 3, False), min_size=1, max_size=4),
    st.lists(records(), min_size=1, max_size=12),
)
def test_conditions_without_parentheses_parse_as_cel_does(conditions, batch):
    rules = _compiled(conditions)
    if rules is None:
        return
    _assert_conforms(rules, batch)


EDGES = (math.nan, 0.0, -0.0, 1.0, 2.0, math.inf, -math.inf, 9007199254740992.0, -1e300)
"""Feature values where CEL's semantics are easy to get wrong: undefined, signed zeros, infinities, 2**53."""


def _edge_batch() -> list[tuple[Transaction, list[float], float]]:
    velocity, zscore = FEATURE_NAMES.index("velocity_24h"), FEATURE_NAMES.index("amount_zscore")
    batch = []
    for i, (v, z, score) in enumerate((v, z, s) for v in EDGES for z in EDGES for s in (math.nan, 0.7)):
        row = [1.0] * len(FEATURE_NAMES)
        row[velocity], row[zscore] = v, z
        tx = Transaction(
            f"tx-{i}", USERS[i % 2], MERCHANTS[i % 3], 20.0 * (i % 4), "EUR", "", "crypto", T0, 1
        )
        batch.append((tx, row, score))
    return batch


@pytest.mark.parametrize(
    "condition",
    [
        "!(features.velocity_24h > 1.0 && false)",
        "!(false && features.velocity_24h > 1.0)",
        "!(features.velocity_24h > 1.0 || true)",
        "!!(features.velocity_24h > 1.0 || true)",
        "(features.amount_zscore < 1.0 || true) == true",
        "!(features.velocity_24h > 1.0 && features.amount_zscore > 1.0)",
        "!(features.velocity_24h > 1.0 || features.amount_zscore > 1.0)",
        "!(features.velocity_24h > 1.0 ? true : false)",
        "(features.velocity_24h > 1.0 ? false : features.amount_zscore < 1.0) == false",
        "!((features.velocity_24h - features.amount_zscore) < 0.0)",
        "features.velocity_24h / features.amount_zscore != features.velocity_24h / features.amount_zscore",
        "features.velocity_24h * 0.0 == 0.0",
        "!(score > 0.5)",
        "score != score",
        "features.velocity_24h in [1.0, 2]",
        "!(features.velocity_24h in [])",
        "!(tx.user_id in lists.watched_merchants)",
        "'merch-1' in lists.watched_merchants",
        "(true ? features.velocity_24h : 0.0) >= 0.0 || !has(features.velocity_24h)",
        "9007199254740993 == features.velocity_24h",
        "-features.velocity_24h < -1e300",
        "size(lists.watched_merchants) > 0.5 && size([1, 2]) == 2",
        "(tx.amount > 30.0 ? tx.merchant_id : tx.user_id) in ['merch-2', 'user-1']",
    ],
)
def test_errors_nan_and_infinities_as_the_cel_library(condition):
    rules = compile_rules(_document([condition]))
    assert rules.per_record == {}
    _assert_conforms(rules, _edge_batch())


@pytest.mark.parametrize(
    ("condition", "why"),
    [
        ("tx.category.startsWith('gift')", "startsWith"),
        ("size(tx.category) > 3", "size()"),
        ("int(tx.amount) > 2", "int()"),
        ("tx.amount > 1u", "unsigned"),
        ("tx.category == 'a\\'b'", "escapes"),
        ("tx.amount == 'x'", "double == string"),
        ("tx.category.matches('^gift')", "matches"),
    ],
)
def test_a_condition_outside_the_subset_is_evaluated_per_record_and_says_why(condition, why):
    rules = compile_rules(_document([condition, "tx.amount > 100.0"]))
    assert why in rules.per_record["r0"]
    assert "r1" not in rules.per_record
    assert why in (untranslatable(condition) or "")


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(records(), min_size=1, max_size=12))
def test_rules_evaluated_per_record_and_per_batch_together_match_the_library(batch):
    rules = compile_rules(
        _document(
            [
                "tx.category.startsWith('gift') || features.velocity_24h > 2.0",
                "features.amount_zscore > 1.0 && tx.amount > 20.0",
                "size(tx.category) > 3 && tx.merchant_id in lists.watched_merchants",
                "!has(features.seconds_since_last) || score > 0.5",
            ]
        )
    )
    assert set(rules.per_record) == {"r0", "r2"}
    _assert_conforms(rules, batch)


def test_the_parser_follows_cels_precedence():
    assert parse("a || b && !c == d") == parse("a || (b && ((!c) == d))")
    assert parse("x + y * z < w ? p : q ? r : s") == parse("((x + (y * z)) < w) ? p : (q ? r : s)")
    assert parse("x - y - z in l") == parse("((x - y) - z) in l")
    assert parse("-x.y") == parse("-(x.y)")


def test_judging_a_batch_decides_as_judging_each_record():
    rules = compile_rules(
        {
            "version": "v1",
            "rules": [
                {"id": "big", "description": "big", "condition": "tx.amount > 100.0", "action": "review"},
                {
                    "id": "vip",
                    "description": "vip",
                    "condition": "tx.user_id in lists.vip_users",
                    "action": "allow",
                },
                {
                    "id": "odd",
                    "description": "odd",
                    "condition": "tx.category.endsWith('o')",
                    "action": "block",
                },
            ],
        }
    )
    lists = ListSnapshot.of([*LISTED_ENTRIES, ListEntry("blocked_merchants", "merch-2", "t", "t", T0)], T0)
    controls = Controls(rules, lists)
    base = Transaction("tx", "user-1", "merch-1", 50.0, "EUR", "2026-12-06T01:00:00+00:00", "grocery", T0, 1)
    txs = [
        base,
        base._replace(amount=500.0),
        base._replace(user_id="user-2", merchant_id="merch-2", amount=500.0),
        base._replace(category="crypto", merchant_id="merch-2"),
    ]
    rows = [[0.0] * len(FEATURE_NAMES)] * len(txs)
    verdicts = [Decision.APPROVED, Decision.REJECTED, Decision.REJECTED, Decision.APPROVED]
    judged = controls.judge_many(txs, rows, [0.1] * len(txs), verdicts)
    assert judged == [controls.judge(tx, row, 0.1, v) for tx, row, v in zip(txs, rows, verdicts, strict=True)]
    assert [(j.decision, j.matched) for j in judged] == [
        (Decision.APPROVED, ()),
        (Decision.REJECTED, ("rule:big",)),
        (Decision.APPROVED, ("rule:vip", "list:blocked_merchants", "rule:big")),
        (Decision.REJECTED, ("list:blocked_merchants", "rule:odd")),
    ]


LISTED_ENTRIES = [ListEntry("vip_users", "user-2", "test", "test", T0)]


def test_validate_names_the_rules_evaluated_record_by_record_and_why(tmp_path, capsys):
    document = tmp_path / "rules.json"
    document.write_text(json.dumps(_document(["tx.amount > 1.0", "tx.category.startsWith('gift')"])))
    assert main(["rules", "validate", str(document)]) == 0
    said = capsys.readouterr().out
    assert "rule 'r1' is evaluated record by record" in said
    assert "startsWith" in said
    assert "'r0'" not in said


def test_the_lists_and_rules_store_imports_without_numpy():
    """Rules import numpy only to evaluate: the controls store, which puts entries on lists (the cases
    function's layers have no numpy), does not need it."""
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "import fraudwatch.adapters.controls\n"
        "from fraudwatch.domain.controls import Controls\n"
        "from fraudwatch.domain.rules import compile_rules\n"
        "Controls(compile_rules({'version': 'v1', 'rules': []}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
