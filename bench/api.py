"""The inline API, warm, on the embedded stack: POST /v1/transactions latency and throughput, ours vs naive.

Ours: `fraudwatch serve`'s server (infra/serve.py), each request an HTTP API (payload v2) event for the
real ScoringApiFunction handler (Powertools resolver, validation, `ScoringService.decide_one`: one
BatchGetItem, a PublishBatch for an alert, one TransactWriteItems of the decision and the conditional
profile, and the compiled model), 8 handler instances as 8 Lambda environments. Naive: a FastAPI
endpoint (a plain `def`, run on FastAPI's thread pool) served by uvicorn with its defaults (one worker,
keep-alive), that per request parses the body, GetItems the user's and the merchant's profiles, builds
a one-row pandas DataFrame and calls xgboost's scikit-learn `XGBClassifier.predict_proba`, PutItems the
decision and the profile, Publishes an alert (bench/naive_handler.py, the same tables of the same stack).

Both answer the same payments of their own users (shoppers' habits, the stream's: `Payments`), after a
warm-up that gives most users a profile. Latency is the client's (http.client, keep-alive),
request sent to answer read; throughput is requests over the wall time of a run; handler CPU is the
serving thread's CPU time (`time.thread_time`) inside the handler per request, AWS client work included,
the emulator's (its own process) not.

Both ways run the scoring path as the layer ships it, compiled by mypyc (the bench builds it into
build/compiled and runs itself again there, as bench/handler_cpu.py does); `--source` runs it from its
Python sources.

Run: .venv/bin/python -m bench.api   (--requests per client, --users, --seed, --source)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import inspect
import itertools
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request

from bench._common import (
    DOMAIN_BUILDS,
    REPO_ROOT,
    TRANSACTIONS_PER_USER_PER_DAY,
    TransactionStream,
    domain_build,
    machine,
    model_bundle,
    rerun_compiled,
    table,
)
from bench.naive_handler import NaiveHandler
from fraudwatch.domain.records import StreamRecord
from infra.serve import HOST, Containers, serving

CLIENTS = (1, 8)
CONTAINERS = 8
P99_BUDGET_MS = 50.0
CPU_BUDGET_MS = 2.0
THROUGHPUT_RATIO_BUDGET = 10.0
LOG_FILE = REPO_ROOT / ".fraudwatch" / "bench-api-handlers.log"
MAX_SPAN_S = 6 * 86400
"""The payments' time span at most: the API refuses a timestamp over 7 days old."""


@dataclass
class TimedContainers(Containers):
    """The server's handler instances, recording each request's CPU time inside the handler, and the
    part of it spent inside the AWS SDK's calls (building, signing, sending, parsing)."""

    cpu_ms: list[float] = field(default_factory=list)
    sdk_ms: list[float] = field(default_factory=list)
    call_ms: dict[str, list[float]] = field(default_factory=dict)
    """Wall time of each AWS call by operation (the emulator's time included)."""
    _local: threading.local = field(default_factory=threading.local)

    def __post_init__(self) -> None:
        for handler in list(self.idle.queue):
            service = inspect.unwrap(handler).__globals__["scoring"].service
            for client in {id(c): c for c in (service._profiles._client, service._alerts._client)}.values():
                client.meta.events.register("before-parameter-build", self._call_starts)
                client.meta.events.register("after-call", self._call_ends)

    def _call_starts(self, **_: Any) -> None:
        self._local.started = time.thread_time()
        self._local.wall = time.perf_counter()

    def _call_ends(self, model: Any, **_: Any) -> None:
        self._local.sdk = getattr(self._local, "sdk", 0.0) + time.thread_time() - self._local.started
        wall = (time.perf_counter() - self._local.wall) * 1000
        self.call_ms.setdefault(model.name, []).append(wall)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        self._local.sdk = 0.0
        started = time.thread_time()
        try:
            return super().invoke(event)
        finally:
            self.cpu_ms.append((time.thread_time() - started) * 1000)
            self.sdk_ms.append(self._local.sdk * 1000)


async def raw_body(request: Request) -> bytes:
    """The body as sent, for the naive handler to parse as it parses a record's data (a `bytes` Body
    parameter would not do: FastAPI parses a JSON content type into a dict first)."""
    return await request.body()


@contextlib.contextmanager
def naive_serving(naive: NaiveHandler, cpu_ms: list[float]) -> Iterator[str]:
    """The naive endpoint: POST /v1/transactions, one request on its own with its own calls, a FastAPI
    app served by uvicorn on a thread, as a default deployment runs it (one worker, keep-alive)."""
    sequence = itertools.count(1)
    app = FastAPI()

    @app.post("/v1/transactions")
    def score(body: Annotated[bytes, Depends(raw_body)]) -> dict[str, Any]:
        """A plain `def`, as a typical naive service writes it: FastAPI runs it on its thread pool."""
        started = time.thread_time()
        decision = naive.handle(StreamRecord("api", str(next(sequence)), body, time.time()))
        cpu_ms.append((time.thread_time() - started) * 1000)
        if decision is None:
            raise HTTPException(status_code=400, detail="invalid")
        return decision.to_dict()

    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="naive-uvicorn", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the naive way's uvicorn stopped before serving (its log says why)")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Payments:
    """Payments with shoppers' habits (`TransactionStream`: usual merchants, categories and amounts,
    about six a day each, 1 % card theft), as many as `count`, timed to end about an hour ago (the API
    takes timestamps up to 7 days old), for users of one way only (`prefix`)."""

    def __init__(self, prefix: str, users: int, seed: int, count: int) -> None:
        span = count * 86400.0 / (TRANSACTIONS_PER_USER_PER_DAY * users)
        if span > MAX_SPAN_S:
            raise SystemExit(
                f"{count} payments of {users} users span {span / 86400:.1f} days, over the API's 7: "
                "give more --users"
            )
        self._stream = TransactionStream(users, seed=seed, start=time.time() - span - 3600)
        self._prefix = prefix
        self._lock = threading.Lock()

    def next(self) -> bytes:
        with self._lock:
            ((body, _),) = self._stream.labelled(1)
        body["user_id"] = f"{self._prefix}-{body['user_id']}"
        body["transaction_id"] = f"{self._prefix}-{body['transaction_id']}"
        return json.dumps(body).encode()


@dataclass
class Run:
    latencies_ms: list[float]
    seconds: float
    statuses: set[int]

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds


def drive(url: str, payments: Payments, clients: int, per_client: int) -> Run:
    """`clients` threads, each posting `per_client` payments one after another on one connection."""
    address = urlsplit(url)

    def client() -> tuple[list[float], set[int]]:
        connection = http.client.HTTPConnection(address.hostname or HOST, address.port, timeout=60)
        latencies, statuses = [], set()
        for _ in range(per_client):
            body = payments.next()
            started = time.perf_counter()
            connection.request("POST", "/v1/transactions", body, {"content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            statuses.add(response.status)
        connection.close()
        return latencies, statuses

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(lambda _: client(), range(clients)))
    seconds = time.perf_counter() - started
    return Run([x for lat, _ in results for x in lat], seconds, set().union(*(s for _, s in results)))


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150, help="measured requests per client")
    parser.add_argument("--warmup", type=int, default=300, help="requests before measuring, per way")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--source",
        action="store_true",
        help="run the scoring path from its sources (default: compiled by mypyc, as the layer ships it)",
    )
    args = parser.parse_args(argv)
    if not args.source and domain_build() == "source":
        rerun_compiled("bench.api", sys.argv[1:] if argv is None else argv)

    from infra.deploy import deploy
    from infra.embedded import use_emulator_credentials
    from infra.emulator import Emulator
    from infra.invoke import function_environment

    bundle = model_bundle()
    print(f"machine: {machine()}")
    print(f"model: {bundle.origin}")
    print(f"domain: {DOMAIN_BUILDS[domain_build()]}", flush=True)
    with handler_output(), Emulator() as emulator:
        outputs = deploy(emulator.endpoint_url, stack_name="fraudwatch-bench-api")
        use_emulator_credentials(emulator.endpoint_url)
        loaded = Containers.load(outputs, emulator.endpoint_url, bundle.path, CONTAINERS)
        ours_cpu = TimedContainers(loaded.idle)
        env = {**function_environment(outputs, function="ScoringApiFunction"), "MODEL_DIR": str(bundle.path)}
        naive = NaiveHandler(env, bundle.path, emulator.endpoint_url)
        naive_cpu: list[float] = []
        count = args.warmup + args.requests * sum(CLIENTS)
        ours_payments = Payments("ours", args.users, args.seed, count)
        naive_payments = Payments("naive", args.users, args.seed, count)
        with serving(ours_cpu, log=False) as ours_url, naive_serving(naive, naive_cpu) as naive_url:
            drive(ours_url, ours_payments, 8, args.warmup // 8)
            drive(naive_url, naive_payments, 8, args.warmup // 8)
            rows = []
            results: dict[tuple[str, int], Run] = {}
            cpu: dict[tuple[str, int], list[float]] = {}
            calls: dict[int, dict[str, list[float]]] = {}
            sdk: dict[int, list[float]] = {}
            for clients in CLIENTS:
                for name, url, payments, spent in (
                    ("ours", ours_url, ours_payments, ours_cpu.cpu_ms),
                    ("naive", naive_url, naive_payments, naive_cpu),
                ):
                    spent.clear()
                    ours_cpu.sdk_ms.clear()
                    ours_cpu.call_ms = {}  # the calls of this run only
                    run = drive(url, payments, clients, args.requests)
                    if name == "ours":
                        calls[clients] = ours_cpu.call_ms
                        sdk[clients] = list(ours_cpu.sdk_ms)
                    results[(name, clients)] = run
                    cpu[(name, clients)] = list(spent)
                    rows.append(
                        (
                            name,
                            clients,
                            len(run.latencies_ms),
                            percentile(run.latencies_ms, 50),
                            percentile(run.latencies_ms, 99),
                            run.throughput,
                            statistics.median(spent),
                            statistics.fmean(spent),
                            ",".join(map(str, sorted(run.statuses))),
                        )
                    )
    headers = (
        "way",
        "clients",
        "requests",
        "p50 ms",
        "p99 ms",
        "req/s",
        "CPU ms p50",
        "CPU ms mean",
        "statuses",
    )
    print(table(headers, rows))
    ours_p99 = percentile(results[("ours", 1)].latencies_ms, 99)
    ours_cpu_mean = statistics.fmean(cpu[("ours", 1)])
    ratio = results[("ours", 8)].throughput / results[("naive", 8)].throughput
    for clients in CLIENTS:
        sdk_mean, cpu_mean = statistics.fmean(sdk[clients]), statistics.fmean(cpu[("ours", clients)])
        rest = cpu_mean - sdk_mean
        print(
            f"ours at {clients} client(s), CPU per request inside the AWS SDK's calls: {sdk_mean:.2f} ms "
            f"mean; the rest (routing, validation, features, model, logs, metrics): {rest:.2f} ms"
        )
    slowest = sorted(results[("ours", 1)].latencies_ms)[-5:]
    print(f"ours at one client, the 5 slowest requests (ms): {', '.join(f'{x:.0f}' for x in slowest)}")
    print("ours, AWS calls (wall ms, the emulator's time included):")
    print(
        table(
            ("clients", "operation", "calls", "p50", "p99", "max"),
            [
                (clients, op, len(ms), percentile(ms, 50), percentile(ms, 99), max(ms))
                for clients, by_operation in calls.items()
                for op, ms in sorted(by_operation.items())
                if len(ms) > 1
            ],
        )
    )
    print()
    print(
        f"p99 at one client: {ours_p99:.1f} ms (budget {P99_BUDGET_MS:.0f}): {_met(ours_p99, P99_BUDGET_MS)}"
    )
    print(
        f"handler CPU per request at one client: {ours_cpu_mean:.2f} ms mean (budget {CPU_BUDGET_MS:.0f}): "
        f"{_met(ours_cpu_mean, CPU_BUDGET_MS)}"
    )
    print(
        f"throughput at 8 clients: {ratio:.1f}x the naive way's (budget {THROUGHPUT_RATIO_BUDGET:.0f}x): "
        f"{'met' if ratio >= THROUGHPUT_RATIO_BUDGET else 'MISSED'}"
    )
    return 0


@contextlib.contextmanager
def handler_output() -> Iterator[None]:
    """The handlers' log lines and EMF metrics (stdout, as in Lambda) into a file while measuring."""
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    log = LOG_FILE.open("w")
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(log.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        log.close()
        print(f"(the handlers' logs and metrics: {LOG_FILE})")


def _met(value: float, budget: float) -> str:
    return "met" if value <= budget else "MISSED"


if __name__ == "__main__":
    raise SystemExit(main())
