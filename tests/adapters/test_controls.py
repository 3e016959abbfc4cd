"""Rules and lists on moto: the store, the functions' cache (staleness, no call while warm, the last good
rules kept), and `fraudwatch lists` / `fraudwatch rules` against the stack's outputs."""

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from fraudwatch.adapters.controls import ACTIVE, CachedControls, ControlsStore
from fraudwatch.adapters.dynamodb import decision_of
from fraudwatch.domain.decision import Decision, DecisionRecord, Thresholds
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.lists import ListEntry
from fraudwatch.domain.rules import compile_rules
from fraudwatch.domain.transaction import Transaction
from fraudwatch.settings import Settings
from fraudwatch.wiring import build_service
from infra.cli import main
from infra.invoke import function_environment
from tests.unit.test_scoring import T0, record

TX = Transaction("tx-1", "user-1", "merch-1", 600.0, "USD", "2026-12-06T01:00:00+00:00", "grocery", T0, 1)
ROW = [0.0] * len(FEATURE_NAMES)
RULES: dict[str, Any] = {
    "version": "2026-12-06.1",
    "rules": [
        {"id": "big", "description": "big payments", "condition": "tx.amount > 500.0", "action": "review"},
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Calls:
    """DynamoDB calls a client makes, by operation."""

    def __init__(self, client: Any) -> None:
        self.made: list[str] = []
        client.meta.events.register("provide-client-params.dynamodb.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.made.append(model.name)

    def take(self) -> list[str]:
        taken, self.made = self.made, []
        return taken


@pytest.fixture
def store(stack) -> ControlsStore:
    return ControlsStore(stack["ListsTableName"], stack["RulesTableName"], boto3.client("dynamodb"))


@pytest.fixture
def outputs(stack, tmp_path: Path) -> str:
    path = tmp_path / "stack.json"
    path.write_text(json.dumps({"outputs": stack}))
    return str(path)


def entry(list_name: str, value: str, expires_at: float | None = None) -> ListEntry:
    return ListEntry(list_name, value, "analyst", "card testing", T0, expires_at)


# ---------------------------------------------------------------- the store


def test_entries_keep_who_why_when_and_expiry_and_can_be_removed(store):
    store.add([entry("blocked_merchants", "merch-1", T0 + 86400), entry("allowed_users", "user-9")])
    assert sorted(store.entries()) == [
        entry("allowed_users", "user-9"),
        entry("blocked_merchants", "merch-1", T0 + 86400),
    ]
    assert store.entries("allowed_users") == [entry("allowed_users", "user-9")]
    removed = store.remove([("allowed_users", "user-9"), ("allowed_users", "never-there")])
    assert removed == [("allowed_users", "user-9")]
    assert [e.value for e in store.entries()] == ["merch-1"]


def test_an_entry_is_read_by_key_and_removed_only_while_it_is_still_the_one_read(store):
    mine = ListEntry("blocked_users", "user-1", "ana", "case tx-1: stolen", T0)
    store.add([mine])
    assert store.entry("blocked_users", "user-1") == mine
    assert store.entry("blocked_users", "user-2") is None
    theirs = mine._replace(added_by="risk-team", reason="known mule")
    store.add([theirs])  # replaced since it was read

    assert store.remove_entry(mine) is False
    assert store.entry("blocked_users", "user-1") == theirs
    assert store.remove_entry(theirs) is True
    assert store.entry("blocked_users", "user-1") is None
    assert store.remove_entry(theirs) is False  # not there: nothing removed


def test_pushes_are_numbered_and_a_rollback_puts_an_earlier_one_back(store):
    first = store.push(compile_rules(RULES), pushed_by="analyst", note="first", now=T0)
    second = store.push(
        compile_rules({**RULES, "version": "v2", "rules": []}), pushed_by="lead", note="", now=T0
    )
    assert (first.seq, second.seq) == (1, 2)
    assert store.active() == second
    assert [v.seq for v in store.history()] == [1, 2]
    store.activate(first)
    assert store.active() == first


# ---------------------------------------------------------------- the functions' cache


def test_the_cache_reads_once_per_max_age_and_makes_no_call_while_warm(stack, store):
    client = boto3.client("dynamodb")
    calls = Calls(client)
    clock = Clock()
    cached = CachedControls(
        ControlsStore(stack["ListsTableName"], stack["RulesTableName"], client), max_age=30, clock=clock
    )
    assert cached.current().judge(TX, ROW, 0.0, Decision.APPROVED).decision is Decision.APPROVED
    assert sorted(calls.take()) == ["GetItem", "Scan"]
    store.add([entry("blocked_merchants", "merch-1")])
    clock.now = 29.9
    assert cached.current().judge(TX, ROW, 0.0, Decision.APPROVED).decision is Decision.APPROVED
    assert calls.take() == []
    clock.now = 30.0
    judged = cached.current().judge(TX, ROW, 0.0, Decision.APPROVED)
    assert (judged.decision, judged.matched) == (Decision.REJECTED, ("list:blocked_merchants",))
    assert sorted(calls.take()) == ["GetItem", "Scan"]


def test_a_stored_document_that_does_not_compile_is_never_swapped_in(stack, store):
    clock = Clock()
    cached = CachedControls(store, max_age=30, clock=clock)
    store.push(compile_rules(RULES), pushed_by="analyst", note="", now=T0)
    assert cached.current().version == "2026-12-06.1"
    broken = {**RULES, "version": "broken", "rules": [{**RULES["rules"][0], "condition": "tx.amount >"}]}
    boto3.client("dynamodb").put_item(  # as a bug or a hand edit would write it: push refuses it
        TableName=stack["RulesTableName"],
        Item={
            "seq": {"N": str(ACTIVE)},
            "active": {"N": "7"},
            "document": {"S": json.dumps(broken)},
            "version": {"S": "broken"},
            "pushed_by": {"S": "someone"},
            "pushed_at": {"N": str(T0)},
        },
    )
    clock.now = 30
    kept = cached.current()
    assert kept.version == "2026-12-06.1"
    assert kept.judge(TX, ROW, 0.0, Decision.APPROVED).matched == ("rule:big",)
    assert cached.refused == 7


def test_a_failed_read_keeps_the_cached_controls_and_is_retried_soon(stack, store):
    store.add([entry("blocked_merchants", "merch-1")])
    clock = Clock()
    cached = CachedControls(store, max_age=30, retry_after=5, clock=clock)
    assert cached.current().lists.values == {"blocked_merchants": frozenset({"merch-1"})}
    boto3.client("dynamodb").delete_table(TableName=stack["ListsTableName"])
    clock.now = 30
    assert cached.current().lists.values == {"blocked_merchants": frozenset({"merch-1"})}
    assert cached.read_errors == 1
    clock.now = 34
    cached.current()
    assert cached.read_errors == 1, "no read before retry_after"
    clock.now = 35
    cached.current()
    assert cached.read_errors == 2


def test_the_wired_service_rejects_a_blocked_merchants_payment_with_its_list(stack, store, tiny_bundle):
    env = function_environment(stack) | {"MODEL_DIR": str(tiny_bundle)}
    store.add([entry("blocked_merchants", "merch-1")])
    service = build_service(Settings.from_env(env), boto3.Session(region_name="us-east-1"))
    (decided,) = service.process([record(1, amount=20)]).decisions
    assert (decided.decision, decided.rule_reasons, decided.rules_version) == (
        Decision.REJECTED,
        ("list:blocked_merchants",),
        "none",
    )
    item = boto3.client("dynamodb").get_item(
        TableName=stack["DecisionsTableName"], Key={"transaction_id": {"S": "tx-1"}}
    )["Item"]
    assert decision_of(item).rule_reasons == ("list:blocked_merchants",)
    assert item["rules_version"]["S"] == "none"


# ---------------------------------------------------------------- the commands


def test_lists_add_show_and_remove_one_entry(outputs, store, capsys):
    assert main(["lists", "add", "blocked_merchants", "merch-1", "--why", "card testing", "--expires", "7d",
                 "--who", "analyst", "--outputs", outputs]) == 0  # fmt: skip
    (added,) = store.entries()
    assert (added.list_name, added.value, added.added_by, added.reason) == (
        "blocked_merchants",
        "merch-1",
        "analyst",
        "card testing",
    )
    assert added.expires_at is not None
    assert added.expires_at - added.added_at == pytest.approx(7 * 86400, abs=1)
    capsys.readouterr()
    assert main(["lists", "show", "--outputs", outputs]) == 0
    shown = capsys.readouterr().out
    assert "blocked_merchants" in shown
    assert "card testing" in shown
    assert main(["lists", "remove", "blocked_merchants", "merch-1", "--outputs", outputs]) == 0
    assert store.entries() == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["blocked_merchants", "merch-2"], "removed 0 of 1 entries; not on their list, so not removed: "
         "blocked_merchants merch-2"),
        (["blocked_merchant", "merch-1"], "'blocked_merchant': a list's name"),
    ],
)  # fmt: skip
def test_lists_remove_of_an_entry_that_is_not_there_says_so_and_fails(outputs, store, capsys, argv, says):
    store.add([entry("blocked_merchants", "merch-1")])
    assert main(["lists", "remove", *argv, "--outputs", outputs]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"fraudwatch lists remove: error: {says}")
    assert [e.value for e in store.entries()] == ["merch-1"]


def test_lists_add_from_a_file(outputs, store, tmp_path):
    path = tmp_path / "entries.csv"
    path.write_text("list,value,why,expires\nblocked_merchants,m-1,testing,\nallowed_users,u-1,vip,12h\n")
    assert main(["lists", "add", "--file", str(path), "--outputs", outputs]) == 0
    assert sorted((e.list_name, e.value) for e in store.entries()) == [
        ("allowed_users", "u-1"),
        ("blocked_merchants", "m-1"),
    ]
    assert main(["lists", "remove", "--file", str(path), "--outputs", outputs]) == 0
    assert store.entries() == []


def test_a_file_that_names_an_entry_twice_is_refused_not_half_added(outputs, store, tmp_path, capsys):
    path = tmp_path / "entries.csv"
    path.write_text(
        "list,value,why\nblocked_merchants,m-1,testing\nallowed_users,u-1,vip\nblocked_merchants,m-1,x\n"
    )
    assert main(["lists", "add", "--file", str(path), "--outputs", outputs]) == 2
    assert capsys.readouterr().err.strip() == (
        f"fraudwatch lists add: error: {path}: entry 3 repeats entry 1 (blocked_merchants m-1), keep one"
    )
    assert store.entries() == []


def test_a_file_with_a_bad_expiry_names_its_entry_and_adds_none(outputs, store, tmp_path, capsys):
    path = tmp_path / "entries.csv"
    path.write_text("list,value,why,expires\nblocked_merchants,m-1,testing,7d\nallowed_users,u-1,vip,soon\n")
    assert main(["lists", "add", "--file", str(path), "--outputs", outputs]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .startswith(f"fraudwatch lists add: error: {path}: entry 2: expiry 'soon': give a duration")
    )
    assert store.entries() == []


@pytest.mark.parametrize("command", ["add", "remove"])
def test_an_entry_and_a_file_at_once_are_refused_not_the_entry_ignored(
    outputs, store, tmp_path, capsys, command
):
    path = tmp_path / "entries.csv"
    path.write_text("list,value,why\nblocked_merchants,m-1,testing\n")
    why = ["--why", "x"] if command == "add" else []
    argv = ["lists", command, "blocked_merchants", "m-2", *why, "--file", str(path), "--outputs", outputs]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"fraudwatch lists {command}: error: give LIST and VALUE, or --file, not both"
    )
    assert store.entries() == []


@pytest.mark.parametrize("text", ["", "list,value,why\n"])
@pytest.mark.parametrize("command", ["add", "remove"])
def test_a_file_without_entries_is_refused_not_added_as_none(outputs, tmp_path, capsys, command, text):
    path = tmp_path / "entries.csv"
    path.write_text(text)
    assert main(["lists", command, "--file", str(path), "--outputs", outputs]) == 2
    assert capsys.readouterr().err.strip() == (
        f"fraudwatch lists {command}: error: {path}: no entries, give at least one (list, value, why)"
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["blocked_shops", "m-1", "--why", "x"], "a list's name"),
        (["blocked_merchants", "m 1", "--why", "x"], "value"),
        (["blocked_merchants", "m-1"], "--why"),
        (["blocked_merchants", "m-1", "--why", "x", "--expires", "soon"], "expiry"),
    ],
)
def test_lists_add_refuses_a_bad_entry_saying_why(outputs, store, capsys, argv, says):
    assert main(["lists", "add", *argv, "--outputs", outputs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fraudwatch lists add: error: ")
    assert says in err
    assert store.entries() == []


def test_rules_push_show_history_and_rollback(outputs, store, tmp_path, capsys):
    first, second = tmp_path / "v1.yaml", tmp_path / "v2.json"
    first.write_text(
        "version: '2026-12-06.1'\nrules:\n  - id: big\n    description: big payments\n"
        "    condition: tx.amount > 500.0\n    action: review\n"
    )
    second.write_text(json.dumps({"version": "v2", "rules": []}))
    assert main(["rules", "validate", str(first)]) == 0
    assert main(["rules", "push", str(first), "--note", "first", "--outputs", outputs]) == 0
    assert main(["rules", "push", str(second), "--outputs", outputs]) == 0
    assert store.active().version == "v2"
    capsys.readouterr()
    assert main(["rules", "history", "--outputs", outputs]) == 0
    history = capsys.readouterr().out.splitlines()
    assert len(history) == 3
    assert history[2].rstrip().endswith("in force")
    assert main(["rules", "rollback", "1", "--outputs", outputs]) == 0
    assert store.active().version == "2026-12-06.1"
    capsys.readouterr()
    assert main(["rules", "show", "--outputs", outputs]) == 0
    shown = capsys.readouterr().out
    shown_file = tmp_path / "shown.yaml"
    shown_file.write_text(shown)
    assert main(["rules", "validate", str(shown_file)]) == 0, "what show prints, push takes back"


@pytest.mark.parametrize("argv", [["rollback", str(ACTIVE)], ["show", "--version", str(ACTIVE)]])
def test_the_pointer_to_the_version_in_force_is_no_version_of_its_own(outputs, store, capsys, argv):
    pushed = store.push(compile_rules(RULES), pushed_by="analyst", note="", now=T0)
    assert main(["rules", *argv, "--outputs", outputs]) == 2
    assert f"no pushed version #{ACTIVE}" in capsys.readouterr().err
    assert store.active() == pushed
    assert store.version(ACTIVE) is None


def test_a_broken_document_is_refused_at_push_with_its_rule_and_position_and_nothing_changes(
    outputs, store, tmp_path, capsys
):
    good, broken = tmp_path / "good.json", tmp_path / "broken.json"
    good.write_text(json.dumps(RULES))
    broken.write_text(
        json.dumps(
            {**RULES, "version": "v2", "rules": [{**RULES["rules"][0], "condition": "tx.amount >> 5.0"}]}
        )
    )
    assert main(["rules", "push", str(good), "--outputs", outputs]) == 0
    capsys.readouterr()
    assert main(["rules", "push", str(broken), "--outputs", outputs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fraudwatch rules push: error: rule 'big' (condition line 1, column 12)")
    assert [v.seq for v in store.history()] == [1]
    assert store.active().version == "2026-12-06.1"


def test_a_version_cannot_be_pushed_twice_with_other_rules(outputs, tmp_path, capsys):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RULES))
    assert main(["rules", "push", str(path), "--outputs", outputs]) == 0
    path.write_text(json.dumps({**RULES, "rules": []}))
    assert main(["rules", "push", str(path), "--outputs", outputs]) == 2
    assert "give the document a new version" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["lists", "show"], ["rules", "history"]])
def test_a_stack_that_does_not_answer_is_a_run_time_failure_not_a_usage_error(tmp_path, capsys, argv):
    path = tmp_path / "stack.json"
    outputs = {"ListsTableName": "lists", "RulesTableName": "rules"}
    path.write_text(json.dumps({"endpoint": "http://127.0.0.1:9", "outputs": outputs}))
    assert main([*argv, "--outputs", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fraudwatch {' '.join(argv)}: error: ")
    assert err.endswith("is the stack up at its endpoint (`fraudwatch stack status`)?")


def test_commands_without_a_stack_say_to_deploy(tmp_path, capsys):
    assert main(["lists", "show", "--outputs", str(tmp_path / "none.json")]) == 2
    assert "deploy first" in capsys.readouterr().err


def test_each_rule_or_list_that_matched_is_counted_under_its_own_dimension(capsys):
    from fraudwatch.domain.scoring import BatchReport
    from fraudwatch.observability import record_rule_matches

    rules = compile_rules(RULES)
    decided = [
        DecisionRecord.for_transaction(
            TX._replace(transaction_id=f"tx-{i}"),
            decision=Decision.REJECTED,
            score=0.1,
            model_version="m",
            thresholds=Thresholds(0.5, 0.9),
            decided_at="2026-12-06T01:00:00+00:00",
            rule_reasons=codes,
            rules_version=rules.version,
        )
        for i, codes in enumerate([("list:blocked_merchants", "rule:big"), ("rule:big",), ()])
    ]
    capsys.readouterr()
    record_rule_matches(BatchReport(decisions=decided))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    counts = {line["rule"]: line["RuleMatches"] for line in lines}
    assert counts == {"list:blocked_merchants": [1.0], "rule:big": [2.0]}
    (directive,) = lines[0]["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Fraudwatch"
    assert set(directive["Dimensions"][0]) == {"rule", "service"}


def test_a_push_with_a_history_shows_its_test_table_then_pushes(
    outputs, store, tiny_bundle, tmp_path, capsys
):
    from tests.fakes import tiny_history

    history = tmp_path / "history.parquet"
    tiny_history(transactions=600, users=10, days=8, seed=4).to_parquet(history)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    argv = ["rules", "push", str(rules), "--history", str(history), "--bundle", str(tiny_bundle)]
    assert main([*argv, "--outputs", outputs]) == 0
    out = capsys.readouterr().out
    assert out.index("| rule:big | review |") < out.index("pushed #1, version 2026-12-06.1")
    assert store.active().version == "2026-12-06.1"
