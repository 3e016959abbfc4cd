"""The inline scoring API's routes: Powertools' HTTP API resolver, with its OpenAPI validation and schema.

The body of `POST /v1/transactions` is validated by the domain's own contract (`parse_event`, as a
stream record is), not by a second model: its schema below documents that contract for the OpenAPI
document. Query and path parameters are validated by Powertools; every refusal is a 400 naming the
field and the reason, never a traceback.

Statuses: 200 with the decision; 400 invalid (field, reason); 404 no such decision; 409 a transaction
id already decided for another user's payment; 413 a body over MAX_PAYLOAD_BYTES (the stream's own
record limit); 415 not `application/json`; 503 with Retry-After when the stores failed transiently (the
profile unchanged: asking again is safe).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC
from http import HTTPStatus
from typing import Annotated, Any, Protocol

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from fraudwatch.domain.cases import CaseService
from fraudwatch.domain.decision import DecisionRecord
from fraudwatch.domain.inline import InlineDecision, ScoringUnavailable
from fraudwatch.domain.ports import DecisionPage
from fraudwatch.domain.transaction import (
    CURRENCIES,
    FIELDS,
    MAX_AMOUNT,
    MAX_ID_CHARS,
    MAX_PAYLOAD_BYTES,
    parse_timestamp,
)
from fraudwatch.errors import InvalidRecordError, TransactionIdTaken
from fraudwatch.http_common import error_response as _error
from fraudwatch.http_common import is_json as _is_json
from fraudwatch.http_common import path_id as _path_id
from fraudwatch.observability import error_fields, logger

RETRY_AFTER_SECONDS = 1
DEFAULT_PAGE = 20
MAX_PAGE = 100
API_TITLE = "fraudwatch inline scoring"
API_VERSION = "1.0.0"


class Backend(Protocol):
    """What the routes need: deciding a posted transaction, and reading decisions back."""

    def decide(self, body: bytes) -> InlineDecision:
        """Decide a transaction's JSON body (InvalidRecordError, ScoringUnavailable)."""
        ...

    def decision(self, transaction_id: str) -> DecisionRecord | None:
        """A decision by transaction id (ScoringUnavailable)."""
        ...

    def user_decisions(self, user_id: str, since: str | None, limit: int, after: str | None) -> DecisionPage:
        """A user's decisions, newest first, from `since` (ISO 8601, UTC), after a page's cursor."""
        ...


# ---------------------------------------------------------------------------------------- documentation

_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": r"^\S+$"}
TRANSACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The transaction contract (DESIGN.md, Contracts); other keys are allowed and ignored.",
    "required": list(FIELDS),
    "properties": {
        "transaction_id": _ID,
        "user_id": _ID,
        "merchant_id": _ID,
        "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_AMOUNT},
        "currency": {"type": "string", "enum": sorted(CURRENCIES)},
        "timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601 with a UTC offset, at most an hour ahead and 7 days behind arrival.",
        },
        "category": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"},
    },
}
_REASON = {
    "type": "object",
    "properties": {
        "feature": {"type": "string"},
        "value": {"type": ["number", "null"]},
        "contribution": {"type": "number"},
    },
}
DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The decision contract: what the decisions table keeps and alerts carry.",
    "properties": {
        "transaction_id": {"type": "string"},
        "user_id": {"type": "string"},
        "merchant_id": {"type": "string"},
        "amount": {"type": "number"},
        "currency": {"type": "string"},
        "transaction_time": {"type": "string"},
        "decision": {"type": "string", "enum": ["APPROVED", "FLAGGED", "REJECTED"]},
        "score": {"type": "number"},
        "model_version": {"type": "string"},
        "thresholds": {
            "type": "object",
            "properties": {"flag": {"type": "number"}, "reject": {"type": "number"}},
        },
        "decided_at": {"type": "string"},
        "reasons": {"type": "array", "items": _REASON},
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "field": {"type": "string"},
        "reason": {"type": "string"},
    },
}


def _json(description: str, schema: dict[str, Any]) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_BAD = _json("Invalid: the field at fault and the reason", ERROR_SCHEMA)
_UNAVAILABLE: OpenAPIResponse = {
    **_json("The stores failed transiently; ask again after Retry-After seconds", ERROR_SCHEMA),
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
}
POST_RESPONSES: dict[int, OpenAPIResponse] = {
    200: _json("The decision, made now or (same transaction id) before", DECISION_SCHEMA),
    400: _BAD,
    409: _json(
        "The transaction id was decided for another user's payment: that decision is kept", ERROR_SCHEMA
    ),
    413: _json(f"The body is over {MAX_PAYLOAD_BYTES} bytes", ERROR_SCHEMA),
    415: _json("The body is not application/json", ERROR_SCHEMA),
    503: _UNAVAILABLE,
}
GET_RESPONSES: dict[int, OpenAPIResponse] = {
    200: _json("The decision", DECISION_SCHEMA),
    400: _BAD,
    404: _json("No decision for this transaction id", ERROR_SCHEMA),
    503: _UNAVAILABLE,
}
PAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decisions": {"type": "array", "items": DECISION_SCHEMA},
        "next": {"type": ["string", "null"], "description": "The cursor of the next page, if any"},
    },
}
LIST_RESPONSES: dict[int, OpenAPIResponse] = {
    200: _json("The user's decisions, newest first", PAGE_SCHEMA),
    400: _BAD,
    503: _UNAVAILABLE,
}


# ---------------------------------------------------------------------------------------------- the app


def build_app(
    backend: Backend,
    on_decision: Callable[[InlineDecision], None] | None = None,
    cases: CaseService | None = None,
) -> Any:
    """The resolver with the three routes, wired to `backend`; `on_decision` sees each decision made;
    with `cases`, the review cases' routes and console too (fraudwatch.cases_api)."""
    app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=_json_body)
    if cases is not None:
        from fraudwatch.cases_api import add_case_routes

        add_case_routes(app, cases)

    @app.post(
        "/v1/transactions",
        summary="Decide a transaction",
        description="Scores it against its user's profile, records the decision, raises the alert, exactly "
        "as a record on the stream would; the same transaction id again gets the same decision.",
        responses=POST_RESPONSES,
        openapi_extensions={
            "requestBody": {"required": True, "content": {"application/json": {"schema": TRANSACTION_SCHEMA}}}
        },
    )
    def post_transaction() -> Response[str]:
        if not _is_json(app.current_event.headers):
            return _error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type",
                "content-type",
                "send the transaction as application/json",
            )
        body = _body(app.current_event.body, bool(app.current_event.is_base64_encoded))
        if len(body) > MAX_PAYLOAD_BYTES:
            return _error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "payload too large",
                "payload",
                f"{len(body)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit",
            )
        decided = backend.decide(body)
        if on_decision is not None:
            on_decision(decided)
        return _ok(decided.decision.to_dict())

    @app.get(
        "/v1/decisions/<transaction_id>",
        summary="A decision by transaction id",
        responses=GET_RESPONSES,
    )
    def get_decision(
        transaction_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)],
    ) -> Response[str]:
        decision = backend.decision(_path_id(transaction_id, "transaction_id"))
        if decision is None:
            return _error(HTTPStatus.NOT_FOUND, "not found", "transaction_id", "no decision for this id")
        return _ok(decision.to_dict())

    @app.get(
        "/v1/users/<user_id>/decisions",
        summary="A user's decisions, newest first",
        description="Paginated: pass the answer's `next` as `cursor` for the next page.",
        responses=LIST_RESPONSES,
    )
    def get_user_decisions(
        user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)],
        since: Annotated[
            str | None, Query(description="ISO 8601 with a UTC offset: decided at or after")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="decisions per page")] = DEFAULT_PAGE,
        cursor: Annotated[str | None, Query(max_length=2048, description="`next` of the page before")] = None,
    ) -> Response[str]:
        user_id = _path_id(user_id, "user_id")
        since_utc = None if since is None else _since(since)
        page = backend.user_decisions(user_id, since_utc, limit, cursor)
        return _ok({"decisions": [d.to_dict() for d in page.decisions], "next": page.next})

    def invalid(exc: InvalidRecordError) -> Response[str]:
        return _error(HTTPStatus.BAD_REQUEST, "invalid", exc.field, exc.reason)

    def taken(exc: TransactionIdTaken) -> Response[str]:
        return _error(HTTPStatus.CONFLICT, "conflict", exc.field, exc.reason)

    def invalid_parameter(exc: RequestValidationError) -> Response[str]:
        first = exc.errors()[0] if exc.errors() else {}
        loc = tuple(first.get("loc", ()))
        if loc[:1] == ("body",) and not _is_json(app.current_event.headers):
            return unsupported_body()  # a form's fields are not what is wrong: its media type is
        # A body that is no JSON at all is located at ("body", <offset>): the field at fault is the body.
        location = [
            str(part) for part in loc if part not in ("query", "path", "body") and not isinstance(part, int)
        ]
        reason = str(first.get("msg") or first.get("type") or "invalid")
        where = ".".join(location) or ("body" if loc[:1] == ("body",) else "request")
        return _error(HTTPStatus.BAD_REQUEST, "invalid", where, reason)

    def unavailable(exc: ScoringUnavailable) -> Response[str]:
        logger.warning("stores unavailable", extra={"errors": [error_fields(e) for e in exc.errors]})
        response = _error(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "unavailable",
            "store",
            "the stores failed transiently; nothing was applied to the profile, ask again",
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    def unsupported_body(exc: RequestUnsupportedContentType | None = None) -> Response[str]:
        reason = "send the body as application/json"
        return _error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported media type", "content-type", reason)

    def no_route(exc: NotFoundError) -> Response[str]:
        event = app.current_event
        return _error(HTTPStatus.NOT_FOUND, "not found", "path", f"no route {event.http_method} {event.path}")

    app.exception_handler(InvalidRecordError)(invalid)
    app.exception_handler(TransactionIdTaken)(taken)
    app.exception_handler(RequestValidationError)(invalid_parameter)
    app.exception_handler(RequestUnsupportedContentType)(unsupported_body)
    app.exception_handler(ScoringUnavailable)(unavailable)
    app.not_found(no_route)
    return app


class _Unwired:
    """A backend for documenting the routes only: it decides nothing."""

    def decide(self, body: bytes) -> InlineDecision:
        raise NotImplementedError("documentation only")

    def decision(self, transaction_id: str) -> DecisionRecord | None:
        raise NotImplementedError("documentation only")

    def user_decisions(self, user_id: str, since: str | None, limit: int, after: str | None) -> DecisionPage:
        raise NotImplementedError("documentation only")


def openapi_document(app: Any = None) -> str:
    """The API's OpenAPI document, generated from the routes, with its IAM (SigV4) security scheme."""
    if app is None:
        from fraudwatch.cases_api import add_case_routes

        app = build_app(_Unwired())
        add_case_routes(app, None)
    from aws_lambda_powertools.event_handler.openapi.models import APIKey

    document: str = app.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description="Inline card-fraud decisions on fraudwatch's scoring core. Every route requires IAM "
        "authorisation: requests are signed with AWS Signature Version 4 (execute-api).",
        security_schemes={
            "sigv4": APIKey.model_validate(
                {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "AWS Signature Version 4 (IAM authorisation on the HTTP API)",
                    "x-amazon-apigateway-authtype": "awsSigv4",
                }
            )
        },
        security=[{"sigv4": []}],
    )
    parsed = json.loads(document)
    # Powertools documents its own 422 for parameter validation; here that is a 400 (invalid_parameter).
    for operations in parsed["paths"].values():
        for operation in operations.values():
            operation["responses"].pop("422", None)
    referenced = json.dumps(parsed["paths"])
    schemas = parsed.get("components", {}).get("schemas", {})
    while unused := [name for name in schemas if f"#/components/schemas/{name}" not in referenced]:
        for name in unused:
            del schemas[name]
        referenced = json.dumps([parsed["paths"], schemas])
    return json.dumps(parsed, indent=2, sort_keys=True) + "\n"


def _json_body(text: str) -> Any:
    """A request body's JSON, as Powertools reads it for the validated routes (the review cases');
    nested too deep for the parser, the body is invalid, not the function's RecursionError (a 500)."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise InvalidRecordError("body", "objects or arrays nested too deep") from exc


def _since(value: str) -> str:
    """The `since` parameter in UTC; a space where the offset's '+' was says how to send one."""
    try:
        return parse_timestamp(value, field="since").astimezone(UTC).isoformat()
    except InvalidRecordError as exc:
        if " " not in value:
            raise
        raise InvalidRecordError(
            "since", f"{exc.reason}: a '+' in a query string is a space, write it %2B (or the offset Z)"
        ) from exc


def _body(raw: str | None, is_base64: bool) -> bytes:
    if not raw:
        return b""
    if is_base64:
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error as exc:
            raise InvalidRecordError("payload", "not valid base64") from exc
    return raw.encode("utf-8", "surrogatepass")


def _ok(body: dict[str, Any]) -> Response[str]:
    return Response(
        status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON, body=json.dumps(body)
    )
