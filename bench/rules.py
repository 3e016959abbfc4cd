"""Rules' CPU per record: the scoring service without rules, and with 20 rules and 3 lists, in one run.

All sides are `ScoringService.process` on batches of 100 on in-memory stores from the same warmed
profiles (bench/scoring_cpu.py's), the same records and model; passes alternate so that a noisy
neighbour weighs on each. The rules run two ways: per record through the CEL library (the way before
issue 17's rules work, still the reference and the fallback), and per batch (domain/conditions.py: each
condition as numpy operations over the batch). The difference with no rules is what the rules add
(budget: 5 µs per record). A second table times `Controls.judge_many` alone both ways, at batches of
100 and of 1 (the inline API), and the CEL call's parts: the Python values converted into CEL's, and the
evaluation.

Run: .venv/bin/python -m bench.rules
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from bench._common import TransactionStream, machine, median, stream_parser, table, verdict
from bench.scoring_cpu import BATCH, _ModelProxy, _service, _time_batched, _wrap, scene
from fraudwatch.adapters.memory import MemoryProfileStore
from fraudwatch.domain.controls import Controls, FixedControls, Judgement
from fraudwatch.domain.decision import Decision
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.lists import ListEntry, ListSnapshot
from fraudwatch.domain.ports import Model
from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.rules import Rule, RuleSet, _cel, compile_rules
from fraudwatch.domain.transaction import Transaction

BUDGET_US = 5.0
LIST_ENTRIES = 1000

CONDITIONS = (
    ("burst_big", "features.velocity_24h > 20.0 && tx.amount > 500.0", "block"),
    ("burst_hour", "features.velocity_1h > 6.0", "review"),
    ("spend_day", "features.spend_24h > 5000.0", "review"),
    ("zscore_high", "has(features.amount_zscore) && features.amount_zscore > 6.0", "review"),
    ("to_mean_high", "has(features.amount_to_mean) && features.amount_to_mean > 10.0", "review"),
    (
        "night_new_cat",
        "features.is_night > 0.5 && features.is_new_category > 0.5 && tx.amount > 300.0",
        "review",
    ),
    ("new_merchant_big", "features.is_new_merchant > 0.5 && tx.amount > 800.0", "review"),
    ("quick_repeat", "has(features.seconds_since_last) && features.seconds_since_last < 2.0", "review"),
    ("first_big", "features.history_length < 1.0 && tx.amount > 1000.0", "block"),
    (
        "risky_merchant",
        "features.merchant_fraud_rate_7d > 0.3 && features.merchant_labels_7d > 10.0",
        "block",
    ),
    ("risky_merchant_day", "features.merchant_fraud_rate_1d > 0.5", "review"),
    ("score_high_big", "score > 0.7 && tx.amount > 200.0", "block"),
    ("score_mid_night", "score > 0.4 && features.is_night > 0.5", "review"),
    ("watched", "tx.merchant_id in lists.watched_merchants", "review"),
    ("watched_big", "tx.merchant_id in lists.watched_merchants && tx.amount > 100.0", "block"),
    ("gift_cards", "tx.category == 'gift_cards' && tx.amount > 250.0", "review"),
    ("crypto", "tx.category in ['crypto', 'wire'] && tx.amount > 1000.0", "block"),
    ("currency_far", "tx.currency in ['NGN', 'PKR'] && tx.amount > 500.0", "review"),
    ("tiny_test", "tx.amount < 1.0 && features.velocity_1h > 2.0", "review"),
    ("loyal_small", "features.user_count_30d > 50.0 && tx.amount < 20.0 && score < 0.05", "allow"),
)


def bench_rules() -> RuleSet:
    """The 20 rules timed here: each reads features, the transaction, the score or a list."""
    return compile_rules(
        {
            "version": "bench-20",
            "rules": [
                {"id": rule_id, "description": rule_id, "condition": condition, "action": action}
                for rule_id, condition, action in CONDITIONS
            ],
        }
    )


class PerRecordRules(RuleSet):
    """The same rules evaluated the way before: the CEL library, record by record, on every batch."""

    def matches_many(
        self,
        transactions: Sequence[Transaction],
        rows: Sequence[Sequence[float]] | Any,
        scores: Sequence[float],
        lists: ListSnapshot,
    ) -> list[tuple[Rule, ...]]:
        return [
            tuple(self.matches(tx, row, float(score), lists))
            for tx, row, score in zip(transactions, rows, scores, strict=True)
        ]


SPENT: defaultdict[str, float] = defaultdict(float)
"""CPU seconds spent in TimedControls.judge_many ("judge") and the model's explain ("explain") since
the bench last cleared it."""


class TimedControls(Controls):
    """Controls that count the CPU their judging takes inside the service (the rest of what the rules
    add is the consequence of their matches: more alerts, each explained by SHAP, and longer reasons)."""

    __slots__ = ()

    def judge_many(
        self,
        transactions: Sequence[Transaction],
        rows: Sequence[Sequence[float]] | Any,
        scores: Sequence[float],
        verdicts: Sequence[Decision],
    ) -> list[Judgement]:
        start = time.process_time()
        judged = super().judge_many(transactions, rows, scores, verdicts)
        SPENT["judge"] += time.process_time() - start
        return judged


def per_record(rules: RuleSet) -> PerRecordRules:
    """`rules`, evaluated per record."""
    return PerRecordRules(rules.version, rules.rules)


def bench_lists(stream: TransactionStream) -> ListSnapshot:
    """Three lists of LIST_ENTRIES entries, a few of the stream's own merchants among them."""
    merchants = sorted({r.merchant_id for r in stream_transactions(stream, 300)})
    entries = [
        ListEntry(name, f"{name}-{i}", "bench", "bench", 0.0)
        for name in ("blocked_merchants", "allowed_users", "watched_merchants")
        for i in range(LIST_ENTRIES)
    ]
    entries += [ListEntry("watched_merchants", m, "bench", "bench", 0.0) for m in merchants[:5]]
    return ListSnapshot.of(entries, 1.0)


def stream_transactions(stream: TransactionStream, n: int) -> list[Transaction]:
    from fraudwatch.domain.transaction import parse_transaction

    return [parse_transaction(r.data) for batch in stream.batches(max(1, n // BATCH)) for r in batch][:n]


def main(argv: Sequence[str] | None = None) -> int:
    """Time the three sides in one run, alternating, and print the tables."""
    args = _parser().parse_args(argv)
    setup = scene(args)
    bundle, model, timed, history = setup.bundle, setup.model, setup.timed, setup.history
    rules = bench_rules()
    lists = bench_lists(TransactionStream(users=args.users, seed=1))
    batched, one_by_one = TimedControls(rules, lists), TimedControls(per_record(rules), lists)
    proxy = _ModelProxy(model)
    _wrap(proxy, "explain", "explain", SPENT)
    gc.freeze()
    cpu: dict[str, list[float]] = {way: [] for way in ("none", "record", "batch")}
    judging: dict[str, list[float]] = {"record": [], "batch": []}
    explaining: dict[str, list[float]] = {way: [] for way in ("none", "record", "batch")}
    records = len(timed) * BATCH
    for _ in range(args.repeats):
        for way, controls in (("none", None), ("record", one_by_one), ("batch", batched)):
            SPENT.clear()
            source = None if controls is None else FixedControls(controls)
            cpu[way].append(_time_batched(proxy, history, timed, source).cpu_us)
            explaining[way].append(SPENT["explain"] / records * 1e6)
            if way != "none":
                judging[way].append(SPENT["judge"] / records * 1e6)
    plain, by_record, by_batch = cpu["none"], cpu["record"], cpu["batch"]
    added_record = [r - p for p, r in zip(plain, by_record, strict=True)]
    added_batch = [r - p for p, r in zip(plain, by_batch, strict=True)]
    more_explaining = {
        way: [r - p for p, r in zip(explaining["none"], explaining[way], strict=True)]
        for way in ("record", "batch")
    }
    print(f"# Rules' CPU per record ({machine()})")
    print(f"model: {bundle.origin}")
    print(
        f"{len(timed)} batches of {BATCH}, {args.repeats} alternating passes of each side; "
        f"{len(rules.enabled)} rules ({len(rules.enabled) - len(rules.per_record)} translated for the "
        f"batch), {len(lists.values)} lists of {LIST_ENTRIES:,}+ entries\n"
    )
    print(
        table(
            ["scoring service", "CPU us/record (median)", "min", "max"],
            [
                ["no rules", median(plain), min(plain), max(plain)],
                ["20 rules + 3 lists, per record (CEL library)", *_spread(by_record)],
                ["20 rules + 3 lists, per batch (numpy)", *_spread(by_batch)],
                ["added per record (paired)", *_spread(added_record)],
                ["  of which Controls.judge_many", *_spread(judging["record"])],
                ["  of which SHAP for the alerts the rules add", *_spread(more_explaining["record"])],
                ["added per batch (paired)", *_spread(added_batch)],
                ["  of which Controls.judge_many", *_spread(judging["batch"])],
                ["  of which SHAP for the alerts the rules add", *_spread(more_explaining["batch"])],
            ],
        )
    )
    plain_decided = _decided(model, history, timed, None)
    record_decided = _decided(model, history, timed, FixedControls(one_by_one))
    batch_decided = _decided(model, history, timed, FixedControls(batched))
    same = "the same" if record_decided == batch_decided else "DIFFERENT (a bug)"
    print(
        f"\ndecisions with the rules per record and per batch: {same} ({len(batch_decided):,}); "
        f"alerts (each explained by SHAP): {_alerts(plain_decided):,} without rules, "
        f"{_alerts(batch_decided):,} with them"
    )
    print(f"budget {BUDGET_US:g} us/record added, per record: {verdict(median(added_record), BUDGET_US)}")
    print(f"budget {BUDGET_US:g} us/record added, per batch: {verdict(median(added_batch), BUDGET_US)}\n")
    _print_parts(batched, one_by_one, stream_transactions(TransactionStream(users=args.users, seed=2), 2000))
    return 0


def _decided(
    model: Model, history: MemoryProfileStore, timed: list[list[StreamRecord]], controls: FixedControls | None
) -> list[tuple[str, Decision, tuple[str, ...]]]:
    """Every decision of one untimed pass: transaction, decision, the rules and lists named."""
    service = _service(model, history, controls)
    return [
        (d.transaction_id, d.decision, d.rule_reasons)
        for batch in timed
        for d in service.process(batch).decisions
    ]


def _alerts(decided: list[tuple[str, Decision, tuple[str, ...]]]) -> int:
    return sum(decision is not Decision.APPROVED for _, decision, _ in decided)


def _spread(values: list[float]) -> list[float]:
    return [median(values), min(values), max(values)]


def _parser() -> argparse.ArgumentParser:
    return stream_parser(__doc__.splitlines()[0], batches=60, repeats="alternating passes of each side")


def _print_parts(batched: Controls, one_by_one: Controls, transactions: list[Transaction]) -> None:
    """`judge_many` alone both ways, and the CEL call's parts, on the same transactions."""
    rows = [[1.0] * len(FEATURE_NAMES) for _ in transactions]
    scores = [0.1] * len(transactions)
    verdicts = [Decision.APPROVED] * len(transactions)
    rules, lists = one_by_one.rules, one_by_one.lists
    contexts = [rules._context(tx, row, 0.1, lists) for tx, row in zip(transactions, rows, strict=True)]
    program = rules._reference.all.program

    def in_batches(controls: Controls, size: int) -> Callable[[], None]:
        def judge() -> None:
            for start in range(0, len(transactions), size):
                end = start + size
                controls.judge_many(
                    transactions[start:end], rows[start:end], scores[start:end], verdicts[start:end]
                )

        return judge

    def context() -> None:
        for tx, row in zip(transactions, rows, strict=True):
            rules._context(tx, row, 0.1, lists)

    def execute() -> None:
        for c in contexts:
            program.execute(c)

    trivial = _cel.compile("[" + ", ".join(["true"] * len(rules.enabled)) + "]")

    def execute_no_values() -> None:
        for _ in contexts:
            trivial.execute({})

    parts: list[tuple[str, Callable[[], None]]] = [
        ("Controls.judge_many, batches of 100: per batch (numpy)", in_batches(batched, BATCH)),
        ("Controls.judge_many, batches of 100: per record (CEL library)", in_batches(one_by_one, BATCH)),
        ("Controls.judge_many, batches of 1 (the inline API): per batch", in_batches(batched, 1)),
        ("Controls.judge_many, batches of 1: per record", in_batches(one_by_one, 1)),
        ("  3 lists alone (set lookups)", in_batches(Controls(lists=lists), BATCH)),
        ("  per record: the context (Python dicts of what the rules read)", context),
        ("  per record: CEL converts the context, evaluates the 20 conditions", execute),
        ("  per record: CEL, a 20-item list of constants, no values to convert", execute_no_values),
    ]
    print(table(["part", "CPU us/record"], [[name, _per_record(f, len(transactions))] for name, f in parts]))


def _per_record(run: Callable[[], None], records: int, repeats: int = 5) -> float:
    spent = []
    for _ in range(repeats):
        cpu = time.process_time()
        run()
        spent.append(time.process_time() - cpu)
    return median(spent) / records * 1e6


if __name__ == "__main__":
    raise SystemExit(main())
