"""Rules and lists in the domain: compiling a document, evaluating conditions, the fixed action priority,
and the scoring service's decisions with their reasons and rules version."""

import math
from typing import Any

import pytest

from fraudwatch.domain.controls import Controls, FixedControls
from fraudwatch.domain.decision import Decision
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.lists import Action, ListEntry, ListSnapshot, entry_problem, list_name_problem
from fraudwatch.domain.rules import NO_RULES, RulesError, compile_rules
from fraudwatch.domain.transaction import Transaction
from tests.unit.test_scoring import T0, record, service

TX = Transaction("tx-1", "user-1", "merch-1", 600.0, "USD", "2026-12-06T01:00:00+00:00", "grocery", T0, 1)
VELOCITY = FEATURE_NAMES.index("velocity_24h")
SINCE_LAST = FEATURE_NAMES.index("seconds_since_last")


def rule(rule_id: str, condition: str, action: str = "block", **more: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "description": f"{rule_id} for a test",
        "condition": condition,
        "action": action,
        **more,
    }


def document(*rules: dict[str, Any], version: str = "test-1") -> dict[str, Any]:
    return {"version": version, "rules": list(rules)}


def features(**values: float) -> list[float]:
    row = [0.0] * len(FEATURE_NAMES)
    for name, value in values.items():
        row[FEATURE_NAMES.index(name)] = value
    return row


def entry(list_name: str, value: str, expires_at: float | None = None) -> ListEntry:
    return ListEntry(list_name, value, "analyst@example.com", "card testing", T0 - 60, expires_at)


# ---------------------------------------------------------------- compiling


@pytest.mark.parametrize(
    ("condition", "line", "column", "says"),
    [
        ("tx.amount >", 1, 12, "Syntax error"),
        ("tx.amount > 500.0 &&\n  features.velocity_24h >> 3.0", 2, 26, "Syntax error"),
        ("tx.amount > limit", 1, 13, "unknown name 'limit'"),
        ("tx.amout > 500.0", 1, 4, "tx has no field 'amout'"),
        ("features.velocity > 2.0", 1, 10, "no feature is named 'velocity'"),
        ("tx.merchant_id in lists.bad", 1, 25, "a list's name is"),
        ("size(tx) > 2", 1, 6, "read tx by field name"),
    ],
)
def test_a_broken_condition_is_refused_with_its_rule_and_position(condition, line, column, says):
    with pytest.raises(RulesError) as refused:
        compile_rules(document(rule("fine", "score > 0.5"), rule("broken", condition)))
    assert refused.value.rule_id == "broken"
    assert (refused.value.line, refused.value.column) == (line, column)
    assert says in str(refused.value)
    assert f"rule 'broken' (condition line {line}, column {column})" in str(refused.value)


@pytest.mark.parametrize(
    ("condition", "says"),
    [
        ("tx.amount", "must give true or false"),
        ("tx.amount > 1.0 && score > 'high'", "cannot be evaluated"),
    ],
)
def test_a_condition_that_is_not_a_test_is_refused(condition, says):
    with pytest.raises(RulesError, match=says):
        compile_rules(document(rule("odd", condition)))


def test_a_disabled_rule_must_compile_too():
    with pytest.raises(RulesError, match="'later'"):
        compile_rules(document(rule("later", "tx.amount >", enabled=False)))


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ([], "must be a mapping"),
        ({"rules": []}, "`version`"),
        ({"version": "v 1", "rules": []}, "`version`"),
        ({"version": "v1"}, "`rules` must be a list"),
        ({"version": "v1", "rules": [], "extra": 1}, "unknown keys"),
        (document(rule("Upper", "score > 0.5")), "`id`"),
        (document(rule("a", "score > 0.5"), rule("a", "score > 0.6")), "used twice"),
        (document(rule("a", "score > 0.5", action="deny")), "allow, block or review"),
        (document(rule("a", "score > 0.5", enabled="yes")), "`enabled`"),
        (document(rule("a", "score > 0.5", priority=1)), "unknown keys"),
        (document({"id": "a", "condition": "score > 0.5", "action": "block"}), "`description`"),
    ],
)
def test_a_malformed_document_is_refused_saying_what_is_wrong(doc, says):
    with pytest.raises(RulesError, match=says):
        compile_rules(doc)


def test_a_compiled_document_round_trips():
    doc = document(rule("a", "score > 0.5", "review", enabled=False), rule("b", "tx.amount > 1.0", "allow"))
    assert compile_rules(doc).to_dict() == {
        "version": "test-1",
        "rules": [{**r, "enabled": r.get("enabled", True)} for r in doc["rules"]],
    }


# ---------------------------------------------------------------- evaluating


def test_conditions_read_the_transaction_its_features_and_the_score():
    rules = compile_rules(
        document(
            rule("burst", "features.velocity_24h > 20.0 && tx.amount > 500.0"),
            rule("grocery_high_score", "tx.category == 'grocery' && score > 0.8", "review"),
            rule("small", "tx.amount < 10.0", "allow"),
        )
    )
    matched = rules.matches(TX, features(velocity_24h=25.0), 0.9, ListSnapshot({}))
    assert [r.id for r in matched] == ["burst", "grocery_high_score"]
    assert rules.matches(TX, features(velocity_24h=5.0), 0.1, ListSnapshot({})) == []


def test_an_undefined_feature_is_absent_and_has_tells():
    rules = compile_rules(
        document(
            rule("quick_repeat", "features.seconds_since_last < 5.0"),
            rule("first_payment", "!has(features.seconds_since_last)", "review"),
        )
    )
    first = features(seconds_since_last=math.nan)
    assert [r.id for r in rules.matches(TX, first, 0.0, ListSnapshot({}))] == ["first_payment"]
    assert [r.id for r in rules.matches(TX, features(), 0.0, ListSnapshot({}))] == ["quick_repeat"]


def test_a_condition_failing_on_a_record_does_not_match_it_and_the_others_still_do():
    rules = compile_rules(
        document(
            rule("uses_nan", "features.seconds_since_last < 5.0"),
            rule("big", "tx.amount > 500.0"),
        )
    )
    matched = rules.matches(TX, features(seconds_since_last=math.nan), 0.0, ListSnapshot({}))
    assert [r.id for r in matched] == ["big"]


def test_disabled_rules_never_match():
    rules = compile_rules(document(rule("off", "tx.amount > 1.0", enabled=False)))
    assert rules.matches(TX, features(), 0.0, ListSnapshot({})) == []


def test_rules_read_list_membership_of_the_transactions_own_value():
    rules = compile_rules(document(rule("watched", "tx.merchant_id in lists.watched_merchants", "review")))
    on = ListSnapshot.of([entry("watched_merchants", "merch-1")], T0)
    off = ListSnapshot.of([entry("watched_merchants", "merch-2")], T0)
    assert [r.id for r in rules.matches(TX, features(), 0.0, on)] == ["watched"]
    assert rules.matches(TX, features(), 0.0, off) == []


# ---------------------------------------------------------------- lists


@pytest.mark.parametrize(
    "name", ["blocked_merchants", "allowed_users", "review_categories", "vip2_currencies"]
)
def test_list_names_say_what_they_hold(name):
    assert list_name_problem(name) is None


@pytest.mark.parametrize("name", ["blocked", "blocked_shops", "Blocked_users", "blocked-users", "_users"])
def test_a_list_name_that_says_nothing_is_refused(name):
    assert list_name_problem(name) is not None


def test_expired_entries_do_not_count():
    lists = ListSnapshot.of([entry("blocked_merchants", "merch-1", expires_at=T0)], T0)
    assert (
        Controls(NO_RULES, lists).judge(TX, features(), 0.0, Decision.APPROVED).decision is Decision.APPROVED
    )
    lists = ListSnapshot.of([entry("blocked_merchants", "merch-1", expires_at=T0 + 1)], T0)
    assert (
        Controls(NO_RULES, lists).judge(TX, features(), 0.0, Decision.APPROVED).decision is Decision.REJECTED
    )


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"list_name": "shops"}, "a list's name"),
        ({"value": "two words"}, "value"),
        ({"added_by": " "}, "who"),
        ({"reason": ""}, "why"),
        ({"expires_at": T0 - 120}, "expires before"),
    ],
)
def test_an_entry_without_a_valid_name_value_who_or_why_is_refused(changes, says):
    assert says in (entry_problem(entry("blocked_merchants", "merch-1")._replace(**changes)) or "")


# ---------------------------------------------------------------- priority


@pytest.mark.parametrize(
    ("actions", "model", "decided"),
    [
        ((), Decision.REJECTED, Decision.REJECTED),
        ((Action.REVIEW,), Decision.APPROVED, Decision.FLAGGED),
        ((Action.REVIEW,), Decision.REJECTED, Decision.REJECTED),
        ((Action.BLOCK,), Decision.APPROVED, Decision.REJECTED),
        ((Action.BLOCK, Action.REVIEW), Decision.APPROVED, Decision.REJECTED),
        ((Action.ALLOW,), Decision.REJECTED, Decision.APPROVED),
        ((Action.REVIEW, Action.BLOCK, Action.ALLOW), Decision.REJECTED, Decision.APPROVED),
    ],
)
def test_allow_beats_block_beats_review_beats_the_model(actions, model, decided):
    rules = compile_rules(
        document(*(rule(f"r{i}-{a.value}", "true", a.value) for i, a in enumerate(actions)))
    )
    judged = Controls(rules).judge(TX, features(), 0.5, model)
    assert judged.decision is decided
    assert set(judged.matched) == {f"rule:r{i}-{a.value}" for i, a in enumerate(actions)}
    if actions:
        assert judged.matched[0].endswith(min(actions, key=[Action.ALLOW, Action.BLOCK, Action.REVIEW].index))


def test_lists_act_by_their_name_and_only_on_their_field():
    lists = ListSnapshot.of(
        [
            entry("blocked_merchants", "merch-1"),
            entry("allowed_users", "user-9"),
            entry("watched_users", "user-1"),
        ],
        T0,
    )
    judged = Controls(NO_RULES, lists).judge(TX, features(), 0.0, Decision.APPROVED)
    assert (judged.decision, judged.matched) == (Decision.REJECTED, ("list:blocked_merchants",))
    allowed = Controls(NO_RULES, lists).judge(
        TX._replace(user_id="user-9"), features(), 0.0, Decision.REJECTED
    )
    assert (allowed.decision, allowed.matched) == (
        Decision.APPROVED,
        ("list:allowed_users", "list:blocked_merchants"),
    )


# ---------------------------------------------------------------- the scoring service


def test_a_blocked_merchant_rejects_with_its_list_and_the_rules_version_recorded():
    rules = compile_rules(document(rule("big", "tx.amount > 100.0", "review"), version="2026-12-06.1"))
    lists = ListSnapshot.of([entry("blocked_merchants", "merch-2")], T0)
    svc, ports = service(controls=FixedControls(Controls(rules, lists)))
    report = svc.process(
        [record(1, amount=20), record(2, amount=20, merchant_id="merch-2"), record(3, amount=300)]
    )
    decided = {d.transaction_id: d for d in report.decisions}
    assert decided["tx-1"].decision is Decision.APPROVED
    assert decided["tx-1"].rule_reasons == ()
    assert decided["tx-2"].decision is Decision.REJECTED
    assert decided["tx-2"].rule_reasons == ("list:blocked_merchants",)
    assert decided["tx-3"].decision is Decision.FLAGGED  # the model alone approves 300
    assert decided["tx-3"].rule_reasons == ("rule:big",)
    assert {d.rules_version for d in report.decisions} == {"2026-12-06.1"}
    alert = next(d for d in ports["alerts"].published if d.transaction_id == "tx-2").to_dict()
    assert alert["rule_reasons"] == ["list:blocked_merchants"]
    assert alert["rules_version"] == "2026-12-06.1"
    assert alert["reasons"], "the model's feature contributions stay beside the rules'"


def test_an_allow_approves_what_the_model_rejects_and_raises_no_alert():
    lists = ListSnapshot.of([entry("allowed_users", "user-1")], T0)
    svc, ports = service(controls=FixedControls(Controls(NO_RULES, lists)))
    (decided,) = svc.process([record(1, amount=5000)]).decisions
    assert (decided.decision, decided.rule_reasons) == (Decision.APPROVED, ("list:allowed_users",))
    assert not ports["alerts"].published


def test_without_controls_decisions_record_no_rules():
    svc, _ = service()
    (decided,) = svc.process([record(1, amount=5000)]).decisions
    assert (decided.rule_reasons, decided.rules_version) == ((), "")
    assert decided.to_dict()["rule_reasons"] == []
