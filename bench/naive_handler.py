"""The naive scoring Lambda, for bench/e2e.py, bench/aws_calls.py and bench/api.py: every record on its
own, like a per-request web service.

Per record of the event, one by one: base64-decode, parse and validate (the transaction and label
contracts); for a transaction GetItem the user's and the merchant's profiles, compute the features,
score a one-row pandas DataFrame with xgboost's scikit-learn `XGBClassifier.predict_proba`, decide with
the bundle's thresholds, PutItem the decision, Publish an alert per FLAGGED/REJECTED, PutItem the
profile; for a label GetItem and PutItem its merchant's profile. No batching and no partial-failure
report: an error fails the whole batch. The items, the alert body and the profile are those of the
real handler (same adapters' shapes, same domain functions), so the demo's wait and report hold and
decisions can be compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudwatch.adapters.dynamodb import decision_item, profile_item, stored_state
from fraudwatch.domain.decision import DecisionRecord
from fraudwatch.domain.label import Label
from fraudwatch.domain.records import QuarantinedRecord, StreamRecord
from fraudwatch.domain.transaction import Transaction
from fraudwatch.kinesis_batch import stream_record

TOP_REASONS = 3


class NaiveHandler:
    """A Lambda handler (`handler(event, context)`) that handles each Kinesis record with its own calls."""

    def __init__(
        self, env: Mapping[str, str], bundle_dir: Path, endpoint_url: str | None = None, session: Any = None
    ) -> None:
        import boto3
        from xgboost import XGBClassifier

        from fraudwatch.adapters.aws import CLIENT_CONFIG
        from fraudwatch.adapters.bundle import read_bundle
        from fraudwatch.adapters.model import XGBoostModel
        from fraudwatch.domain.features import FEATURE_NAMES
        from fraudwatch.settings import Settings

        settings = Settings.from_env(env)
        session = session or boto3.Session()
        self._dynamodb = session.client("dynamodb", endpoint_url=endpoint_url, config=CLIENT_CONFIG)
        self._sns = session.client("sns", endpoint_url=endpoint_url, config=CLIENT_CONFIG)
        self._sqs = session.client("sqs", endpoint_url=endpoint_url, config=CLIENT_CONFIG)
        self._settings = settings
        bundle = read_bundle(bundle_dir)
        self._classifier = XGBClassifier()
        self._classifier.load_model(str(bundle.model_file))
        self.thresholds = settings.thresholds(bundle.thresholds)
        self.model_version = bundle.version
        self._columns = list(FEATURE_NAMES)
        # Reasons (SHAP contributions) as the real handler gives them, one row at a time.
        self._explainer = XGBoostModel(
            self._classifier.get_booster(), FEATURE_NAMES, self.thresholds, self.model_version
        )

    def __call__(self, event: Mapping[str, Any], context: Any) -> dict[str, list[Any]]:
        """Handle the records one after another; report no partial failure."""
        self.handle_batch([stream_record(raw) for raw in event["Records"]])
        return {"batchItemFailures": []}

    def handle_batch(self, batch: list[StreamRecord]) -> None:
        """Each record on its own, as a per-record handler does."""
        for record in batch:
            self.handle(record)

    def handle(self, record: StreamRecord) -> DecisionRecord | None:
        """Validate; a transaction: read the profiles, score, write decision, alert, write profile; a
        label: count it in its merchant's profile. One record.

        Returns the decision, or None for a label or a record quarantined or already applied.
        """
        from fraudwatch.domain.events import parse_event
        from fraudwatch.domain.features import apply, features
        from fraudwatch.errors import InvalidRecordError

        try:
            event = parse_event(record.data, received_at=record.arrival_epoch)
        except InvalidRecordError as exc:
            self._quarantine(QuarantinedRecord(record, exc.field, exc.reason))
            return None
        if isinstance(event, Label):
            self._count_label(record, event)
            return None
        if not isinstance(
            event, Transaction
        ):  # a merchant's day of payments: not what this baseline measures
            return None
        tx = event
        profile = self._read_profile(tx.user_id)
        if profile.has_applied(tx.transaction_id, record.shard_id, record.sequence_number):
            return None
        row = features(profile, self._read_merchant(tx.merchant_id), tx)
        decision = self._decide(tx, row)
        self._dynamodb.put_item(
            TableName=self._settings.decisions_table,
            Item=decision_item(decision),  # the stored shape, from the real adapter
        )
        if decision.is_alert:
            self._publish(decision)
        apply(profile, tx)
        profile.mark_applied(tx.transaction_id, record.shard_id, record.sequence_number)
        self._put_profile(self._settings.profiles_table, "user_id", tx.user_id, profile.to_json())
        return decision

    def _count_label(self, record: StreamRecord, label: Label) -> None:
        from fraudwatch.domain.features import apply_label
        from fraudwatch.domain.merchant import MerchantProfile

        merchant = self._read_merchant(label.merchant_id) or MerchantProfile(label.merchant_id)
        if merchant.has_applied(label.applied_id, record.shard_id, record.sequence_number):
            return
        apply_label(merchant, label)
        merchant.mark_applied(label.applied_id, record.shard_id, record.sequence_number)
        self._put_profile(
            self._settings.merchant_profiles_table, "merchant_id", label.merchant_id, merchant.to_json()
        )

    def _put_profile(self, table: str, key: str, key_id: str, state: str) -> None:
        item = profile_item(key, key_id, state, datetime.now(UTC).isoformat())  # the real adapter's shape
        self._dynamodb.put_item(TableName=table, Item=item)

    def _read_profile(self, user_id: str) -> Any:
        from fraudwatch.domain.profile import UserProfile

        item = self._dynamodb.get_item(
            TableName=self._settings.profiles_table, Key={"user_id": {"S": user_id}}, ConsistentRead=True
        ).get("Item")
        return UserProfile.from_json(user_id, stored_state(item)) if item else UserProfile(user_id)

    def _read_merchant(self, merchant_id: str) -> Any:
        from fraudwatch.domain.merchant import MerchantProfile

        item = self._dynamodb.get_item(
            TableName=self._settings.merchant_profiles_table,
            Key={"merchant_id": {"S": merchant_id}},
            ConsistentRead=True,
        ).get("Item")
        return MerchantProfile.from_json(merchant_id, stored_state(item)) if item else None

    def _decide(self, tx: Transaction, row: tuple[float, ...]) -> DecisionRecord:
        import pandas as pd

        frame = pd.DataFrame([row], columns=self._columns)
        score = float(self._classifier.predict_proba(frame)[0, 1])
        verdict = self.thresholds.decide(score)
        reasons = self._explainer.explain([row], TOP_REASONS)[0] if verdict.value != "APPROVED" else ()
        return DecisionRecord.for_transaction(
            tx,
            decision=verdict,
            score=score,
            model_version=self.model_version,
            thresholds=self.thresholds,
            decided_at=datetime.now(UTC).isoformat(),
            reasons=reasons,
        )

    def _publish(self, decision: DecisionRecord) -> None:
        from fraudwatch.adapters.sns import SnsAlertPublisher

        # the real alert's subject, body, attributes and FIFO ids, sent on its own
        entry = dict(SnsAlertPublisher(self._settings.alerts_topic_arn, self._sns)._entry("0", decision))
        del entry["Id"]
        self._sns.publish(TopicArn=self._settings.alerts_topic_arn, **entry)

    def _quarantine(self, item: QuarantinedRecord) -> None:
        from fraudwatch.adapters.sqs import SqsQuarantine

        # the real message, body, attributes and FIFO ids, sent on its own
        entry = dict(SqsQuarantine(self._settings.quarantine_queue_url, self._sqs)._entry("0", item))
        del entry["Id"]
        self._sqs.send_message(QueueUrl=self._settings.quarantine_queue_url, **entry)


def naive_handler(outputs: Mapping[str, str], endpoint_url: str, bundle_dir: Path) -> NaiveHandler:
    """A `HandlerFactory` for `infra.demo.run_demo`: the naive handler with the function's environment."""
    from infra.invoke import function_environment

    env = function_environment(outputs)
    env["MODEL_DIR"] = str(bundle_dir)
    return NaiveHandler(env, bundle_dir, endpoint_url)
