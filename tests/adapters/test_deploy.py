"""Deploying the real template.yaml to the embedded emulator, and the pieces the deploy is made of."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import deploy as deploy_module
from infra.cli import main
from infra.deploy import (
    DeployError,
    Resolver,
    defer_unsupported,
    deploy,
    drop_event_source_mappings,
    parse_parameters,
    references,
    served_url,
    translate,
)
from infra.emulator import Emulator, EmulatorError, boto_session, client, is_healthy, is_moto
from infra.state import read_stack_outputs, stack_endpoint
from infra.template import REPO_ROOT, TEMPLATE, load_template, loads_template

STACK = "fraudwatch-test"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One moto server (its own process, so in-process mocks elsewhere cannot reset it)."""
    with Emulator() as running:
        yield running


@pytest.fixture(scope="module")
def outputs(emulator: Emulator) -> dict[str, str]:
    """The real template.yaml, deployed once for the whole module."""
    return deploy(emulator.endpoint_url, stack_name=STACK, parameters={"Stage": "test"})


def sam_resources(kind: str) -> dict[str, dict[str, Any]]:
    """template.yaml's resources of one type: logical id -> properties."""
    resources = load_template(TEMPLATE)["Resources"]
    return {lid: r.get("Properties", {}) for lid, r in resources.items() if r["Type"] == kind}


# ------------------------------------------------------------------------------------------------ emulator


def test_emulator_in_process_starts_answers_and_stops() -> None:
    with Emulator(in_process=True) as running:
        assert running.endpoint_url.startswith("http://127.0.0.1:")
        assert running.healthy()
        assert is_moto(running.endpoint_url)
        running.client("sqs").create_queue(QueueName="probe")
        assert running.client("sqs").list_queues()["QueueUrls"]
    assert not is_healthy(running.endpoint_url, timeout=0.5)


def test_emulator_process_is_healthy_and_stops(emulator: Emulator) -> None:
    assert emulator.healthy()
    with Emulator() as other:
        assert other.endpoint_url != emulator.endpoint_url
        assert other.pid != emulator.pid
    assert not is_healthy(other.endpoint_url, timeout=0.5)
    assert emulator.healthy()


@pytest.mark.parametrize("in_process", [True, False], ids=["thread", "process"])
def test_a_taken_port_fails_the_start_naming_it(emulator: Emulator, in_process: bool) -> None:
    port = int(emulator.endpoint_url.rsplit(":", 1)[1])
    with pytest.raises(EmulatorError, match=f"cannot listen on 127.0.0.1:{port}"):
        Emulator(in_process=in_process, port=port).start()


def test_the_emulator_lists_motos_modules_once_as_moto_lists_them() -> None:
    import moto.backends as backends

    from infra.emulator import _ModulesListedOnce, tune_moto

    tune_moto()
    tune_moto()  # changes nothing: moto's own listing is still the one wrapped
    listed = backends.list_of_moto_modules
    assert isinstance(listed, _ModulesListedOnce)
    own = listed.__wrapped__
    assert (own.__module__, own.__qualname__) == ("moto.backends", "list_of_moto_modules")
    assert listed() == tuple(own())
    assert listed() is listed()
    assert "dynamodb" in listed()


def test_an_unreachable_endpoint_is_neither_healthy_nor_moto() -> None:
    assert not is_healthy("http://127.0.0.1:9", timeout=0.5)
    assert not is_moto("http://127.0.0.1:9", timeout=0.5)


# ------------------------------------------------------------------------------------------------ template


def test_short_form_tags_become_long_form() -> None:
    doc = loads_template(
        "AWSTemplateFormatVersion: 2010-09-09\n"
        "Resources:\n"
        "  A:\n"
        "    Type: X\n"
        "    Properties:\n"
        "      Arn: !GetAtt B.Arn.Deep\n"
        "      Name: !Sub ['${x}-y', {x: !Ref P}]\n"
        "      Pick: !If [C, !Select [0, !Split [',', 'a,b']], !Ref AWS::NoValue]\n"
    )
    props = doc["Resources"]["A"]["Properties"]
    assert doc["AWSTemplateFormatVersion"] == "2010-09-09"
    assert props["Arn"] == {"Fn::GetAtt": ["B", "Arn.Deep"]}
    assert props["Name"] == {"Fn::Sub": ["${x}-y", {"x": {"Ref": "P"}}]}
    assert props["Pick"]["Fn::If"][1] == {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}


def test_a_document_without_resources_is_not_a_template() -> None:
    with pytest.raises(ValueError, match="Resources"):
        loads_template("a: 1\n")


def test_references_follow_ref_getatt_and_sub() -> None:
    value = {
        "a": {"Ref": "P"},
        "b": [{"Fn::GetAtt": ["Q", "Arn"]}, {"Fn::GetAtt": "R.Name"}],
        "c": {"Fn::Sub": "${S.Arn}-${T}-${!Literal}"},
        "d": {"Fn::Sub": ["${x}", {"x": {"Ref": "U"}}]},
    }
    assert references(value) == {"P", "Q", "R", "S", "T", "x", "U"}


def test_unsupported_resources_and_what_uses_them_are_deferred() -> None:
    cfn: dict[str, Any] = {
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic"},
            "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"AlarmActions": [{"Ref": "Topic"}]}},
            "Board": {
                "Type": "AWS::CloudWatch::Dashboard",
                "Properties": {"Body": {"Fn::Sub": "${Alarm.Arn}"}},
            },
        },
        "Outputs": {"T": {"Value": {"Ref": "Topic"}}, "B": {"Value": {"Ref": "Board"}}},
    }
    applied = defer_unsupported(cfn, lambda kind: kind != "AWS::CloudWatch::Alarm")
    assert set(applied["Resources"]) == {"Topic"}
    assert set(applied["Outputs"]) == {"T"}
    assert set(cfn["Resources"]) == {"Topic", "Alarm", "Board"}, "the caller's template is untouched"


def test_event_source_mappings_are_dropped_with_their_dependencies() -> None:
    cfn: dict[str, Any] = {
        "Resources": {
            "Map": {"Type": "AWS::Lambda::EventSourceMapping"},
            "Other": {"Type": "AWS::SNS::Topic", "DependsOn": ["Map", "Keep"]},
            "Keep": {"Type": "AWS::SNS::Topic", "DependsOn": "Map"},
        }
    }
    assert drop_event_source_mappings(cfn) == ["Map"]
    assert cfn["Resources"]["Other"]["DependsOn"] == ["Keep"]
    assert "DependsOn" not in cfn["Resources"]["Keep"]


def test_resolver_evaluates_intrinsics_against_the_stack() -> None:
    cfn: dict[str, Any] = {
        "Parameters": {"Stage": {"Default": "dev"}},
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
    }
    resolve = Resolver(
        cfn,
        {"Stage": "qa"},
        {"AWS::Region": "us-east-1"},
        {"Queue": "https://queue"},
        lambda lid, att: f"{lid}.{att}",
    )
    assert resolve({"Fn::Sub": "${AWS::Region}-${Stage}-${Queue}-${Topic.Arn}"}) == (
        "us-east-1-qa-https://queue-Topic.Arn"
    )
    assert resolve({"Fn::If": ["IsProd", "p", "np"]}) == "np"
    assert resolve({"a": {"Ref": "AWS::NoValue"}, "b": [1, {"Ref": "AWS::NoValue"}]}) == {"b": [1]}
    assert resolve({"Fn::Join": ["/", ["x", {"Ref": "Stage"}]]}) == "x/qa"
    with pytest.raises(DeployError, match="Missing"):
        resolve({"Ref": "Missing"})


def test_an_invalid_sam_template_names_the_reason() -> None:
    sam = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {"Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": "python3.12"}}},
    }
    iam = client("iam", "http://127.0.0.1:9")
    with pytest.raises(DeployError, match=r"SAM transform failed: .*Fn"):
        translate(sam, {}, boto_session("http://127.0.0.1:9"), iam)


def test_parameters_are_key_value_pairs() -> None:
    assert parse_parameters(["Stage=prod", "LogLevel=DEBUG", "FlagThreshold="]) == {
        "Stage": "prod",
        "LogLevel": "DEBUG",
        "FlagThreshold": "",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_parameters(["Stage"])


def test_coerce_fits_text_numbers_to_the_api_shape() -> None:
    cloudwatch = client("cloudwatch", "http://127.0.0.1:9")
    shape = cloudwatch.meta.service_model.operation_model("PutMetricAlarm").input_shape
    fitted = deploy_module.coerce_to_shape({"AlarmName": "a", "Period": "60", "Threshold": "5"}, shape)
    assert fitted == {"AlarmName": "a", "Period": 60, "Threshold": 5.0}
    with pytest.raises(DeployError, match="Bogus"):
        deploy_module.coerce_to_shape({"AlarmName": "a", "Bogus": 1}, shape)


# ------------------------------------------------------------------------------------------------ deployed


def test_every_output_resolves(outputs: dict[str, str]) -> None:
    assert set(outputs) == set(load_template(TEMPLATE)["Outputs"])
    assert all(outputs.values())
    assert outputs["StreamArn"].startswith("arn:aws:kinesis:")
    assert outputs["StreamArn"].endswith(f"/{outputs['StreamName']}")
    assert outputs["QuarantineQueueArn"].startswith("arn:aws:sqs:")
    assert outputs["DashboardName"] == f"{STACK}-test"
    assert outputs["ScoringFunctionName"] == f"{STACK}-scoring"


def test_queue_urls_are_the_emulators_so_the_aws_cli_reaches_them(
    emulator: Emulator, outputs: dict[str, str]
) -> None:
    urls = {key: value for key, value in outputs.items() if key.endswith("QueueUrl")}
    assert urls
    listed = set(emulator.client("sqs").list_queues()["QueueUrls"])
    for url in urls.values():
        assert url.startswith(emulator.endpoint_url + "/")
        assert url in listed


def test_only_aws_hosted_queue_urls_are_rewritten() -> None:
    endpoint = "http://127.0.0.1:4566"
    aws_url = "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo"
    assert served_url(aws_url, endpoint) == f"{endpoint}/123456789012/q.fifo"
    assert served_url(f"{endpoint}/123456789012/q", "http://other:1") == f"{endpoint}/123456789012/q"
    assert (
        served_url("arn:aws:sns:us-east-1:123456789012:t", endpoint) == "arn:aws:sns:us-east-1:123456789012:t"
    )


def test_tables_have_the_templates_key_schemas(emulator: Emulator, outputs: dict[str, str]) -> None:
    dynamodb = emulator.client("dynamodb")
    tables = sam_resources("AWS::DynamoDB::Table")
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
    for logical_id, props in tables.items():
        table = dynamodb.describe_table(TableName=outputs[f"{logical_id}Name"])["Table"]
        assert table["KeySchema"] == props["KeySchema"]
        indexes = {i["IndexName"]: i["KeySchema"] for i in table.get("GlobalSecondaryIndexes", [])}
        assert indexes == {i["IndexName"]: i["KeySchema"] for i in props.get("GlobalSecondaryIndexes", [])}


def test_the_models_bucket_is_deployed_versioned_and_encrypted(
    emulator: Emulator, outputs: dict[str, str]
) -> None:
    s3 = emulator.client("s3")
    bucket = outputs["ModelsBucketName"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())


def test_alarms_exist_although_moto_cloudformation_skips_them(
    emulator: Emulator, outputs: dict[str, str]
) -> None:
    alarms = emulator.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{STACK}-")["MetricAlarms"]
    by_name = {a["AlarmName"]: a for a in alarms}
    expected = sam_resources("AWS::CloudWatch::Alarm")
    assert expected, "the template declares alarms"
    for logical_id, props in expected.items():
        alarm = by_name[f"{STACK}-{logical_id}"]
        assert alarm["AlarmActions"] == [outputs["AlarmsTopicArn"]]
        assert alarm["ComparisonOperator"] == props["ComparisonOperator"]
        threshold = props["Threshold"]
        if isinstance(threshold, dict):  # a parameter's (CaseServiceLevelSeconds), deployed with its default
            threshold = load_template(TEMPLATE)["Parameters"][threshold["Ref"]]["Default"]
        assert alarm["Threshold"] == float(threshold)
        assert alarm.get("MetricName") == props.get("MetricName")
    function_alarm = by_name[f"{STACK}-IteratorAgeAlarm"]
    assert function_alarm["Dimensions"] == [{"Name": "FunctionName", "Value": outputs["ScoringFunctionName"]}]


def test_dashboard_lists_the_alarms(emulator: Emulator, outputs: dict[str, str]) -> None:
    body = emulator.client("cloudwatch").get_dashboard(DashboardName=outputs["DashboardName"])[
        "DashboardBody"
    ]
    widget = next(w for w in json.loads(body)["widgets"] if w["type"] == "alarm")
    assert len(widget["properties"]["alarms"]) == len(sam_resources("AWS::CloudWatch::Alarm"))
    assert all(arn.startswith("arn:aws:cloudwatch:") for arn in widget["properties"]["alarms"])


def test_function_has_its_layers_and_no_event_source_mapping(
    emulator: Emulator, outputs: dict[str, str]
) -> None:
    lambda_ = emulator.client("lambda")
    config = lambda_.get_function_configuration(FunctionName=outputs["ScoringFunctionName"])
    layer_names = [layer["Arn"].split(":")[-2] for layer in config["Layers"]]
    assert layer_names == [f"{STACK}-ml-runtime", f"{STACK}-fraudwatch", f"{STACK}-model"]
    variables = config["Environment"]["Variables"]
    assert variables["DECISIONS_TABLE"] == outputs["DecisionsTableName"]
    assert variables["MERCHANT_PROFILES_TABLE"] == outputs["MerchantProfilesTableName"]
    # moto's mapping would fire per record inside PutRecords: the local runner plays its part instead.
    assert lambda_.list_event_source_mappings()["EventSourceMappings"] == []


def test_the_inline_api_routes_each_need_iam_and_invoke_the_api_function_with_its_layers(
    emulator: Emulator, outputs: dict[str, str]
) -> None:
    apigatewayv2, lambda_ = emulator.client("apigatewayv2"), emulator.client("lambda")
    api_id = outputs["ScoringApiUrl"].removeprefix("https://").split(".", 1)[0]
    routes = apigatewayv2.get_routes(ApiId=api_id)["Items"]
    events = sam_resources("AWS::Serverless::Function")["ScoringApiFunction"]["Events"].values()
    expected = {f"{e['Properties']['Method']} {e['Properties']['Path']}" for e in events}
    assert {r["RouteKey"] for r in routes} == expected
    assert {r.get("AuthorizationType") for r in routes} == {"AWS_IAM"}
    assert [s["StageName"] for s in apigatewayv2.get_stages(ApiId=api_id)["Items"]] == ["$default"]
    config = lambda_.get_function_configuration(FunctionName=outputs["ScoringApiFunctionName"])
    assert config["Handler"] == "app.lambda_handler"
    alias = lambda_.get_alias(FunctionName=outputs["ScoringApiFunctionName"], Name="live")
    assert alias["FunctionVersion"].isdigit()  # a published version (SnapStart applies to those)
    assert len(config["Layers"]) == 3
    policy = json.loads(lambda_.get_policy(FunctionName=outputs["ScoringApiFunctionName"])["Policy"])
    arns = [s["Condition"]["ArnLike"]["AWS:SourceArn"] for s in policy["Statement"]]
    assert len(arns) == len(expected)
    assert all(f":{api_id}/" in arn for arn in arns)


def test_stream_tables_topic_and_queues_are_usable(emulator: Emulator, outputs: dict[str, str]) -> None:
    kinesis = emulator.client("kinesis")
    kinesis.put_record(StreamName=outputs["StreamName"], Data=b'{"probe": 1}', PartitionKey="u1")
    shard = kinesis.list_shards(StreamName=outputs["StreamName"])["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=outputs["StreamName"], ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=iterator)["Records"]] == [b'{"probe": 1}']

    dynamodb = emulator.client("dynamodb")
    for table, key in (("ProfilesTableName", "user_id"), ("MerchantProfilesTableName", "merchant_id")):
        dynamodb.put_item(TableName=outputs[table], Item={key: {"S": "id-1"}})
        got = dynamodb.get_item(TableName=outputs[table], Key={key: {"S": "id-1"}})
        assert got["Item"][key] == {"S": "id-1"}

    sqs = emulator.client("sqs")
    sqs.send_message(QueueUrl=outputs["OnFailureQueueUrl"], MessageBody="probe")
    # The quarantine is FIFO: a second send with the same deduplication id keeps one message.
    for _ in range(2):
        sqs.send_message(
            QueueUrl=outputs["QuarantineQueueUrl"],
            MessageBody="probe",
            MessageGroupId="shard-1",
            MessageDeduplicationId="shard-1:1",
        )
    for key in ("QuarantineQueueUrl", "OnFailureQueueUrl"):
        received = sqs.receive_message(QueueUrl=outputs[key], MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in received] == ["probe"]
    sns = emulator.client("sns")
    alerts = sns.get_topic_attributes(TopicArn=outputs["AlertsTopicArn"])["Attributes"]
    assert alerts["FifoTopic"] == "true"
    assert sns.publish(
        TopicArn=outputs["AlertsTopicArn"], Message="probe", MessageGroupId="u", MessageDeduplicationId="t"
    )["MessageId"]
    assert "FifoTopic" not in sns.get_topic_attributes(TopicArn=outputs["AlarmsTopicArn"])["Attributes"]
    assert sns.publish(TopicArn=outputs["AlarmsTopicArn"], Message="probe")["MessageId"]


def test_redeploy_from_the_command_line_keeps_the_stack(
    emulator: Emulator, outputs: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "stack.json"
    argv = ["deploy", "--endpoint", emulator.endpoint_url, "--stack-name", STACK]
    assert main([*argv, "--parameter", "Stage=test", "--outputs-file", str(state)]) == 0
    assert json.loads(capsys.readouterr().out) == outputs
    # What `fraudwatch produce/run --outputs` read back.
    assert read_stack_outputs(state) == outputs
    assert stack_endpoint(state) == emulator.endpoint_url
    # Unchanged code publishes no new layer version.
    versions = emulator.client("lambda").list_layer_versions(LayerName=f"{STACK}-fraudwatch")["LayerVersions"]
    assert [v["Version"] for v in versions] == [1]


def test_the_subscription_parameters_subscribe_an_email_to_alarms_and_a_queue_to_alerts(
    emulator: Emulator,
) -> None:
    sqs, sns = emulator.client("sqs"), emulator.client("sns")
    inbox = sqs.create_queue(QueueName="team-inbox.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    stacked = deploy(
        emulator.endpoint_url,
        stack_name=f"{STACK}-subscribed",
        parameters={"Stage": "test", "AlarmEmail": "fraud-ops@example.com", "AlertsQueueArn": inbox_arn},
    )

    def subscriptions(topic: str) -> list[tuple[str, str]]:
        found = sns.list_subscriptions_by_topic(TopicArn=stacked[topic])["Subscriptions"]
        return [(s["Protocol"], s["Endpoint"]) for s in found]

    assert subscriptions("AlarmsTopicArn") == [("email", "fraud-ops@example.com")]
    cases_queue = sqs.get_queue_attributes(QueueUrl=stacked["CasesQueueUrl"], AttributeNames=["QueueArn"])
    assert sorted(subscriptions("AlertsTopicArn")) == sorted(
        [("sqs", inbox_arn), ("sqs", cases_queue["Attributes"]["QueueArn"])]
    )
    sns.publish(
        TopicArn=stacked["AlertsTopicArn"],
        Message=json.dumps({"transaction_id": "tx-1"}),
        MessageGroupId="user-1",
        MessageDeduplicationId="tx-1",
    )
    received = sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=1)["Messages"]
    assert [json.loads(m["Body"]) for m in received] == [{"transaction_id": "tx-1"}]  # raw delivery


def test_without_the_subscription_parameters_no_one_is_subscribed(
    emulator: Emulator, outputs: dict[str, str]
) -> None:
    sns, sqs = emulator.client("sns"), emulator.client("sqs")
    assert sns.list_subscriptions_by_topic(TopicArn=outputs["AlarmsTopicArn"])["Subscriptions"] == []
    # the alerts topic feeds the review cases' queue only, FLAGGED alerts only, its policy letting it send
    (cases,) = sns.list_subscriptions_by_topic(TopicArn=outputs["AlertsTopicArn"])["Subscriptions"]
    queue = sqs.get_queue_attributes(QueueUrl=outputs["CasesQueueUrl"], AttributeNames=["QueueArn", "Policy"])
    assert cases["Endpoint"] == queue["Attributes"]["QueueArn"]
    attributes = sns.get_subscription_attributes(SubscriptionArn=cases["SubscriptionArn"])["Attributes"]
    assert json.loads(attributes["FilterPolicy"]) == {"decision": ["FLAGGED"]}
    assert attributes["RawMessageDelivery"] == "true"
    (statement,) = json.loads(queue["Attributes"]["Policy"])["Statement"]
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == outputs["AlertsTopicArn"]


def test_a_malformed_parameter_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "--endpoint", "http://127.0.0.1:9", "--parameter", "Stage"]) == 2  # usage
    assert (
        capsys.readouterr().err.strip() == "fraudwatch deploy: error: --parameter 'Stage': expected KEY=VALUE"
    )


def test_a_parameter_the_template_does_not_declare_is_refused_before_any_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["deploy", "--endpoint", "http://127.0.0.1:9", "--parameter", "AlarmMail=ops@example.com"]
    assert main(argv) == 2  # usage, although nothing answers at the endpoint
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "fraudwatch deploy: error: --parameter AlarmMail: the template has no such parameter (it has "
    )
    assert "AlarmEmail" in err


# ------------------------------------------------------------------------------------------------ LocalStack


def test_localstack_compose_pins_its_image_and_passes_the_token() -> None:
    compose = yaml.safe_load((REPO_ROOT / "infra" / "localstack" / "docker-compose.yml").read_text())
    service = compose["services"]["localstack"]
    image = service["image"].removeprefix("${LOCALSTACK_IMAGE:-").removesuffix("}")
    name, _, tag = image.partition(":")
    assert name == "localstack/localstack"
    assert tag
    assert tag != "latest"
    assert service["environment"]["LOCALSTACK_AUTH_TOKEN"] == "${LOCALSTACK_AUTH_TOKEN:-}"
    assert "127.0.0.1:4566:4566" in service["ports"]


def test_localstack_deploy_uses_the_samconfig_environment() -> None:
    samconfig = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    assert samconfig["localstack"]["deploy"]["parameters"]["s3_bucket"]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "deploy --config-env localstack" in makefile


def test_the_local_servers_container_serves_the_real_handler_on_loopback_only() -> None:
    """Docker's path for `fraudwatch serve` (no engine runs here: its files are checked, not run)."""
    compose = yaml.safe_load((REPO_ROOT / "infra" / "localstack" / "docker-compose.yml").read_text())
    serve = compose["services"]["fraudwatch-serve"]
    assert serve["profiles"] == ["serve"]  # `make localstack-up` starts LocalStack alone
    assert serve["build"] == {"context": "../..", "dockerfile": "infra/docker/Dockerfile"}
    assert serve["ports"] == ["127.0.0.1:3000:3000"]  # the server checks no signature
    assert serve["volumes"] == ["../../layers/model/bundle:/app/layers/model/bundle:ro"]
    dockerfile = (REPO_ROOT / "infra" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.12-slim" in dockerfile  # the Lambda runtime's Python
    copied = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    packages = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert set(packages.values()) <= copied  # every package the install needs is in the image
    cmd = json.loads(dockerfile.split("CMD ", 1)[1].splitlines()[0])
    assert cmd[:2] == ["fraudwatch", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert "USER fraudwatch" in dockerfile  # not root
