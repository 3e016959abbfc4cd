"""The runner's pure parts: mapping settings from the template, judging responses, the on-failure record."""

import textwrap
from pathlib import Path

import pytest

from fraudwatch.errors import ConfigurationError
from infra.cli import main
from infra.runner import (
    WHOLE_BATCH,
    MappingSettings,
    ShardRecord,
    judge_response,
    on_failure_message,
    on_failure_queue_url,
)
from infra.template import TEMPLATE, load_template


def records(*seqs: str) -> list[ShardRecord]:
    return [ShardRecord(s, "user-1", b"{}", 1_700_000_000.0 + i) for i, s in enumerate(seqs)]


def test_settings_are_read_from_the_template_as_it_states_them():
    props = load_template(TEMPLATE)["Resources"]["ScoringFunction"]["Properties"]["Events"][
        "TransactionsStream"
    ]["Properties"]

    settings = MappingSettings.from_template()

    assert settings.batch_size == props["BatchSize"]
    assert settings.batching_window_s == props["MaximumBatchingWindowInSeconds"]
    assert settings.starting_position == props["StartingPosition"]
    assert settings.bisect_on_error is props["BisectBatchOnFunctionError"]
    assert settings.maximum_retry_attempts == props["MaximumRetryAttempts"]
    assert settings.maximum_record_age_s == props["MaximumRecordAgeInSeconds"]
    assert settings.parallelization_factor == props["ParallelizationFactor"]
    assert settings.report_batch_item_failures is (
        "ReportBatchItemFailures" in props["FunctionResponseTypes"]
    )
    assert settings.on_failure_destination == "!GetAtt OnFailureQueue.Arn"
    assert settings.on_failure_resource == "OnFailureQueue"


def write_template(tmp_path: Path, properties: str, parameters: str = "") -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            Transform: AWS::Serverless-2016-10-31
            Parameters:
              Batch:
                Type: Number
                Default: 25
            Resources:
              Fn:
                Type: AWS::Serverless::Function
                Properties:
                  Events:
                    Stream:
                      Type: Kinesis
                      Properties:
            """
        )
        + textwrap.indent(textwrap.dedent(properties), " " * 12)
    )
    return path


def test_omitted_properties_take_lambdas_defaults_and_refs_take_parameter_defaults(tmp_path):
    path = write_template(
        tmp_path, "Stream: !GetAtt S.Arn\nStartingPosition: LATEST\nBatchSize: !Ref Batch\n"
    )

    settings = MappingSettings.from_template(path, function="Fn", event="Stream")

    assert settings == MappingSettings(starting_position="LATEST", batch_size=25)
    assert (settings.maximum_retry_attempts, settings.maximum_record_age_s) == (-1, -1)
    assert settings.on_failure_resource is None


def test_a_literal_destination_arn_is_kept(tmp_path):
    path = write_template(
        tmp_path,
        "StartingPosition: TRIM_HORIZON\n"
        "DestinationConfig:\n  OnFailure:\n    Destination: arn:aws:sqs:us-east-1:1:q\n",
    )

    settings = MappingSettings.from_template(path, function="Fn", event="Stream")

    assert settings.on_failure_destination == "arn:aws:sqs:us-east-1:1:q"
    assert settings.on_failure_resource is None


def test_a_missing_event_is_named(tmp_path):
    path = write_template(tmp_path, "StartingPosition: LATEST\n")
    with pytest.raises(ConfigurationError, match="Fn has no event Other"):
        MappingSettings.from_template(path, function="Fn", event="Other")


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"starting_position": "EARLIEST"}, "StartingPosition"),
        ({"starting_position": "AT_TIMESTAMP"}, "StartingPositionTimestamp"),
        ({"batch_size": 0}, "BatchSize"),
        ({"batching_window_s": 301}, "MaximumBatchingWindowInSeconds"),
        ({"maximum_retry_attempts": -2}, "MaximumRetryAttempts"),
        ({"maximum_record_age_s": -5}, "MaximumRecordAgeInSeconds"),
    ],
)
def test_invalid_settings_are_refused_naming_the_property(changes, named):
    with pytest.raises(ConfigurationError, match=named):
        MappingSettings(**({"starting_position": "LATEST"} | changes))


@pytest.mark.parametrize("response", [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, "ok"])
def test_empty_responses_are_success(response):
    assert judge_response(response, records("1", "2"), report_failures=True) is None


def test_the_lowest_failed_sequence_number_is_found_as_an_integer():
    batch = records("8", "9", "10", "11")
    response = {
        "batchItemFailures": [{"itemIdentifier": "11"}, {"itemIdentifier": "10"}, {"itemIdentifier": "9"}]
    }

    assert judge_response(response, batch, report_failures=True) == 1


def test_long_kinesis_sequence_numbers_compare_as_integers():
    low, high = "9" * 56, "1" + "0" * 56  # as strings, high < low
    response = {"batchItemFailures": [{"itemIdentifier": high}, {"itemIdentifier": low}]}

    assert judge_response(response, records(low, high), report_failures=True) == 0


@pytest.mark.parametrize(
    "failures",
    [
        [{"itemIdentifier": ""}],
        [{"itemIdentifier": None}],
        [{"id": "2"}],
        [{"itemIdentifier": "3"}],
        [{"itemIdentifier": "2"}, {"itemIdentifier": "404"}],
        ["2"],
        "2",
    ],
)
def test_bad_item_identifiers_fail_the_whole_batch(failures):
    assert (
        judge_response({"batchItemFailures": failures}, records("1", "2"), report_failures=True)
        == WHOLE_BATCH
    )


def test_failures_are_not_read_without_report_batch_item_failures():
    response = {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert judge_response(response, records("1", "2"), report_failures=False) is None


def test_the_on_failure_record_has_lambdas_shape():
    batch = records("5", "6", "7")

    message = on_failure_message(
        condition="RecordAgeExceeded",
        records=batch,
        shard_id="shardId-000000000003",
        stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        invocation=None,
        invoke_count=0,
        now=1_700_000_100.25,
    )

    assert message["version"] == "1.0"
    assert message["timestamp"] == "2023-11-14T22:15:00.250Z"
    assert message["requestContext"]["condition"] == "RecordAgeExceeded"
    assert message["requestContext"]["approximateInvokeCount"] == 0
    assert message["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert message["KinesisBatchInfo"] == {
        "shardId": "shardId-000000000003",
        "startSequenceNumber": "5",
        "endSequenceNumber": "7",
        "approximateArrivalOfFirstRecord": "2023-11-14T22:13:20.000Z",
        "approximateArrivalOfLastRecord": "2023-11-14T22:13:22.000Z",
        "batchSize": 3,
        "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/s",
    }


def test_the_on_failure_queue_url_is_found_through_the_templates_outputs():
    settings = MappingSettings.from_template()
    outputs = {"OnFailureQueueUrl": "http://q/on-failure", "QuarantineQueueUrl": "http://q/quarantine"}

    assert on_failure_queue_url(settings, outputs) == "http://q/on-failure"


def test_a_missing_on_failure_queue_url_is_named():
    with pytest.raises(ConfigurationError, match="--on-failure-queue-url"):
        on_failure_queue_url(MappingSettings.from_template(), {"StreamName": "s"})


def test_the_run_command_needs_the_stacks_outputs(tmp_path, capsys):
    code = main(["run", "--outputs", str(tmp_path / "missing.json")])

    assert code == 2
    assert "no stack outputs" in capsys.readouterr().err
