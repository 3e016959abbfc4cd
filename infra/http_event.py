"""HTTP requests as API Gateway HTTP API events (payload format 2.0), as the API hands them to Lambda.

What `sam local start-api` builds for a function behind an `AWS::Serverless::HttpApi`: the raw path and
query string, lower-cased headers, cookies apart, the body as text (base64 when it is not UTF-8), and
a request context with the route key, the method, the path and the source IP.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

API_ID = "local"
STAGE = "$default"


def http_api_event(
    method: str,
    raw_path: str,
    *,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    source_ip: str = "127.0.0.1",
    caller: str | None = None,
) -> dict[str, Any]:
    """One request as the payload-v2 event API Gateway would send the function; `caller`, an IAM ARN, is
    the identity its IAM authoriser would have verified (`requestContext.authorizer.iam`)."""
    lowered: dict[str, str] = {}
    for name, value in (headers or {}).items():
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    cookies = [c.strip() for c in lowered.pop("cookie", "").split(";") if c.strip()]
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": lowered.get("host", "localhost"),
            "domainPrefix": "localhost",
            "http": {
                "method": method.upper(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": STAGE,
            "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if caller is not None:
        account = caller.split(":")[4] if caller.count(":") >= 5 else event["requestContext"]["accountId"]
        event["requestContext"]["authorizer"] = {
            "iam": {"accountId": account, "callerId": caller.rsplit("/", 1)[-1], "userArn": caller}
        }
    if cookies:
        event["cookies"] = cookies
    if parameters:
        event["queryStringParameters"] = parameters
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event
