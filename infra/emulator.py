"""The embedded emulator: moto in server mode on 127.0.0.1, and boto3 clients that talk to an endpoint.

The server runs either in this process (a thread: cheapest, for a quick deploy check) or in a child
process (its own interpreter: the demo's handler and runner then do not share a GIL with the server,
and its state is its own; servers in one process share moto's global state, with each other and
with moto's in-process mocks, which reset it). Either way it listens on
a free port of 127.0.0.1 and is ready once an ordinary API call succeeds.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import boto3
from botocore.config import Config

from fraudwatch.errors import FraudwatchError

if TYPE_CHECKING:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    from moto.dynamodb.models.table import Table

REGION = "us-east-1"
# What moto and LocalStack accept; never used for an endpoint of None (real AWS keeps the user's profile).
# moto's dummy credentials, never a secret (bandit B105 takes any literal password-like value for one).
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # nosec B105
READY_PREFIX = "fraudwatch-emulator listening on "
START_TIMEOUT_S = 30.0


class EmulatorError(FraudwatchError):
    """The emulator did not start, or stopped answering."""


def boto_session(endpoint_url: str | None, region: str | None = None) -> boto3.Session:
    """A session for an endpoint: fake credentials for an emulator, the user's own for real AWS."""
    if endpoint_url is None:
        return boto3.Session(region_name=region) if region else boto3.Session()
    return boto3.Session(
        aws_access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
        region_name=region or REGION,
    )


_sessions: dict[tuple[str | None, str | None], boto3.Session] = {}
_sessions_lock = threading.Lock()


def client(service: str, endpoint_url: str | None, region: str | None = None, **config: Any) -> Any:
    """A boto3 client for one service at an endpoint (None: real AWS with the user's profile)."""
    settings: dict[str, Any] = {"retries": {"max_attempts": 5, "mode": "standard"}} | config
    # One session per endpoint: a session loads each service's model once, and creating clients
    # from one session is not thread-safe, hence the lock.
    with _sessions_lock:
        key = (endpoint_url, region)
        if key not in _sessions:
            _sessions[key] = boto_session(endpoint_url, region)
        return _sessions[key].client(
            service,  # type: ignore[call-overload]
            endpoint_url=endpoint_url,
            config=Config(**settings),
        )


def emulator_environment(endpoint_url: str, region: str = REGION) -> dict[str, str]:
    """Environment variables that point the AWS SDKs and CLI at an emulator."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


def is_healthy(endpoint_url: str, timeout: float = 2.0) -> bool:
    """True when the endpoint answers an ordinary API call (STS GetCallerIdentity)."""
    sts = client(
        "sts", endpoint_url, connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}
    )
    try:
        sts.get_caller_identity()
    except Exception:  # any failure to answer means "not healthy"; the caller reports it
        return False
    return True


def is_moto(endpoint_url: str, timeout: float = 2.0) -> bool:
    """True when the endpoint is a moto server (it serves its own dashboard under /moto-api/)."""
    try:
        with urllib.request.urlopen(f"{endpoint_url}/moto-api/", timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Emulator:
    """moto in server mode on 127.0.0.1 at a free port; a context manager that starts and stops it."""

    in_process: bool = False
    host: str = "127.0.0.1"
    port: int = 0
    endpoint_url: str = field(init=False, default="")
    _server: Any = field(init=False, default=None, repr=False)
    _process: subprocess.Popen[str] | None = field(init=False, default=None, repr=False)

    def start(self) -> Self:
        """Start the server and wait until it answers."""
        if self.in_process:
            self._start_thread()
        else:
            self._start_process()
        self._wait_healthy()
        return self

    def stop(self) -> None:
        """Stop the server; safe to call twice."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            if self._process.stdout:
                self._process.stdout.close()
            self._process = None

    @property
    def pid(self) -> int:
        """The process serving the endpoint (this one when in process)."""
        return self._process.pid if self._process else os.getpid()

    def healthy(self) -> bool:
        """True when the server answers an API call."""
        return bool(self.endpoint_url) and is_healthy(self.endpoint_url)

    def client(self, service: str, **config: Any) -> Any:
        """A boto3 client for one service on this emulator."""
        return client(service, self.endpoint_url, **config)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start_thread(self) -> None:
        from moto.server import ThreadedMotoServer

        _check_port(self.host, self.port)
        _quiet_request_log()
        tune_moto()
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"

    def _start_process(self) -> None:
        command = [sys.executable, "-m", "infra.emulator", "--host", self.host, "--port", str(self.port)]
        # The child's stderr is kept (not shown) so that a failed start can say why.
        errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed once the start is judged
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        with errors:
            line = _read_line(self._process, START_TIMEOUT_S)
            if not line.startswith(READY_PREFIX):
                self.stop()
                errors.seek(0)
                reason = errors.read().strip().splitlines()[-1:] or [repr(line)]
                raise EmulatorError(f"the emulator process did not start: {reason[0]}")
        self.endpoint_url = line.removeprefix(READY_PREFIX).strip()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise EmulatorError(
            f"the emulator at {self.endpoint_url} did not answer within {START_TIMEOUT_S:.0f} s"
        )


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The child's first line of output, or "" when it says nothing in time."""
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def _quiet_request_log() -> None:
    """Werkzeug logs every request to stderr; the demo's output is the report."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _check_port(host: str, port: int) -> None:
    """Fail now when the port is taken: moto's server thread would die and leave its start waiting."""
    if port == 0:
        return
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise EmulatorError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def serve(host: str, port: int) -> None:
    """Run moto in this process until SIGTERM or Ctrl-C; print the endpoint once listening."""
    from moto.server import ThreadedMotoServer

    _check_port(host, port)
    _quiet_request_log()
    tune_moto()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"{READY_PREFIX}http://{bound_host}:{bound_port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()


def tune_moto() -> None:
    """The emulator's changes to moto (a second call changes nothing): DynamoDB's writes one at a time,
    a failed transaction undone item by item (`atomic_transactions`), and moto's service modules listed
    once (`list_moto_modules_once`)."""
    atomic_transactions()
    list_moto_modules_once()


class _ModulesListedOnce:
    """moto's `list_of_moto_modules`, its names listed once (its package does not change while it runs)."""

    def __init__(self, listing: Callable[[], Iterable[str]]) -> None:
        self.__wrapped__ = listing
        self.names = tuple(listing())

    def __call__(self) -> tuple[str, ...]:
        return self.names


def list_moto_modules_once() -> None:
    """List moto's service modules once, not on every request.

    moto's server looks a request's service up among its modules with `list_of_moto_modules()`, which
    lists moto's package directory and stats its 180 entries, while holding the lock that every request
    takes. Listed once, the server's CPU a request fell from 1.4 to 1.1 ms for a BatchGetItem and from
    1.8 to 1.0 ms for an SQS GetQueueUrl (its host, sqs.<region>.amazonaws.com, names no module: every
    entry was stat'ed).
    """
    import moto.backends as backends

    if not isinstance(backends.list_of_moto_modules, _ModulesListedOnce):
        setattr(backends, "list_of_moto_modules", _ModulesListedOnce(backends.list_of_moto_modules))  # noqa: B010


class _NoTableCopyInTransactions:
    """Stands in for the `copy` module inside moto's DynamoDB models: while a TransactWriteItems runs
    on this thread, a deep copy of a table is the table itself (an `_ItemJournal` undoes a failed
    transaction instead); every other copy, such as update_item's of the item it changes, is real."""

    def __init__(self, module: Any, table_type: type) -> None:
        self._module = module
        self._table_type = table_type
        self._local = threading.local()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """While this thread runs a transaction."""
        self._local.running = True
        try:
            yield
        finally:
            self._local.running = False

    def deepcopy(self, obj: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(obj, self._table_type) and getattr(self._local, "running", False):
            return obj
        return self._module.deepcopy(obj, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


_KEY_OF_WRITE = {"Put": "Item", "Update": "Key", "Delete": "Key"}
"""Where each action of a TransactWriteItems that writes finds its item's key (a ConditionCheck writes
nothing)."""


class _ItemJournal:
    """The items a TransactWriteItems may write, as they were before it ran, to put back if it fails."""

    def __init__(self, backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        self._before: list[tuple[Table, DynamoType, DynamoType | None, Item | None]] = []
        for action in transact_items:
            if (key := _key_written(backend, action)) is not None:
                table, hash_key, range_key = key
                # A deep copy: update_item changes a stored item in place.
                item = copy.deepcopy(table.get_item(hash_key, range_key))
                self._before.append((table, hash_key, range_key, item))

    def restore(self) -> None:
        """Put each item back as it was, or remove it where there was none."""
        for table, hash_key, range_key, item in self._before:
            # moto's storage: {hash: item}, or {hash: {range: item}} for a table with a range key.
            items: dict[DynamoType, Any] = table.items if range_key is None else table.items[hash_key]
            key = hash_key if range_key is None else range_key
            if item is None:
                items.pop(key, None)
            else:
                items[key] = item


def _key_written(
    backend: DynamoDBBackend, action: dict[str, Any]
) -> tuple[Table, DynamoType, DynamoType | None] | None:
    """The table and key of the item an action of a transaction writes, found as moto finds them; None
    for a ConditionCheck, and for an action moto rejects before it writes (unknown table, a key missing
    or malformed): moto reports its own error for it."""
    from moto.core.exceptions import JsonRESTError

    try:
        kind, write = next(iter(action.items()))
        if kind not in _KEY_OF_WRITE:
            return None
        table = backend.get_table(write["TableName"])
        hash_key, range_key = backend.get_keys_value(table, write[_KEY_OF_WRITE[kind]])
    except (JsonRESTError, LookupError, TypeError, AttributeError, StopIteration):
        return None
    return table, hash_key, range_key


WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
"""The DynamoDB backend's writes (a BatchWriteItem is its puts and deletes), made one at a time by
`atomic_transactions`."""


def atomic_transactions() -> None:
    """Make moto's TransactWriteItems atomic among concurrent requests, and undo a failed one item by item.

    To roll a failed transaction back, moto deep-copies the whole table of every item before writing,
    and on a cancellation puts those copies back in place of the tables. Its server runs each request
    on a thread of its own with no lock around the backend, so a write that another request made to
    the same table meanwhile was lost with the rollback: the profiles' conditional writes (DESIGN.md,
    decision 6), from the stream and the API at once, lost an update now and then
    (tests/adapters/test_stores.py reproduces it). DynamoDB's transactions are atomic; here every write
    takes one lock, as DynamoDB's per-item serialisation would make it look from outside.

    No table copy: before the transaction, an `_ItemJournal` deep-copies the items it may write (or
    notes them absent), and puts them back if moto raises anything; moto's own copy of each table is the
    table itself. A transaction's cost then grows with its items, not with its tables, as DynamoDB's
    does (medians seen by a client of the emulator in its own process): 95 conditional puts on a table
    of 3,000 profiles took 50 ms with one copy of the table, 23 ms now, committed or cancelled; a
    transaction of one put on a table of 10,000 items 70 ms, now 3 ms, as long as a PutItem. A table's
    stream (none of ours has one) keeps the records of a cancelled transaction's writes, which moto's
    copy dropped.
    """
    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    if isinstance(getattr(models, "copy", None), _NoTableCopyInTransactions):
        return
    tables_uncopied = _NoTableCopyInTransactions(copy, Table)
    setattr(models, "copy", tables_uncopied)  # noqa: B010 - a module attribute its type does not know
    lock = threading.RLock()  # re-entrant: a transaction's puts call put_item

    def one_at_a_time(name: str) -> None:
        write = getattr(models.DynamoDBBackend, name)

        @functools.wraps(write)
        def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return write(self, *args, **kwargs)

        setattr(models.DynamoDBBackend, name, locked)

    transact = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        journal = _ItemJournal(self, transact_items)
        try:
            with tables_uncopied.transaction():
                transact(self, transact_items)
        except BaseException:
            journal.restore()
            raise

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    for name in WRITES:
        one_at_a_time(name)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the emulator's child process."""
    from infra.cli import port_number

    parser = argparse.ArgumentParser(description="moto in server mode (the embedded emulator)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=0, help="0: a free port")
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
