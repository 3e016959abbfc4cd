"""template.yaml and samconfig.toml: the contract other code relies on, least privilege, encryption, lint."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudwatch.domain.decision import Decision, DecisionRecord, ShadowVerdict, Thresholds
from fraudwatch.domain.drift import COLUMNS, reference_of
from fraudwatch.domain.features import FEATURE_NAMES
from infra.template import REPO_ROOT, TEMPLATE, load_template, resources_of_type

OUTPUTS = {
    "StreamName",
    "StreamArn",
    "ProfilesTableName",
    "MerchantProfilesTableName",
    "DecisionsTableName",
    "AlertsTopicArn",
    "AlarmsTopicArn",
    "QuarantineQueueUrl",
    "QuarantineQueueArn",
    "OnFailureQueueUrl",
    "ScoringFunctionName",
    "ScoringApiFunctionName",
    "ScoringApiUrl",
    "DashboardName",
    "LabelsTableName",
    "ModelOpsFunctionName",
}
LAYERS = ("MlRuntimeLayer", "FraudwatchLayer", "ModelLayer")
# X-Ray offers no resource-level permissions: its write actions accept only "*".
RESOURCE_WILDCARD_ALLOWED = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


class _NoManagedPolicies:
    """The translator's managed-policy loader, offline: the template attaches no managed policies."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


@pytest.fixture(scope="module")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    """The template as CloudFormation sees it after the SAM transform."""
    from samtranslator.translator.transform import transform

    packaged = copy.deepcopy(template)
    # What `sam package` does first: the translator accepts only S3 locations for code and layers.
    for resource in packaged["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://fraudwatch-artifacts/{props[key].strip('/')}.zip"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        result: dict[str, Any] = transform(packaged, {}, _NoManagedPolicies())
        return result


def _props(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = resources[logical_id]["Properties"]
    return props


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(transformed: dict[str, Any], role: str | None = None) -> list[dict[str, Any]]:
    """Every statement of every role and policy, or of one role's own policies."""
    statements = []
    for logical_id, resource in transformed["Resources"].items():
        if role is not None and logical_id != role:
            continue
        if resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                statements += policy["PolicyDocument"]["Statement"]
        elif resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _refs(value: Any) -> set[str]:
    """Every logical id that `value` refers to through Ref, GetAtt or Sub."""
    if isinstance(value, dict):
        found: set[str] = set()
        for key, inner in value.items():
            if key == "Ref":
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)}
            else:
                found |= _refs(inner)
        return found
    if isinstance(value, list):
        return set().union(*(_refs(item) for item in value)) if value else set()
    return set()


# ---------------------------------------------------------------- contract


def test_parameters_have_the_documented_defaults(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["Stage"]["Default"] == "dev"
    assert params["FlagThreshold"]["Default"] == ""
    assert params["RejectThreshold"]["Default"] == ""
    assert params["LogLevel"]["Default"] in params["LogLevel"]["AllowedValues"]
    assert params["ShardCount"]["Type"] == "Number"
    assert params["ShardCount"]["MinValue"] == 1


def test_threshold_parameters_accept_probabilities_or_nothing(template: dict[str, Any]) -> None:
    pattern = re.compile(template["Parameters"]["FlagThreshold"]["AllowedPattern"])
    for good in ("", "0.5", "0.85", "1", "1.0", "0"):
        assert pattern.fullmatch(good), good
    for bad in ("1.5", "-0.1", "abc", ".5 "):
        assert not pattern.fullmatch(bad), bad


def test_every_output_is_present(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) >= OUTPUTS


def test_function_runs_the_handler_on_python312_x86_64_with_its_three_layers(
    resources: dict[str, Any],
) -> None:
    fn = _props(resources, "ScoringFunction")
    assert fn["CodeUri"] == "functions/scoring/"
    assert fn["Handler"] == "app.lambda_handler"
    assert fn["Runtime"] == "python3.12"
    assert fn["Architectures"] == ["x86_64"]
    assert fn["Tracing"] == "Active"
    assert [layer["Ref"] for layer in fn["Layers"]] == list(LAYERS)
    assert fn["MemorySize"] >= 1024
    assert fn["Timeout"] >= 30


def test_environment_points_at_the_right_resources(resources: dict[str, Any]) -> None:
    env = _props(resources, "ScoringFunction")["Environment"]["Variables"]
    assert env["PROFILES_TABLE"] == {"Ref": "ProfilesTable"}
    assert env["MERCHANT_PROFILES_TABLE"] == {"Ref": "MerchantProfilesTable"}
    assert env["DECISIONS_TABLE"] == {"Ref": "DecisionsTable"}
    assert env["ALERTS_TOPIC_ARN"] == {"Ref": "AlertsTopic"}
    assert env["QUARANTINE_QUEUE_URL"] == {"Ref": "QuarantineQueue"}
    assert env["MODEL_DIR"] == "/opt/bundle"
    assert env["FLAG_THRESHOLD"] == {"Ref": "FlagThreshold"}
    assert env["REJECT_THRESHOLD"] == {"Ref": "RejectThreshold"}
    assert env["POWERTOOLS_SERVICE_NAME"] == "fraudwatch"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Fraudwatch"
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}


def test_kinesis_event_has_every_setting(resources: dict[str, Any]) -> None:
    event = _props(resources, "ScoringFunction")["Events"]["TransactionsStream"]
    assert event["Type"] == "Kinesis"
    props = event["Properties"]
    assert props["Stream"] == {"Fn::GetAtt": ["TransactionsStream", "Arn"]}
    assert props["BatchSize"] == 100
    assert props["MaximumBatchingWindowInSeconds"] == 1
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["BisectBatchOnFunctionError"] is True
    # Retried until decided (a user's later records wait behind a failed one); given up only past an age
    # shorter than the stream's retention, so the on-failure queue can still name records to redrive.
    assert props["MaximumRetryAttempts"] == -1
    retention_s = _props(resources, "TransactionsStream")["RetentionPeriodHours"] * 3600
    assert 3600 <= props["MaximumRecordAgeInSeconds"] <= retention_s // 2
    assert 1 <= props["ParallelizationFactor"] <= 10
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["OnFailureQueue", "Arn"]},
    }


def test_event_source_mapping_survives_the_transform(transformed: dict[str, Any]) -> None:
    mappings = resources_of_type(transformed, "AWS::Lambda::EventSourceMapping").values()
    stream = {"Fn::GetAtt": ["TransactionsStream", "Arn"]}  # the other mapping reads the cases queue
    (mapping,) = [m for m in mappings if m["Properties"]["EventSourceArn"] == stream]
    props = mapping["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    assert props["StartingPosition"] == "TRIM_HORIZON"
    # `Type` is SAM's hint for the policy it would add; CloudFormation gets only the destination.
    assert props["DestinationConfig"]["OnFailure"] == {
        "Destination": {"Fn::GetAtt": ["OnFailureQueue", "Arn"]}
    }


def test_tables_have_the_documented_keys(resources: dict[str, Any]) -> None:
    profiles = _props(resources, "ProfilesTable")
    assert profiles["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]
    assert profiles["AttributeDefinitions"] == [{"AttributeName": "user_id", "AttributeType": "S"}]
    merchants = _props(resources, "MerchantProfilesTable")
    assert merchants["KeySchema"] == [{"AttributeName": "merchant_id", "KeyType": "HASH"}]
    assert merchants["AttributeDefinitions"] == [{"AttributeName": "merchant_id", "AttributeType": "S"}]
    assert "GlobalSecondaryIndexes" not in merchants
    decisions = _props(resources, "DecisionsTable")
    assert decisions["KeySchema"] == [{"AttributeName": "transaction_id", "KeyType": "HASH"}]
    by_user, by_payment_day = decisions["GlobalSecondaryIndexes"]
    assert by_user["IndexName"] == "by-user"
    assert by_user["KeySchema"] == [
        {"AttributeName": "user_id", "KeyType": "HASH"},
        {"AttributeName": "decided_at", "KeyType": "RANGE"},
    ]
    assert by_user["Projection"] == {"ProjectionType": "ALL"}
    assert by_payment_day["IndexName"] == "by-payment-day"
    assert by_payment_day["KeySchema"] == [
        {"AttributeName": "paid_day", "KeyType": "HASH"},
        {"AttributeName": "transaction_id", "KeyType": "RANGE"},
    ]
    # what the daily count reads, and no more: no amounts, no scores
    assert by_payment_day["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["merchant_id", "user_id"],
    }
    assert decisions["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    declared = {a["AttributeName"]: a["AttributeType"] for a in decisions["AttributeDefinitions"]}
    assert declared == {"transaction_id": "S", "user_id": "S", "decided_at": "S", "paid_day": "N"}
    for table in (profiles, merchants, decisions):
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_layers_are_built_by_their_own_makefile_target(resources: dict[str, Any]) -> None:
    for logical_id in LAYERS:
        layer = resources[logical_id]
        assert layer["Type"] == "AWS::Serverless::LayerVersion"
        assert layer["Metadata"] == {"BuildMethod": "makefile"}
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
        assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]
        makefile = REPO_ROOT / layer["Properties"]["ContentUri"] / "Makefile"
        assert re.search(rf"^build-{logical_id}:", makefile.read_text(), re.MULTILINE), makefile


def test_ml_runtime_requirements_match_the_training_pins() -> None:
    pinned = (REPO_ROOT / "layers/ml-runtime/requirements.txt").read_text()
    project = (REPO_ROOT / "pyproject.toml").read_text()
    xgboost_pin = re.search(r"^xgboost-cpu==(\S+)$", pinned, re.MULTILINE)
    assert xgboost_pin, "xgboost-cpu is not pinned in the ML runtime layer"
    assert f'"xgboost-cpu=={xgboost_pin.group(1)}"' in project
    fraudwatch_reqs = (REPO_ROOT / "layers/fraudwatch/requirements.txt").read_text()
    powertools_pin = re.search(r"^aws-lambda-powertools==(\S+)$", fraudwatch_reqs, re.MULTILINE)
    assert powertools_pin, "aws-lambda-powertools is not pinned in the fraudwatch layer"
    assert f"aws-lambda-powertools[tracer]=={powertools_pin.group(1)}" in project
    orjson_pin = re.search(r"^orjson==(\S+)$", fraudwatch_reqs, re.MULTILINE)
    assert orjson_pin, "orjson is not pinned in the fraudwatch layer"
    assert f'"orjson=={orjson_pin.group(1)}"' in project


# ---------------------------------------------------------------- least privilege


def test_no_managed_policies_are_attached(transformed: dict[str, Any]) -> None:
    for role in resources_of_type(transformed, "AWS::IAM::Role").values():
        assert not role["Properties"].get("ManagedPolicyArns"), "managed policies grant on every resource"


def test_every_statement_names_its_resources_and_no_action_wildcard(transformed: dict[str, Any]) -> None:
    statements = _statements(transformed)
    assert statements
    for statement in statements:
        actions = _as_list(statement["Action"])
        assert all("*" not in action for action in actions), statement
        if "*" in _as_list(statement["Resource"]):
            if actions == [
                "cloudwatch:PutMetricData"
            ]:  # no resource-level permissions: a namespace condition
                assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Fraudwatch"}}
                continue
            assert set(actions) <= RESOURCE_WILDCARD_ALLOWED, statement


def _grants(transformed: dict[str, Any], role: str) -> dict[str, set[str]]:
    """Action -> the logical ids of the resources one role may do it on."""
    grants: dict[str, set[str]] = {}
    for statement in _statements(transformed, role):
        for action in _as_list(statement["Action"]):
            grants.setdefault(action, set()).update(_refs(statement["Resource"]))
    return grants


def test_function_may_do_exactly_what_it_needs_where_it_needs_it(transformed: dict[str, Any]) -> None:
    grants = _grants(transformed, "ScoringFunctionRole")
    tables = {"ProfilesTable", "MerchantProfilesTable", "DecisionsTable"}
    assert grants["dynamodb:BatchGetItem"] == tables
    assert grants["dynamodb:BatchWriteItem"] == tables | {"LabelsTable"}  # labels, with the merchants
    assert grants["dynamodb:PutItem"] == tables | {"DriftTable"}  # live drift counts, a container's own items
    # the rules in force and the lineup of models, read only
    assert grants["dynamodb:GetItem"] == tables | {"RulesTable", "ModelsTable"}
    assert grants["dynamodb:Scan"] == {"ListsTable"}
    assert grants["s3:GetObject"] == {"ModelsBucket"}  # models/* only: the bundles
    assert {a for a in grants if a.startswith("dynamodb:")} == {
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Scan",
    }
    assert grants["sns:Publish"] == {"AlertsTopic"}
    assert grants["kms:GenerateDataKey"] == {"AlertsKey"}
    assert grants["sqs:SendMessage"] == {"QuarantineQueue", "OnFailureQueue"}
    for action in ("kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStream"):
        assert grants[action] == {"TransactionsStream"}
    assert grants["logs:PutLogEvents"] == {"ScoringFunctionLogGroup"}
    assert "cloudwatch:PutMetricData" not in grants  # metrics leave as EMF log lines


def test_api_function_may_do_exactly_what_it_needs_and_of_the_stream_only_put_labels(
    transformed: dict[str, Any],
) -> None:
    grants = _grants(transformed, "ScoringApiFunctionRole")
    # the profiles, and the decision already made on the transaction id, in one call
    assert grants["dynamodb:BatchGetItem"] == {"ProfilesTable", "MerchantProfilesTable", "DecisionsTable"}
    assert grants["dynamodb:BatchWriteItem"] == {"ListsTable"}  # a fraud verdict's block entry
    assert grants["dynamodb:DeleteItem"] == {"ListsTable"}  # lifted when its case's verdict is reversed
    # a decision with its profile (one transaction's puts); cases: conditional puts; never a merchant
    assert grants["dynamodb:PutItem"] == {"ProfilesTable", "DecisionsTable", "CasesTable"}
    # by key: a decision, the rules in force, the model lineup, a case
    # and the block entry a reversed verdict may lift
    assert grants["dynamodb:GetItem"] == {
        "DecisionsTable",
        "RulesTable",
        "ModelsTable",
        "CasesTable",
        "ListsTable",
    }
    assert grants["dynamodb:Scan"] == {"ListsTable"}  # the lists, as the stream function reads them
    assert grants["s3:GetObject"] == {"ModelsBucket"}
    assert "DriftTable" not in grants["dynamodb:PutItem"]  # drift is the stream's to count
    assert grants["dynamodb:Query"] == {"DecisionsTable", "CasesTable"}  # one index of each
    assert grants["sns:Publish"] == {"AlertsTopic"}
    assert grants["logs:PutLogEvents"] == {"ScoringApiFunctionLogGroup"}
    assert grants["kinesis:PutRecord"] == {"TransactionsStream"}  # verdicts as labels, nothing else
    assert not {a for a in grants if a.startswith(("sqs:", "cloudwatch:"))}
    assert {a for a in grants if a.startswith("kinesis:")} == {"kinesis:PutRecord"}
    queries = [
        s["Resource"]
        for s in _statements(transformed, "ScoringApiFunctionRole")
        if s["Action"] == "dynamodb:Query"
    ]
    assert queries == [
        {"Fn::Sub": "${DecisionsTable.Arn}/index/by-user"},
        {"Fn::Sub": "${CasesTable.Arn}/index/by-status"},
    ]


def test_cases_function_opens_cases_and_reads_only_what_it_needs(transformed: dict[str, Any]) -> None:
    grants = _grants(transformed, "CasesFunctionRole")
    assert grants["dynamodb:PutItem"] == {"CasesTable"}
    assert grants["dynamodb:Query"] == {"CasesTable", "DecisionsTable"}
    assert {a for a in grants if a.startswith("sqs:")} == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }
    assert grants["sqs:ReceiveMessage"] == {"CasesQueue"}
    assert not {a for a in grants if a.startswith(("kinesis:", "sns:"))}
    assert "dynamodb:BatchWriteItem" not in grants  # opening is conditional: never a blind batch put


def test_model_ops_function_runs_on_three_schedules_with_the_scoring_layers(
    resources: dict[str, Any],
) -> None:
    fn = _props(resources, "ModelOpsFunction")
    assert (fn["CodeUri"], fn["Handler"], fn["Runtime"]) == (
        "functions/ops/",
        "app.lambda_handler",
        "python3.12",
    )
    assert [layer["Ref"] for layer in fn["Layers"]] == list(LAYERS)  # numpy, the package, the layer's card
    assert fn["Role"] == {"Fn::GetAtt": ["ModelOpsFunctionRole", "Arn"]}
    events = {name: event["Properties"] for name, event in fn["Events"].items()}
    assert {event["Type"] for event in fn["Events"].values()} == {"Schedule"}
    assert events["Drift"]["Schedule"] == "rate(15 minutes)"  # the windows' length
    assert json.loads(events["Drift"]["Input"]) == {"job": "drift"}
    assert events["Matured"]["Schedule"].startswith("cron(")  # daily
    assert json.loads(events["Matured"]["Input"]) == {"job": "matured"}
    assert events["Activity"]["Schedule"].startswith("cron(5 0 ")  # just after each UTC midnight
    assert json.loads(events["Activity"]["Input"]) == {"job": "activity"}
    env = fn["Environment"]["Variables"]
    scoring = _props(resources, "ScoringFunction")["Environment"]["Variables"]
    assert env["DRIFT_WINDOW_SECONDS"] == scoring["DRIFT_WINDOW_SECONDS"]  # the windows the functions count
    assert float(env["DRIFT_SETTLE_SECONDS"]) >= 2 * float(scoring.get("DRIFT_FLUSH_SECONDS", 60))
    for name, table in (("DRIFT_TABLE", "DriftTable"), ("DECISIONS_TABLE", "DecisionsTable"),
                        ("LABELS_TABLE", "LabelsTable"), ("MODELS_TABLE", "ModelsTable")):  # fmt: skip
        assert env[name] == {"Ref": table}
    assert scoring["LABELS_TABLE"] == {"Ref": "LabelsTable"}  # the stream keeps what the ops function reads
    assert env["STREAM_NAME"] == {"Ref": "TransactionsStream"}  # where the daily activity records go
    assert fn["Timeout"] >= 300  # the daily reads
    assert fn["MemorySize"] >= 1536  # the daily count of 37 days of payments (bench/daily_jobs.py)


def test_model_ops_function_reads_only_what_it_measures_and_writes_metrics_and_activity_records(
    transformed: dict[str, Any],
) -> None:
    grants = _grants(transformed, "ModelOpsFunctionRole")
    assert grants["dynamodb:GetItem"] == {"ModelsTable"}  # the lineup
    assert grants["dynamodb:Query"] == {"DriftTable", "DecisionsTable"}
    queries = [
        s["Resource"]
        for s in _statements(transformed, "ModelOpsFunctionRole")
        if s["Action"] == "dynamodb:Query"
    ]
    assert {"Fn::Sub": "${DecisionsTable.Arn}/index/by-payment-day"} in queries  # the index, not the table
    assert grants["dynamodb:Scan"] == {"LabelsTable"}  # the daily matured step's labels
    assert grants["dynamodb:BatchGetItem"] == {"DecisionsTable"}  # and the labelled decisions, by key
    assert grants["s3:GetObject"] == {"ModelsBucket"}
    assert {a for a in grants if a.startswith("dynamodb:")} == {
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
    }
    (metrics,) = [
        s
        for s in _statements(transformed, "ModelOpsFunctionRole")
        if s["Action"] == "cloudwatch:PutMetricData"
    ]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Fraudwatch"}}
    assert grants["logs:PutLogEvents"] == {"ModelOpsFunctionLogGroup"}
    assert grants["kinesis:PutRecords"] == {"TransactionsStream"}  # the daily activity records
    assert {a for a in grants if a.startswith("kinesis:")} == {"kinesis:PutRecords"}
    assert not {a for a in grants if a.startswith(("sns:", "sqs:", "kms:", "s3:Put"))}
    rules = resources_of_type(transformed, "AWS::Events::Rule")
    ops_rules = [
        r
        for r in rules.values()
        if r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["ModelOpsFunction", "Arn"]}
    ]
    assert sorted(r["Properties"]["ScheduleExpression"] for r in ops_rules) == [
        "cron(30 1 * * ? *)",
        "cron(5 0 * * ? *)",
        "rate(15 minutes)",
    ]


@pytest.mark.parametrize("function", ["ScoringFunction", "ScoringApiFunction", "ModelOpsFunction"])
def test_function_role_is_the_scoped_one(transformed: dict[str, Any], function: str) -> None:
    fn = resources_of_type(transformed, "AWS::Lambda::Function")[function]
    assert fn["Properties"]["Role"] == {"Fn::GetAtt": [f"{function}Role", "Arn"]}


def test_every_api_route_needs_iam_authorisation(transformed: dict[str, Any]) -> None:
    (api,) = resources_of_type(transformed, "AWS::ApiGatewayV2::Api").values()
    body = api["Properties"]["Body"]
    schemes = body["components"]["securitySchemes"]
    operations = [op for path in body["paths"].values() for op in path.values()]
    assert len(operations) == 10  # scoring 3, cases 5, the console 2
    for operation in operations:
        (requirement,) = operation["security"]
        (scheme,) = requirement
        assert schemes[scheme]["x-amazon-apigateway-authtype"] == "awsSigv4"
        assert operation["x-amazon-apigateway-integration"]["payloadFormatVersion"] == "2.0"


# ---------------------------------------------------------------- encryption


def test_everything_at_rest_is_encrypted(resources: dict[str, Any]) -> None:
    stream = _props(resources, "TransactionsStream")
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert stream["RetentionPeriodHours"] == 24
    assert stream["ShardCount"] == {"Ref": "ShardCount"}
    tables = resources_of_type({"Resources": resources}, "AWS::DynamoDB::Table")
    assert set(tables) == {
        "ProfilesTable",
        "MerchantProfilesTable",
        "DecisionsTable",
        "ListsTable",
        "RulesTable",
        "CasesTable",
        "ModelsTable",
        "DriftTable",
        "LabelsTable",
    }
    for table in tables.values():
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True
    bucket = _props(resources, "ModelsBucket")
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    for topic in ("AlertsTopic", "AlarmsTopic"):
        assert _props(resources, topic)["KmsMasterKeyId"] == {"Ref": "AlertsKey"}
    assert _props(resources, "AlertsKey")["EnableKeyRotation"] is True
    queues = resources_of_type({"Resources": resources}, "AWS::SQS::Queue")
    assert set(queues) == {"QuarantineQueue", "OnFailureQueue", "CasesQueue", "CasesDeadLetterQueue"}
    for queue in queues.values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
        assert queue["Properties"]["MessageRetentionPeriod"] == 1209600


# ---------------------------------------------------------------- alarms and metrics


def test_alerts_and_quarantine_are_fifo_so_a_redelivery_sends_nothing_twice(
    resources: dict[str, Any],
) -> None:
    alerts = _props(resources, "AlertsTopic")
    assert alerts["FifoTopic"] is True
    assert alerts["TopicName"]["Fn::Sub"].endswith(".fifo")
    quarantine = _props(resources, "QuarantineQueue")
    assert quarantine["FifoQueue"] is True
    assert quarantine["QueueName"]["Fn::Sub"].endswith(".fifo")
    # Deduplication ids are set by the adapters per message, never derived from the content.
    assert "ContentBasedDeduplication" not in alerts
    assert "ContentBasedDeduplication" not in quarantine
    assert "FifoTopic" not in _props(resources, "AlarmsTopic")  # CloudWatch alarms cannot publish to FIFO


def test_every_alarm_notifies_the_alarms_topic(resources: dict[str, Any]) -> None:
    alarms = resources_of_type({"Resources": resources}, "AWS::CloudWatch::Alarm")
    assert set(alarms) == {
        "IteratorAgeAlarm",
        "FunctionErrorsAlarm",
        "OnFailureQueueDepthAlarm",
        "QuarantineDepthAlarm",
        "RejectedRateSpikeAlarm",
        "MisroutedRecordsAlarm",
        "OldestOpenCaseAlarm",
        "CasesDeadLetterAlarm",
        "ScoreDriftAlarm",
        "FeatureDriftAlarm",
        "MaturedRecallDropAlarm",
    }
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmsTopic"}]


def test_queue_alarms_watch_their_own_queue(resources: dict[str, Any]) -> None:
    for alarm_id, queue_id in (
        ("OnFailureQueueDepthAlarm", "OnFailureQueue"),
        ("QuarantineDepthAlarm", "QuarantineQueue"),
    ):
        (dimension,) = _props(resources, alarm_id)["Dimensions"]
        assert dimension["Value"] == {"Fn::GetAtt": [queue_id, "QueueName"]}


def drift_step_metrics() -> set[str]:
    """The metric names ModelOpsFunction publishes (drift and matured labels: fraudwatch/model_ops.py)."""
    from fraudwatch.adapters.model_metrics import NAMESPACE, drift_data, matured_data
    from fraudwatch.domain.drift import WindowDrift
    from fraudwatch.domain.matured import MaturedDay

    assert NAMESPACE == "Fraudwatch"
    reference = reference_of(np.zeros((10, len(FEATURE_NAMES))), np.zeros(10))
    data = drift_data(reference, [WindowDrift(0, 10, np.zeros(len(COLUMNS)))])
    data += matured_data([MaturedDay(0, 10, 2, 3, 0.5, 1 / 3)])
    return {datum["MetricName"] for datum in data}


def test_rejected_rate_alarm_reads_metrics_the_function_emits(resources: dict[str, Any]) -> None:
    """The alarm's metric names are exactly ones fraudwatch.observability emits (docs/metrics.md), or the
    drift step publishes."""
    from fraudwatch.domain.scoring import BatchReport
    from fraudwatch.observability import metrics, record_batch

    read = {
        (q["MetricStat"]["Metric"]["Namespace"], q["MetricStat"]["Metric"]["MetricName"])
        for q in _props(resources, "RejectedRateSpikeAlarm")["Metrics"]
        if "MetricStat" in q
    }
    assert read == {("Fraudwatch", "Rejected"), ("Fraudwatch", "Scored")}
    shadow = ShadowVerdict("v2", 0.2, Decision.APPROVED)
    decided = DecisionRecord(
        "tx-1", "u", "m", 1.0, "EUR", "2026-01-01T00:00:00+00:00", Decision.APPROVED, 0.1, "v1",
        Thresholds(0.5, 0.9), "2026-01-01T00:00:01+00:00", challenger=shadow,
    )  # fmt: skip
    record_batch(BatchReport(decisions=[decided], latencies_ms=[5.0]), model_version="test")
    _emit_case_metrics()
    try:
        emitted = set(metrics.metric_set) | drift_step_metrics()
    finally:
        metrics.clear_metrics()
    assert {name for _, name in read} <= emitted
    dashboard = _props(resources, "Dashboard")["DashboardBody"]["Fn::Sub"]
    for name in re.findall(r'\["Fraudwatch", "(\w+)"', dashboard):
        assert name in emitted, name
    fraudwatch_alarms = [
        props
        for props in resources_of_type({"Resources": resources}, "AWS::CloudWatch::Alarm").values()
        if props["Properties"].get("Namespace") == "Fraudwatch"
    ]
    assert fraudwatch_alarms, "the misrouted-records alarm reads a metric of the function's own"
    for props in fraudwatch_alarms:
        assert props["Properties"]["MetricName"] in emitted, props["Properties"]["MetricName"]


def _emit_case_metrics() -> None:
    """What the cases function emits: a case opened, and the schedule's figures of the queue."""
    from datetime import UTC, datetime

    from fraudwatch.cases_wiring import record_opened, report_queue
    from fraudwatch.domain.cases import Verdict

    class Figures:
        def count_open(self) -> tuple[int, str | None]:
            return 1, "2026-09-21T11:00:00+00:00"

        def verdicts_between(self, start: str, end: str) -> dict[Verdict, int]:
            return dict.fromkeys(Verdict, 1)

    record_opened(True)
    report_queue(Figures(), datetime(2026, 9, 21, 12, tzinfo=UTC))


# ---------------------------------------------------------------- tooling


def test_template_transforms_to_cloudformation(transformed: dict[str, Any]) -> None:
    types = {resource["Type"] for resource in transformed["Resources"].values()}
    assert "AWS::Lambda::Function" in types
    assert len(resources_of_type(transformed, "AWS::Lambda::LayerVersion")) == len(LAYERS)
    assert not any(t.startswith("AWS::Serverless::") for t in types)


def test_cfn_lint_reports_no_errors_or_warnings() -> None:
    from cfnlint.api import lint_file

    problems = [m for m in lint_file(Path(TEMPLATE)) if m.rule.severity in {"error", "warning"}]
    assert problems == [], "\n".join(str(m) for m in problems)


def test_samconfig_has_localstack_and_prod_environments() -> None:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    local = config["localstack"]
    assert local["global"]["parameters"]["stack_name"] == "fraudwatch-local"
    assert local["deploy"]["parameters"]["resolve_s3"] is False
    assert local["deploy"]["parameters"]["s3_bucket"]
    assert "Stage=local" in local["deploy"]["parameters"]["parameter_overrides"]
    prod = config["prod"]
    assert prod["deploy"]["parameters"]["confirm_changeset"] is True
    assert prod["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM"
    assert prod["global"]["parameters"]["region"] == "eu-west-1"
    assert "default" in config
