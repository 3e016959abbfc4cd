"""The backtest's replay on a Dask LocalCluster (1 and 2 workers) beside the single-process replay, at
1M and 10M rows: throughput, peak memory per worker, and how time grows from 1M to 10M rows.

Each size's history is generated once (timed) and written as `fraudwatch generate` writes it (one
Parquet file); then, on the same file:

- the single-process replay: `training.features.compute_features(workers=1)`, in a fresh child process
  that reads the file itself, so its peak memory is its own (the file's frame included);
- `--engine dask`'s replay (`training.distributed.engine.DaskEngine.features`) on a fresh LocalCluster
  of 1, then 2 worker processes: the workers read the file, check it, shuffle it by merchant and by
  user, replay, join, and the matrix comes back here; timed from submission to the matrix in hand
  (the cluster's start is not counted). Peak memory per worker is each worker process's peak RSS.

Every run's features are hashed: the cluster's must be the single process's, bit for bit (the run
fails otherwise). Figures are wall time on a shared machine: the load average is printed.

Run: .venv/bin/python -m bench.dask_backtest [--sizes 1000000 10000000] [--days 60]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench._common import machine, table
from fraudwatch.domain.features import DAY
from training.distributed.cluster import connect
from training.distributed.engine import DaskEngine
from training.features import compute_features
from training.generate import write_history
from training.io import read_transactions
from training.pipeline import generated_history

LABEL_DELAY = 7 * DAY
BUDGET_TX_PER_SECOND = 30_000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="rows (default 1M and 10M)"
    )
    parser.add_argument("--days", type=int, default=60, help="days of history (default 60)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="LocalCluster sizes (default 1 2)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    print(f"dask backtest replay: {', '.join(f'{n:,}' for n in args.sizes)} rows over {args.days} days")
    print(machine())
    rows: list[tuple[object, ...]] = []
    seconds: dict[tuple[int, str], float] = {}
    identical = True
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            path = Path(scratch) / f"history-{size}.parquet"
            started = time.perf_counter()
            write_history(generated_history(size, args.days, args.seed, progress=False), path)
            print(f"{size:,} rows generated and written in {time.perf_counter() - started:.1f} s", flush=True)
            single_seconds, single_rss, single_hash = _in_child(_single_replay, path)
            seconds[size, "single process"] = single_seconds
            rows.append(_row(size, "single process", single_seconds, [single_rss]))
            print(f"  single process: {single_seconds:.1f} s", flush=True)
            frame = read_transactions(path, labelled=True)
            for workers in args.workers:
                what = f"dask, {workers} worker{'s' if workers > 1 else ''}"
                replay_seconds, peaks, digest = _dask_replay(frame, path, workers)
                identical &= digest == single_hash
                seconds[size, what] = replay_seconds
                rows.append(_row(size, what, replay_seconds, peaks))
                print(f"  {what}: {replay_seconds:.1f} s, same bits: {digest == single_hash}", flush=True)
            del frame
    print()
    print(table(["rows", "replay", "wall s", "tx/s", "peak RSS per worker, GB"], rows))
    if len(args.sizes) > 1:
        small, large = min(args.sizes), max(args.sizes)
        growth = [
            (what, seconds[large, what] / seconds[small, what], large / small)
            for (size, what) in seconds
            if size == small and (large, what) in seconds
        ]
        print()
        print(table(["replay", f"time {large:,} / {small:,} rows", "rows ratio"], growth))
    print(f"features identical to the single process's, bit for bit: {identical}")
    print(f"load average now {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0 if identical else 1


def _row(size: int, what: str, seconds: float, peaks: list[float]) -> tuple[object, ...]:
    return (f"{size:,}", what, seconds, size / seconds, ", ".join(f"{peak:.2f}" for peak in peaks))


def _in_child[T](function: Callable[..., T], *args: object) -> T:
    """Run `function(*args)` in a fresh process (forkserver: none of this one's memory)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as pool:
        return pool.submit(function, *args).result()


def _single_replay(path: Path) -> tuple[float, float, str]:
    """The single-process replay of the file: seconds, this process's peak RSS (GB), the features' hash."""
    frame = read_transactions(path, labelled=True)
    started = time.perf_counter()
    matrix = compute_features(frame, check=False, label_delay=LABEL_DELAY, workers=1)
    return time.perf_counter() - started, _peak_rss_gb(), _digest(matrix.values)


def _dask_replay(frame, path: Path, workers: int) -> tuple[float, list[float], str]:
    """`--engine dask`'s replay on a fresh LocalCluster: seconds, each worker's peak RSS (GB), the hash."""
    with connect(None, workers=workers, say=lambda _: None) as client:
        engine = DaskEngine(client, history=str(path), say=lambda _: None)
        started = time.perf_counter()
        matrix = engine.features(frame, source=str(path), label_delay=LABEL_DELAY)
        replay_seconds = time.perf_counter() - started
        peaks = sorted(client.run(_peak_rss_gb).values())
    return replay_seconds, peaks, _digest(matrix.values)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: kilobytes


def _digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
