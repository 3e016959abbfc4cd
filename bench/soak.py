"""Soak: a long stream through the embedded stack, with the process's memory sampled as it goes.

The embedded stack is the real one: a moto server in its own process with template.yaml deployed on
it, the producer putting generated transactions on the stream while the local event-source runner
(the template's mapping settings) invokes the real handler in this process. Every `--sample-every`
batches the handler's process reports its resident memory (VmRSS from /proc/self/status) and the
throughput since the previous sample. The run is bounded in time: it stops at `--max-minutes`
whatever it has done, and says so.

Memory is flat when the resident set stops growing once the process is warm: the last quarter of the
samples should sit within a few MB of the second quarter's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bench._common import machine, model_bundle, table


@dataclass
class SoakResult:
    """What a soak did."""

    samples: list[Sample]
    produced: int
    delivered: int
    decided: int  # items in the decisions table
    stats: Any  # the runner's RunnerStats
    elapsed_s: float


@dataclass(frozen=True)
class Sample:
    """One reading: time since the start, records delivered so far, resident and peak memory."""

    elapsed_s: float
    records: int
    rss_mb: float
    peak_mb: float


def memory_mb() -> tuple[float, float]:
    """This process's resident set and its peak, in MB (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


class SampledHandler:
    """The real handler, with a memory reading every `every` invocations."""

    def __init__(self, handler: Any, every: int, delivered: Any) -> None:
        self._handler = handler
        self._every = every
        self._delivered = delivered
        self._calls = 0
        self._start = time.monotonic()
        self.samples: list[Sample] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        response = self._handler(event, context)
        self._calls += 1
        if self._calls % self._every == 0:
            self.sample(len(event["Records"]))
        return response

    def sample(self, in_flight: int = 0) -> None:
        """Record a reading now; `in_flight` records were just processed but not yet counted."""
        rss, peak = memory_mb()
        elapsed = time.monotonic() - self._start
        self.samples.append(Sample(elapsed, self._delivered() + in_flight, rss, peak))


def main(argv: Sequence[str] | None = None) -> int:
    """Deploy, produce and consume until done or out of time, then print the memory over time."""
    args = _parser().parse_args(argv)
    out = sys.stdout
    print("Soak: the embedded stack (moto server + template.yaml + runner + real handler)", file=out)
    print(f"machine: {machine()}", file=out)
    bundle = model_bundle()
    print(f"model:   {bundle.origin}", file=out)
    print(f"records: {args.records:,} at most, for {args.max_minutes:g} minutes at most\n", file=out)
    # The handler logs a line and flushes metrics per batch to stdout, as in Lambda: kept, then dropped.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        result = _soak(args, bundle.path)
    _report(out, args, result)
    return 0


def _soak(args: argparse.Namespace, bundle: Path) -> SoakResult:
    from tqdm import tqdm

    from infra.deploy import deploy
    from infra.emulator import Emulator, client, emulator_environment
    from infra.invoke import load_handler
    from infra.producer import live_transactions, produce
    from infra.runner import EventSourceRunner, MappingSettings

    with Emulator() as emulator:
        endpoint = emulator.endpoint_url
        outputs = deploy(endpoint, stack_name="fraudwatch-soak", parameters={"Stage": "soak"})
        overrides = emulator_environment(endpoint)
        handler = load_handler(outputs, bundle_dir=bundle, endpoint_url=endpoint, overrides=overrides)
        kinesis = client("kinesis", endpoint)
        settings = MappingSettings.from_template()
        runner: EventSourceRunner
        sampled = SampledHandler(handler, args.sample_every, lambda: runner.stats.records_delivered)
        runner = EventSourceRunner(
            stream_name=outputs["StreamName"],
            handler=sampled,
            settings=settings,
            kinesis=kinesis,
            sqs=client("sqs", endpoint),
            on_failure_queue_url=outputs["OnFailureQueueUrl"],
            poll_interval_s=0.05,
        )
        stop = threading.Event()
        produced: list[int] = []

        def producer() -> None:
            records = live_transactions(args.records, seed=args.seed)
            stats = produce(kinesis, outputs["StreamName"], records, progress=False, stop=stop)
            produced.append(stats.records_put)

        consumer = threading.Thread(target=runner.run, args=(stop,), name="runner")
        feeder = threading.Thread(target=producer, name="producer")
        started = time.monotonic()
        deadline = started + args.max_minutes * 60
        sampled.sample()
        consumer.start()
        feeder.start()
        with tqdm(total=args.records, unit="rec", desc="scored", file=sys.stderr) as bar:
            while time.monotonic() < deadline:
                done = runner.stats.records_delivered
                bar.update(done - bar.n)
                if produced and done >= produced[0]:
                    break
                time.sleep(1.0)
        stop.set()
        feeder.join()
        consumer.join()
        elapsed = time.monotonic() - started
        sampled.sample()
        table_name = outputs["DecisionsTableName"]
        decided = client("dynamodb", endpoint).describe_table(TableName=table_name)["Table"]["ItemCount"]
        stats = runner.stats
        return SoakResult(
            sampled.samples, produced[0] if produced else 0, stats.records_delivered, decided, stats, elapsed
        )


def _report(out: TextIO, args: argparse.Namespace, result: SoakResult) -> None:
    samples, produced, delivered, stats = result.samples, result.produced, result.delivered, result.stats
    elapsed = result.elapsed_s
    rows = []
    previous = samples[0]
    for sample in samples[1:]:
        window = sample.elapsed_s - previous.elapsed_s
        rate = (sample.records - previous.records) / window if window > 0 else 0.0
        rows.append((f"{sample.elapsed_s:.0f}", f"{sample.records:,}", f"{rate:.0f}", f"{sample.rss_mb:.1f}"))
        previous = sample
    print(table(["elapsed s", "records", "records/s", "RSS MB"], rows), file=out)
    finished = "all" if produced and delivered >= produced else "NOT all (time bound reached)"
    print(
        f"\n{delivered:,} records scored in {elapsed:.0f} s ({delivered / elapsed:.0f} records/s), "
        f"{finished} of the {produced or args.records:,} produced; decisions table: {result.decided:,} items",
        file=out,
    )
    print(
        f"runner: {stats.invocations} invocations, {stats.retries} retries, "
        f"{stats.records_sent_to_on_failure} records to the on-failure queue",
        file=out,
    )
    warm = samples[len(samples) // 4 : len(samples) // 2] or samples
    last = samples[-(len(samples) // 4 or 1) :]
    growth = max(s.rss_mb for s in last) - max(s.rss_mb for s in warm)
    print(
        f"memory: {samples[0].rss_mb:.1f} MB at start, peak {max(s.peak_mb for s in samples):.1f} MB; "
        f"last quarter vs second quarter: {growth:+.1f} MB",
        file=out,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records to produce (default 100,000)")
    parser.add_argument(
        "--max-minutes", type=float, default=10.0, help="stop after this long whatever is done (default 10)"
    )
    parser.add_argument(
        "--sample-every", type=int, default=25, help="batches between memory samples (default 25)"
    )
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
