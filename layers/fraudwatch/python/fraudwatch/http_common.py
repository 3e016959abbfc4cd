"""What the HTTP API's routes share (the scoring routes and the cases'): path parameters (the raw path
keeps its percent-escapes, ids are validated once here), the JSON media type and the error body."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types

from fraudwatch.domain.transaction import id_problem
from fraudwatch.errors import InvalidRecordError


def path_id(value: str, field: str) -> str:
    """A path parameter as the id it encodes (the raw path keeps its percent-escapes), validated."""
    try:
        decoded = unquote(value, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidRecordError(field, "percent-escapes that are not UTF-8") from exc
    problem = id_problem(decoded)
    if problem is not None:
        raise InvalidRecordError(field, problem)
    return decoded


def is_json(headers: Mapping[str, str] | None) -> bool:
    """Whether a request says its body is JSON (a charset may follow)."""
    content_type = (headers or {}).get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == content_types.APPLICATION_JSON


def error_response(status: HTTPStatus, error: str, field: str, reason: str) -> Response[str]:
    """An error as every route answers one: what went wrong, the field at fault and why."""
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"error": error, "field": field, "reason": reason}),
        headers={},
    )
