"""Path parameters of the HTTP API: the raw path keeps its percent-escapes, ids are validated once here."""

from __future__ import annotations

from urllib.parse import unquote

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
