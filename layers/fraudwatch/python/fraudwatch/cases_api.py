"""The review cases' routes on the HTTP API: `/v1/cases...` (JSON) and the console's pages (`/console`).

Same rules as the scoring routes (fraudwatch.http_api): IAM authorisation on every route when deployed,
parameters and bodies validated by Powertools (a 400 naming the field), 404 for no such case, 503 with
Retry-After when a store failed. Two more: 409 when someone else changed the case since it was read
(read it again), and 401 when the request carries no IAM identity: who assigned, commented or closed is
the caller API Gateway authenticated (`requestContext.authorizer.iam`), never a name the client sends.
A POST must be `application/json`, and one whose Origin is another site's is refused (403): a page
elsewhere cannot make an analyst's browser work a case.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field

from fraudwatch.domain.cases import (
    MAX_TEXT_CHARS,
    CaseConflict,
    CaseNotFound,
    CaseService,
    QueueFilter,
    status_of,
    verdict_of,
)
from fraudwatch.domain.transaction import MAX_ID_CHARS
from fraudwatch.errors import AwsCallError, InvalidRecordError
from fraudwatch.http_common import error_response as _error
from fraudwatch.http_common import is_json, path_id
from fraudwatch.observability import error_fields, logger

DEFAULT_PAGE = 20
MAX_PAGE = 100
RETRY_AFTER_SECONDS = 1
HTML = "text/html; charset=utf-8"


class _StrictBody(BaseModel):
    """A case route's body: JSON types as they are (`"yes"` is no boolean), and no field it does not
    know (a misspelt `blok` would otherwise be ignored)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class AssignBody(_StrictBody):
    """Who the case goes to."""

    assignee: str = Field(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^\S+$")


class CommentBody(_StrictBody):
    """A note for the case's history."""

    comment: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class CloseBody(_StrictBody):
    """The verdict, why, and whether to block the user (fraud only)."""

    verdict: Literal["fraud", "genuine"]
    reason: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    block: bool = False


_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "field": {"type": "string"}, "reason": {"type": "string"}},
}
_CASE = {"type": "object", "description": "A review case: the decision, the recent decisions, the history"}


def _json(description: str, schema: dict[str, Any]) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_COMMON: dict[int, OpenAPIResponse] = {
    400: _json("Invalid: the field at fault and the reason", _ERROR),
    401: _json("No IAM identity on the request", _ERROR),
    503: {
        **_json("A store failed transiently; ask again after Retry-After seconds", _ERROR),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}
CASE_RESPONSES: dict[int, OpenAPIResponse] = {
    200: _json("The case", _CASE),
    404: _json("No such case", _ERROR),
    **_COMMON,
}
CHANGE_RESPONSES: dict[int, OpenAPIResponse] = {
    **CASE_RESPONSES,
    200: _json("The case after the change (unchanged when it changed nothing)", _CASE),
    403: _json("Posted from another site's page (Origin)", _ERROR),
    409: _json("Someone else changed the case since it was read: read it again", _ERROR),
    415: _json("The body is not application/json", _ERROR),
}
_CLOSING = {
    "type": "object",
    "description": "The case after the change, and `block`: null, or what the close did to the user's "
    "entry on blocked_users (`outcome` added; lifted, the verdict now genuine and the entry this case's; "
    "kept, the entry someone else's) with a `message` saying so",
    "properties": {
        "block": {
            "type": ["object", "null"],
            "properties": {
                "list": {"type": "string"},
                "user": {"type": "string"},
                "outcome": {"type": "string", "enum": ["added", "lifted", "kept"]},
                "message": {"type": "string"},
            },
        }
    },
}
CLOSE_RESPONSES: dict[int, OpenAPIResponse] = {
    **CHANGE_RESPONSES,
    200: _json("The case after the change (unchanged when it changed nothing), and the block's", _CLOSING),
}
LIST_RESPONSES: dict[int, OpenAPIResponse] = {
    200: _json(
        "Cases oldest first, and the cursor of the next page",
        {
            "type": "object",
            "properties": {"cases": {"type": "array", "items": _CASE}, "next": {"type": ["string", "null"]}},
        },
    ),
    **_COMMON,
}

CaseId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)]
Filter = Annotated[str | None, Query(min_length=1, max_length=MAX_ID_CHARS)]
FormFilter = Annotated[str | None, Query(max_length=MAX_ID_CHARS)]
"""A console filter: its form sends the fields left empty, which filter nothing."""


def add_case_routes(app: APIGatewayHttpResolver, cases: CaseService | None) -> None:
    """The `/v1/cases` routes and the console's pages, on the API's resolver, working `cases` (None: the
    routes documented only, for the OpenAPI document)."""
    from fraudwatch import console

    def analyst() -> str:
        """The caller API Gateway authenticated: the last part of its IAM ARN (a user, a role session)."""
        context = app.current_event.raw_event.get("requestContext") or {}
        arn = ((context.get("authorizer") or {}).get("iam") or {}).get("userArn")
        if not arn:
            raise _Unauthenticated
        return str(arn).rsplit("/", 1)[-1]

    def check_post() -> None:
        """A POST must be JSON (a cross-site form cannot send that without a preflight) from this site."""
        headers = app.current_event.headers or {}
        if not is_json(headers):
            raise _Refused(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "content-type", "send the body as application/json"
            )
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != headers.get("host", ""):
            raise _Refused(HTTPStatus.FORBIDDEN, "origin", "posted from another site")

    def working() -> CaseService:
        if cases is None:
            raise NotImplementedError("documentation only")
        return cases

    def case_id_of(raw: str) -> str:
        return path_id(raw, "case_id")

    @app.get("/v1/cases", summary="Review cases, oldest first", responses=LIST_RESPONSES)
    def list_cases(
        status: Annotated[
            str,
            Query(
                max_length=6,
                description="open (the queue) or closed, in either case (open, OPEN); default open",
                json_schema_extra={"enum": ["open", "closed", "OPEN", "CLOSED"]},
            ),
        ] = "open",
        reason: Annotated[
            str | None, Query(max_length=64, description="a top reason's feature (a feature's name)")
        ] = None,
        rule: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=MAX_ID_CHARS,
                description="a rule or list code as decisions record them: rule:<id> or list:<name>",
            ),
        ] = None,
        merchant: Filter = None,
        assignee: Filter = None,
        user: Filter = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        cursor: Annotated[str | None, Query(max_length=2048, description="`next` of the page before")] = None,
    ) -> Response[str]:
        analyst()
        where = QueueFilter(reason, rule, merchant, status_of(status), assignee, user)
        page = working().queue(where, limit, cursor)
        return _ok({"cases": [c.to_dict() for c in page.cases], "next": page.next})

    @app.get("/v1/cases/<case_id>", summary="A review case", responses=CASE_RESPONSES)
    def get_case(case_id: CaseId) -> Response[str]:
        analyst()
        return _ok(working().show(case_id_of(case_id)).to_dict())

    @app.post("/v1/cases/<case_id>/assign", summary="Assign a case", responses=CHANGE_RESPONSES)
    def assign_case(case_id: CaseId, body: Annotated[AssignBody, Body()]) -> Response[str]:
        who = analyst()
        check_post()
        return _ok(working().assign(case_id_of(case_id), body.assignee, by=who).to_dict())

    @app.post("/v1/cases/<case_id>/comments", summary="Comment on a case", responses=CHANGE_RESPONSES)
    def comment_case(case_id: CaseId, body: Annotated[CommentBody, Body()]) -> Response[str]:
        who = analyst()
        check_post()
        return _ok(working().comment(case_id_of(case_id), body.comment, by=who).to_dict())

    @app.post(
        "/v1/cases/<case_id>/close",
        summary="Close a case with a verdict",
        description="Puts the verdict on the stream as a label (its merchant's risk learns from it); "
        "`block` puts the user on blocked_users (fraud only). The same verdict again changes nothing; "
        "another verdict is recorded in the history with who and when. A verdict changed to genuine lifts "
        "the block this case put on the user (recorded in the history); an entry someone else put there "
        "stays, and `block.message` says how to lift it.",
        responses=CLOSE_RESPONSES,
    )
    def close_case(case_id: CaseId, body: Annotated[CloseBody, Body()]) -> Response[str]:
        who = analyst()
        check_post()
        verdict = verdict_of(body.verdict)
        closing = working().close(case_id_of(case_id), verdict, body.reason, by=who, block=body.block)
        return _ok(closing.to_dict())

    @app.get("/console", include_in_schema=False)
    def console_queue(
        reason: FormFilter = None, rule: FormFilter = None, merchant: FormFilter = None
    ) -> Response[str]:
        who = analyst()
        try:
            where = QueueFilter(reason=reason or None, rule=rule or None, merchant=merchant or None)
        except InvalidRecordError as exc:
            return invalid_page("Not a filter", exc)
        cursor = (app.current_event.query_string_parameters or {}).get("cursor")
        return _page(console.queue_page(working().queue(where, MAX_PAGE // 2, cursor), where, who))

    @app.get("/console/cases/<case_id>", include_in_schema=False)
    def console_case(case_id: str) -> Response[str]:
        who = analyst()
        try:
            valid_id = case_id_of(case_id)
        except InvalidRecordError as exc:
            return invalid_page("Not a case id", exc)
        return _page(console.case_page(working().show(valid_id), who))

    def invalid_page(title: str, exc: InvalidRecordError) -> Response[str]:
        """A page's bad input as a page, as a missing case is (the JSON routes answer a JSON 400)."""
        return _page(console.error_page(400, title, f"{exc.field}: {exc.reason}"), HTTPStatus.BAD_REQUEST)

    def is_page() -> bool:
        return str(app.current_event.path).startswith("/console")

    def not_found(exc: CaseNotFound) -> Response[str]:
        if is_page():
            return _page(console.error_page(404, "No such case", str(exc)), HTTPStatus.NOT_FOUND)
        return _error(HTTPStatus.NOT_FOUND, "not found", "case_id", "no case with this id")

    def conflict(exc: CaseConflict) -> Response[str]:
        return _error(HTTPStatus.CONFLICT, "conflict", "version", str(exc))

    def refused(exc: _Refused) -> Response[str]:
        return _error(exc.status, "refused", exc.field, exc.reason)

    def unauthenticated(exc: _Unauthenticated) -> Response[str]:
        return _error(HTTPStatus.UNAUTHORIZED, "unauthenticated", "authorization", "no IAM identity")

    def unavailable(exc: AwsCallError) -> Response[str]:
        logger.warning("case stores unavailable", extra={"errors": [error_fields(exc)]})
        response = _error(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", "store", "a store failed; ask again")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    app.exception_handler(CaseNotFound)(not_found)
    app.exception_handler(CaseConflict)(conflict)
    app.exception_handler(_Refused)(refused)
    app.exception_handler(_Unauthenticated)(unauthenticated)
    app.exception_handler(AwsCallError)(unavailable)


class _Unauthenticated(Exception):
    """The request carries no IAM identity."""


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.status, self.field, self.reason = status, field, reason


def _ok(body: dict[str, Any]) -> Response[str]:
    return Response(
        status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON, body=json.dumps(body)
    )


def _page(html: str, status: HTTPStatus = HTTPStatus.OK) -> Response[str]:
    from fraudwatch.console import HEADERS

    return Response(status_code=status, content_type=HTML, body=html, headers=dict(HEADERS))
