"""The command line's one convention: `fraudwatch <command>: error: <what>, <what to do>`, exit 2 for usage
and input errors, 1 for failures at run time; and `fraudwatch invoke`'s dry run."""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fraudwatch.domain.events import parse_event
from fraudwatch.domain.transaction import Transaction
from fraudwatch.errors import InvalidRecordError
from infra.cli import main, number_from, port_number

REPO = Path(__file__).resolve().parents[2]
MIXED_EVENT = REPO / "events" / "mixed.json"


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


def test_an_unknown_option_is_named_before_a_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--bogus"])
    assert exited.value.code == 2
    assert error_line(capsys).startswith("fraudwatch: error: unrecognized arguments: --bogus")


def test_an_unknown_option_of_a_command_is_reported_by_that_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["deploy", "--bogus"])
    assert exited.value.code == 2
    assert error_line(capsys).startswith("fraudwatch deploy: error: unrecognized arguments: --bogus")


def test_no_command_says_where_the_list_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "fraudwatch --help" in error_line(capsys)


def test_a_missing_event_file_is_a_usage_error_naming_the_file_and_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.json"
    assert main(["invoke", "--event", str(missing)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"fraudwatch invoke: error: cannot read the event file {missing}")
    assert "events/mixed.json" in line


def test_an_event_that_is_not_json_names_its_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["invoke", "--event", str(bad)]) == 2
    assert error_line(capsys).startswith(f"fraudwatch invoke: error: {bad} is not a JSON event")


def test_a_live_invoke_without_a_stack_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["invoke", "--live", "--event", str(MIXED_EVENT), "--outputs", str(tmp_path / "none.json")])
    assert code == 2
    assert "fraudwatch stack up --detach" in error_line(capsys)


def test_a_missing_template_is_named_not_taken_for_a_connection_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "template.yaml"
    assert main(["deploy", "--endpoint", "http://127.0.0.1:9", "--template", str(missing)]) == 2
    assert error_line(capsys).startswith(f"fraudwatch deploy: error: no template at {missing}")


def test_deploy_help_names_the_runner_command_that_exists(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["deploy", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "run `fraudwatch run` instead" in text
    assert "fraudwatch runner" not in text


def test_python_dash_m_fraudwatch_is_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fraudwatch", "--help"], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m fraudwatch")
    assert "invoke" in result.stdout


def test_invoke_is_a_dry_run_by_default_and_says_what_it_would_have_written(
    tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = json.loads(MIXED_EVENT.read_text())
    assert main(["invoke", "--event", str(MIXED_EVENT), "--bundle", str(tiny_bundle)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out[captured.out.index('{\n  "batchItemFailures"') :]) == {
        "batchItemFailures": []
    }
    summary = captured.err.strip().splitlines()[-1]
    assert summary.startswith("fraudwatch invoke: dry run, nothing written to any stack")
    transactions, malformed = [], 0
    for r in event["Records"]:
        data = base64.b64decode(r["kinesis"]["data"])
        try:
            parsed = parse_event(data, received_at=r["kinesis"]["approximateArrivalTimestamp"])
        except InvalidRecordError:
            malformed += 1
            continue
        if isinstance(parsed, Transaction):
            transactions.append(parsed)
    assert transactions
    assert malformed
    assert f"would have written {len(transactions)} decisions, " in summary
    assert f"{len({t.user_id for t in transactions})} user profiles" in summary
    assert summary.endswith(f"{malformed} quarantined records")


def test_stack_up_with_a_missing_bundle_fails_naming_the_path_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope-bundle"
    assert main(["stack", "up", "--bundle", str(missing), "--detach"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"fraudwatch stack: error: no model bundle at {missing}")
    assert "--no-runner" in line


def test_stack_up_detach_refuses_while_a_stack_runs_instead_of_orphaning_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import infra.stack

    state_file = tmp_path / "stack.json"
    state_file.write_text(json.dumps({"pid": 4242, "endpoint": "http://127.0.0.1:9", "outputs": {}}))
    monkeypatch.setattr(infra.stack, "STATE_FILE", state_file)
    monkeypatch.setattr(infra.stack, "LOG_FILE", tmp_path / "stack.log")
    monkeypatch.setattr(infra.stack, "read_state", lambda: json.loads(state_file.read_text()))
    monkeypatch.setattr(infra.stack, "_ours", lambda pid: pid == 4242)

    def no_second_stack(*args: object, **kwargs: object) -> None:
        raise AssertionError("a second background stack was started")

    monkeypatch.setattr(subprocess, "Popen", no_second_stack)
    assert main(["stack", "up", "--detach", "--no-runner"]) == 1
    line = error_line(capsys)
    assert line.startswith("fraudwatch stack: error: a stack already runs (pid 4242, http://127.0.0.1:9)")
    assert "`stack down` first" in line
    assert state_file.is_file()  # the running stack stays recorded, so `stack down` still stops it


@pytest.mark.parametrize(
    "command", [["lists", "show"], ["cases", "list"], ["alerts"], ["produce"], ["models", "list"]]
)
def test_commands_find_the_stack_that_stack_up_recorded_from_any_directory(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.cli import build_parser
    from infra.state import STATE_FILE

    monkeypatch.chdir(tmp_path)  # not the project: `stack status` still finds the stack, so must they
    args = build_parser().parse_args(command)
    assert Path(args.outputs).resolve() == STATE_FILE.resolve()


def test_a_local_context_names_its_own_function_in_its_arn_and_log_group() -> None:
    from infra.invoke import LocalContext

    ops = LocalContext("ModelOpsFunction")
    assert ops.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:ModelOpsFunction"
    assert ops.log_group_name == "/aws/lambda/ModelOpsFunction"
    assert LocalContext().invoked_function_arn.endswith(":function:ScoringFunction")
    given = "arn:aws:lambda:eu-west-1:1:function:f"
    assert LocalContext(invoked_function_arn=given).invoked_function_arn == given


@pytest.mark.parametrize(("limit", "says"), [("0", "must be from 1 to 100, got 0"), ("x", "got 'x'")])
def test_a_cases_page_size_out_of_range_is_one_short_error(
    limit: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["cases", "list", "--limit", limit])
    assert exited.value.code == 2
    line = error_line(capsys)
    assert line.startswith("fraudwatch cases list: error: argument --limit: ")
    assert line.endswith(says)


def test_the_cases_command_pages_as_the_api_does() -> None:
    from fraudwatch.cases_api import MAX_PAGE
    from infra.cases import MAX_PAGE as COMMAND_MAX_PAGE

    assert COMMAND_MAX_PAGE == MAX_PAGE


def test_output_cut_short_by_its_reader_ends_quietly_without_a_traceback() -> None:
    command = [sys.executable, "-m", "infra.cli", "openapi", "--out", "-"]  # 50 kB on stdout
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    child.stdout.close()  # as `| head` does once it has its lines
    _, err = child.communicate(timeout=60)
    assert b"Traceback" not in err
    assert b"BrokenPipeError" not in err
    assert child.returncode == 141


def test_the_readme_gives_labels_a_time_that_is_recent_whenever_it_is_run() -> None:
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "--labelled-at" in readme
    # A fixed time is quarantined 7 days after it: the example would fail from then on.
    assert not re.findall(r"--labelled-at\s+\d{4}-\d{2}-\d{2}", readme)


@pytest.mark.parametrize("command", [["train"], ["events"], ["produce"], ["demo"], ["generate"]])
def test_a_negative_seed_is_a_usage_error_before_anything_runs(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--seed", "-1"])
    assert exited.value.code == 2
    says = f"fraudwatch {command[0]}: error: argument --seed: must be at least 0, got -1"
    assert error_line(capsys) == says


def test_openapi_writes_the_projects_document_from_any_directory_and_names_a_path_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.cli import build_parser

    monkeypatch.chdir(tmp_path)  # no docs/ here
    assert Path(build_parser().parse_args(["openapi"]).out) == REPO / "docs" / "openapi.json"
    unwritable = tmp_path / "no-such-dir" / "openapi.json"
    assert main(["openapi", "--out", str(unwritable)]) == 2
    assert error_line(capsys) == (
        f"fraudwatch openapi: error: cannot write {unwritable} (No such file or directory), check --out"
    )


@pytest.mark.parametrize("command", [["train"], ["score-file", "--data", "x.csv", "--out", "y.csv"]])
def test_train_and_score_file_use_the_stacks_bundle_from_any_directory(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.cli import build_parser
    from infra.invoke import DEFAULT_BUNDLE

    monkeypatch.chdir(tmp_path)
    assert Path(build_parser().parse_args(command).bundle) == DEFAULT_BUNDLE


def test_cases_list_refuses_a_reason_that_is_no_feature_instead_of_showing_an_empty_queue(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from infra.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        main(["cases", "list", "--reason", "amount_z_score"])
    assert exited.value.code == 2
    line = error_line(capsys)
    assert line.startswith(
        "fraudwatch cases list: error: argument --reason: no feature is named 'amount_z_score'"
    )
    assert "amount_zscore" in line
    assert build_parser().parse_args(["cases", "list", "--reason", "amount_zscore"]).reason == "amount_zscore"


def test_every_command_and_subcommand_says_what_it_does_in_its_help() -> None:
    import argparse

    from infra.cli import build_parser

    def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    found += parsers(child)
        return found

    silent = [p.prog for p in parsers(build_parser()) if not (p.description or "").strip()]
    assert silent == []


@pytest.mark.parametrize(
    "command", [["serve", "--port"], ["stack", "up", "--port"], ["demo", "--console-port"]]
)
@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_a_usage_error_not_a_bind_traceback(
    command: list[str], port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, port])
    assert exited.value.code == 2
    assert error_line(capsys).endswith(f"error: argument {command[-1]}: must be from 0 to 65535, got {port}")


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--rate", "-5", "must be at least 0, got -5"),
        ("--rate", "nan", "expected a finite number, got nan"),
        ("--timeout", "-1", "must be more than 0, got -1"),
        ("--timeout", "0", "must be more than 0, got 0"),
    ],
)
def test_the_demo_refuses_a_bad_rate_or_timeout_before_it_starts_anything(
    option: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--no-console", option, value])
    assert exited.value.code == 2
    assert error_line(capsys) == f"fraudwatch demo: error: argument {option}: {says}"


def test_stack_down_of_a_stack_that_had_died_says_so_and_forgets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import infra.stack

    state_file = tmp_path / "stack.json"
    state_file.write_text(json.dumps({"pid": 4242, "endpoint": "http://127.0.0.1:9", "outputs": {}}))
    monkeypatch.setattr(infra.stack, "STATE_FILE", state_file)
    monkeypatch.setattr(infra.stack, "read_state", lambda: json.loads(state_file.read_text()))
    monkeypatch.setattr(infra.stack, "_ours", lambda pid: False)  # killed, crashed, or the machine restarted
    assert main(["stack", "down"]) == 0
    assert (
        capsys.readouterr().out.strip()
        == "the recorded stack (pid 4242) was not running; its record is removed"
    )
    assert not state_file.exists()


@pytest.mark.parametrize(
    "command", [["produce", "--put-times"], ["demo", "--report-json"], ["demo", "--alerts-log"]]
)
def test_a_file_written_after_the_run_is_checked_before_it(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        main([*command, str(tmp_path)])  # a directory: the put or the demo would be done, then lost
    assert exited.value.code == 2
    assert error_line(capsys).endswith(
        f"error: argument {command[-1]}: {tmp_path} is a directory, give a file"
    )
    fine = str(tmp_path / "new" / "out.json")  # its folder is made when written
    assert vars(build_parser().parse_args([*command, fine]))[command[-1][2:].replace("-", "_")] == fine


@pytest.mark.parametrize("code", ["night-spend", "rule:", "List:x"])
def test_cases_list_refuses_a_rule_filter_no_decision_could_carry(
    code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        main(["cases", "list", "--rule", code])
    assert exited.value.code == 2
    assert error_line(capsys).startswith(
        f"fraudwatch cases list: error: argument --rule: {code!r}: "
        "give a rule as rule:<id> or a list as list:<name>"
    )
    for fine in ("rule:night-spend", "list:review_categories"):
        assert build_parser().parse_args(["cases", "list", "--rule", fine]).rule == fine


def test_the_stacks_outputs_are_printed_in_one_column_however_long_their_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from infra.stack import print_endpoint

    print_endpoint("http://127.0.0.1:9", {"StreamName": "s", "MerchantProfilesTableName": "m"})
    rows = capsys.readouterr().out.splitlines()[2:]
    assert rows == ["  StreamName                 s", "  MerchantProfilesTableName  m"]


def test_the_demo_keeps_its_console_up_only_from_a_terminal_unless_told(capsys):
    import io

    from infra.demo import keeps_console

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert keeps_console(None, Terminal()) is True
    assert keeps_console(None, io.StringIO()) is False  # a script or CI: the demo ends after its report
    assert "--console keeps it up" in capsys.readouterr().out
    assert keeps_console(True, io.StringIO()) is True
    assert keeps_console(False, Terminal()) is False


@pytest.mark.parametrize("command", ["drift", "matured", "run-ops"])
@pytest.mark.parametrize(
    ("now", "says"),
    [
        ("yesterday", "not an ISO 8601 date-time: 'yesterday' (expected e.g. 2026-12-06T09:00:00Z)"),
        ("2026-12-06T09:00:00", "needs a UTC offset such as +00:00 or Z: '2026-12-06T09:00:00'"),
    ],
)
def test_a_models_now_that_is_no_instant_is_a_usage_error_naming_the_form_not_a_traceback(
    command: str, now: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["models", command, "--now", now])
    assert exited.value.code == 2
    line = error_line(capsys)
    assert line.startswith(f"fraudwatch models {command}: error: argument --now: {says}")
    assert line.endswith("(expected e.g. 2026-12-06T09:00:00Z)")


@pytest.mark.parametrize(
    ("command", "option", "value", "says"),
    [
        ("drift", "--windows", "0", "must be at least 1, got 0"),
        ("drift", "--windows", "two", "expected a whole number, got 'two'"),
        ("drift", "--window-seconds", "0", "must be at least 1, got 0"),
        ("drift", "--min-rows", "-5", "must be at least 1, got -5"),
        ("drift", "--settle-seconds", "-1", "must be at least 0, got -1"),
        ("matured", "--days", "-1", "must be at least 1, got -1"),
        ("matured", "--label-delay-days", "-1", "must be at least 0, got -1"),
        ("compare", "--label-delay-days", "nan", "expected a finite number, got nan"),
    ],
)
def test_a_models_count_below_one_or_a_negative_delay_is_a_usage_error_not_an_empty_report(
    command: str, option: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["models", command, option, value])
    assert exited.value.code == 2
    assert error_line(capsys) == f"fraudwatch models {command}: error: argument {option}: {says}"


@pytest.mark.parametrize("days", ["0", "-3", "31"])
def test_activity_refuses_days_outside_what_the_function_counts_at_parse_time(
    days: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["activity", "--days", days])
    assert exited.value.code == 2
    assert (
        error_line(capsys) == f"fraudwatch activity: error: argument --days: must be from 1 to 30, got {days}"
    )


@pytest.mark.parametrize(("given", "taken"), [("open", "open"), ("CLOSED", "closed"), ("Closed", "closed")])
def test_cases_list_takes_the_status_in_either_case_as_the_api_does(given: str, taken: str) -> None:
    from infra.cli import build_parser

    assert build_parser().parse_args(["cases", "list", "--status", given]).status == taken


@pytest.mark.parametrize(
    ("kind", "text", "says"),
    [
        (number_from(0), "-0.5", "must be at least 0, got -0.5"),
        (number_from(0, above=True), "0", "must be more than 0, got 0"),
        (number_from(0, 3650), "3651", "must be from 0 to 3650, got 3651"),
        (number_from(0), "inf", "expected a finite number, got inf"),
        (number_from(0), "two", "expected a number, got 'two'"),
        (port_number, "70000", "must be from 0 to 65535, got 70000"),
    ],
)
def test_the_number_types_say_what_they_take(kind, text, says):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(says)):
        kind(text)
    assert number_from(0, 3650)("3650") == 3650.0
    assert number_from(0, above=True)("0.25") == 0.25
