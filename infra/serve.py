"""`fraudwatch serve`: the inline API on 127.0.0.1, each request handed to the real Lambda handler.

What `sam local start-api` does, without Docker: every HTTP request becomes an API Gateway HTTP API
event (payload format 2.0, `infra.http_event`) for the real `ScoringApiFunction` handler, loaded in
this process with the template's own environment, against the embedded stack (a detached `fraudwatch
stack up`, or an emulator and deploy of its own). Its answer goes back as the HTTP response.

Like Lambda, one handler instance serves one request at a time: `--containers` instances (each its own
cold start) serve that many requests at once. Signatures are not checked (the deployed API checks
IAM, SigV4): the server listens on 127.0.0.1 only, and stands in for the IAM authoriser by handing
every request the identity of the user who runs it (`LOCAL_CALLER`: whoever can reach loopback here
is that user), which is who the review cases record as assigning and closing (docs/cases.md). `GET
/openapi.json` returns the API's OpenAPI document, generated from the code; `/console` is the
analysts' console.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import queue
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.http_event import http_api_event
from infra.invoke import DEFAULT_BUNDLE, Handler, LocalContext, load_handler
from infra.state import add_stack_options
from infra.template import REPO_ROOT

HOST = "127.0.0.1"
DEFAULT_PORT = 3000
FUNCTION = "ScoringApiFunction"
MAX_BODY_BYTES = 10 * 1024 * 1024
"""API Gateway's own limit on a request body: beyond it the API answers 413 without calling Lambda."""
OPENAPI_PATH = "/openapi.json"
OPENAPI_FILE = REPO_ROOT / "docs" / "openapi.json"
CONSOLE_PATH = "/console"
LOCAL_CALLER = f"arn:aws:iam::123456789012:user/{getpass.getuser()}"
"""The IAM identity of every local request: the user running the server."""


@dataclass
class Containers:
    """Loaded handlers, each serving one request at a time, as Lambda's execution environments do.

    The one idle longest waits longest: a request goes to the handler that last finished one (a stack),
    so that one client's requests, one after another, all meet the same warm handler, as one Lambda
    environment serves them, instead of touching every handler's objects in turn.
    """

    idle: queue.Queue[Handler]

    @classmethod
    def load(
        cls,
        outputs: Mapping[str, str],
        endpoint_url: str | None,
        bundle: Path,
        count: int,
        environment: Mapping[str, str] | None = None,
    ) -> Containers:
        """`count` cold starts of the real handler; `environment` overrides the template's variables."""
        from infra.emulator import emulator_environment

        overrides = {**(emulator_environment(endpoint_url) if endpoint_url else {}), **(environment or {})}
        return cls.of(
            load_handler(
                outputs, bundle_dir=bundle, endpoint_url=endpoint_url, overrides=overrides, function=FUNCTION
            )
            for _ in range(count)
        )

    @classmethod
    def of(cls, handlers: Iterable[Handler]) -> Containers:
        """These handlers, the last one first."""
        idle: queue.Queue[Handler] = queue.LifoQueue()
        for handler in handlers:
            idle.put(handler)
        return cls(idle)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Run one event on an idle handler (waiting for one)."""
        handler = self.idle.get()
        try:
            return handler(event, LocalContext(function_name=FUNCTION, timeout_ms=10_000))
        finally:
            self.idle.put(handler)


def make_server(
    containers: Containers, port: int = DEFAULT_PORT, *, log: bool = True, host: str = HOST
) -> ThreadingHTTPServer:
    """The HTTP server on `host`:`port` (0: a free one), not yet serving; `log`: a line per request."""
    from fraudwatch.http_api import openapi_document

    document = openapi_document().encode()

    class Request(BaseHTTPRequestHandler):
        server_version = "fraudwatch-serve"
        protocol_version = "HTTP/1.1"
        # An answer is two writes (the head, then the body): with Nagle's algorithm the body waits for
        # the client's delayed ACK of the head, 40 ms on Linux, on every request of a kept-alive
        # connection (bench/api.py saw a p50 of 52 ms for 12 ms of calls and 4 ms of CPU).
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            if urlsplit(self.path).path == OPENAPI_PATH:
                self._send(HTTPStatus.OK, {"content-type": "application/json"}, document)
                return
            self._invoke()

        def do_POST(self) -> None:
            self._invoke()

        def do_PUT(self) -> None:
            self._invoke()

        def do_DELETE(self) -> None:
            self._invoke()

        def do_PATCH(self) -> None:
            self._invoke()

        # Every method goes to the function, as API Gateway routes them (none of the API's routes is a
        # HEAD or an OPTIONS one: its resolver answers them 404), never the standard library's HTML 501.
        def do_HEAD(self) -> None:
            self._invoke()

        def do_OPTIONS(self) -> None:
            self._invoke()

        def _invoke(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._send(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    {"content-type": "application/json"},
                    b'{"message":"Request Entity Too Large"}',
                )
                return
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            event = http_api_event(
                self.command,
                url.path,
                query=url.query,
                headers=dict(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                caller=LOCAL_CALLER,
            )
            try:
                response = containers.invoke(event)
            except Exception:  # the function failed: answer as API Gateway does, log it as Lambda would
                traceback.print_exc()
                self._send(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    {"content-type": "application/json"},
                    b'{"message":"Internal Server Error"}',
                )
                return
            payload = response.get("body") or ""
            data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
            headers = dict(response.get("headers") or {})
            self._send(
                HTTPStatus(int(response.get("statusCode", 200))), headers, data, response.get("cookies")
            )

        def _send(
            self,
            status: HTTPStatus,
            headers: Mapping[str, str],
            data: bytes,
            cookies: list[str] | None = None,
        ) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            for cookie in cookies or []:
                self.send_header("set-cookie", cookie)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":  # a HEAD answer is the head alone: a body would be read as the next
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """One line per request on stderr: method, path, status (no bodies, no query values)."""
            if not log:
                return
            sys.stderr.write(
                f"{self.command} {urlsplit(self.path).path} {args[1] if len(args) > 1 else ''}\n"
            )

    server = ThreadingHTTPServer((host, port), Request)
    server.daemon_threads = True
    return server


@contextlib.contextmanager
def serving(containers: Containers, port: int = 0, *, log: bool = True) -> Iterator[str]:
    """Serve in a background thread; yields the base URL; stops on exit."""
    server = make_server(containers, port, log=log)
    thread = threading.Thread(target=server.serve_forever, name="fraudwatch-serve", daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _serve(args: argparse.Namespace) -> int:
    from fraudwatch.errors import UsageError
    from infra.state import read_stack_outputs, stack_endpoint

    outputs = read_stack_outputs(Path(args.outputs))
    endpoint = args.endpoint or stack_endpoint(Path(args.outputs))
    with contextlib.ExitStack() as stack:
        try:
            if not outputs:
                outputs, endpoint = stack.enter_context(_own_stack(args.stack_name))
            elif endpoint:
                from infra.embedded import use_emulator_credentials

                use_emulator_credentials(endpoint)
            containers = Containers.load(outputs, endpoint, Path(args.bundle), args.containers)
            server = make_server(containers, args.port, host=args.host)
        except (OSError, KeyError) as exc:
            raise UsageError(f"{exc}; check --port, --bundle and --outputs") from exc
        url = f"http://{args.host}:{server.server_address[1]}"
        print(f"the inline API on {url} ({args.containers} handler(s), stack on {endpoint or 'AWS'})")
        print(f"  curl -s {url}/v1/decisions/<transaction_id>   (more in the README; {url}{OPENAPI_PATH})")
        print(f"  the analysts' console: {url}{CONSOLE_PATH}")
        print("Ctrl-C stops it", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


@contextlib.contextmanager
def _own_stack(stack_name: str) -> Iterator[tuple[dict[str, str], str]]:
    """An emulator and the template deployed on it, for as long as the server runs."""
    from infra.deploy import deploy
    from infra.embedded import use_emulator_credentials
    from infra.emulator import Emulator

    print("no running stack recorded: starting the embedded one (emulator + deploy)", file=sys.stderr)
    with Emulator(in_process=True) as emulator:
        outputs = deploy(emulator.endpoint_url, stack_name=stack_name, progress=True)
        use_emulator_credentials(emulator.endpoint_url)
        yield outputs, emulator.endpoint_url


def _openapi(args: argparse.Namespace) -> int:
    from fraudwatch.errors import UsageError
    from fraudwatch.http_api import openapi_document

    document = openapi_document()
    if args.out == "-":
        sys.stdout.write(document)
        return 0
    try:
        Path(args.out).write_text(document)
    except OSError as exc:
        raise UsageError(f"cannot write {args.out} ({exc.strerror}), check --out") from exc
    print(f"wrote {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `serve` (the Docker-free `sam local start-api`) and `openapi` (the API's document)."""
    from infra.cli import port_number

    parser = subparsers.add_parser(
        "serve",
        help="the inline scoring API and the analysts' console on 127.0.0.1, on the real handler (no Docker)",
        description="Serve the inline API on 127.0.0.1: each request runs the real ScoringApiFunction "
        "handler as an HTTP API (payload v2) event, against the stack `fraudwatch stack up --detach` "
        "recorded, or an embedded stack of its own. The analysts' console is at /console (docs/cases.md).",
    )
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument(
        "--host",
        default=HOST,
        help=f"address to listen on (default {HOST}); the server checks no signature, so listen beyond "
        "loopback only inside a container whose port is published to the host's loopback (infra/docker)",
    )
    parser.add_argument(
        "--containers", type=int, default=4, help="handler instances, one request each at a time"
    )
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="model bundle directory")
    parser.add_argument("--stack-name", default="fraudwatch", help="stack name when deploying its own")
    add_stack_options(parser)
    parser.set_defaults(run=_serve)
    doc = subparsers.add_parser(
        "openapi",
        help="write the inline API's OpenAPI document (generated)",
        description="Write the inline API's OpenAPI document, generated from the routes' code.",
    )
    doc.add_argument(
        "--out",
        default=str(OPENAPI_FILE),
        help="a file, or - for stdout (default: the project's docs/openapi.json, which the tests compare)",
    )
    doc.set_defaults(run=_openapi)
