"""The Dask cluster the backtest and training run on: a scheduler's address, or a LocalCluster here.

Long work on the cluster goes through `run`, which shows Dask's own progress bar and turns a lost
worker into a `ClusterError` that says what was lost and what to do, instead of a traceback from
inside the scheduler.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from distributed import Client, LocalCluster, progress, wait
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from fraudwatch.errors import FraudwatchError

LOCAL_WORKERS = 2
"""Workers of a LocalCluster: one per core of these machines."""


class ClusterError(FraudwatchError):
    """The cluster could not do the work: a worker was lost, or the scheduler cannot be reached."""


@contextmanager
def connect(
    scheduler: str | None,
    *,
    workers: int = LOCAL_WORKERS,
    say: Callable[[str], None] = print,
    timeout: str = "30s",
) -> Iterator[Client]:
    """A client of the scheduler at `scheduler`, or of a LocalCluster of `workers` processes; closed after.

    LocalCluster workers are processes of one thread each: the replay is pure Python and holds the
    GIL, so threads would not share it. The dashboard takes a free port (three engineers share these
    machines); its link is said either way. A scheduler not reached within `timeout` is a ClusterError.
    """
    if scheduler is None:
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            say(f"dask: a LocalCluster of {workers} workers; dashboard {client.dashboard_link}")
            yield client
        return
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    with client:
        workers_now = len(client.scheduler_info(n_workers=-1)["workers"])
        say(f"dask: scheduler {scheduler}, {workers_now} workers; dashboard {client.dashboard_link}")
        yield client


def run(client: Client, collection: Any, what: str, *, show_progress: bool = False) -> Any:
    """Persist a Dask collection on the cluster, with Dask's progress bar, and return the persisted one.

    A worker lost while holding or computing a part (its process killed, out of memory) is retried
    on the others by Dask; when the same part has killed `distributed.scheduler.allowed-failures`
    workers, or the scheduler is gone, this raises ClusterError naming `what`.
    """
    with lost_workers(what):
        persisted = client.persist(collection)
        if show_progress:
            progress(persisted)
            sys.stdout.write("\n")
        wait(persisted)
        # Raise the first failure here, not when the result is read.
        for future in client.futures_of(persisted):
            if future.status == "error":
                future.result()
    return persisted


def gather(client: Client, collection: Any, what: str) -> Any:
    """Compute a Dask collection (or a list of them) and bring the result here (ClusterError as in `run`)."""
    with lost_workers(what):
        return client.gather(client.compute(collection))


@contextmanager
def lost_workers(what: str) -> Iterator[None]:
    """Say which work a lost worker or scheduler took down."""
    try:
        yield
    except KilledWorker as exc:
        raise ClusterError(
            f"{what}: a worker was lost while computing a part ({exc.task!r}), on "
            f"{exc.allowed_failures + 1} workers in a row (the last {exc.last_worker.address}); a "
            "worker's memory limit (its log says 'memory') is the usual cause: give workers more memory "
            "or the history more partitions"
        ) from exc
    except CommClosedError as exc:
        raise ClusterError(f"{what}: the connection to the Dask scheduler was lost ({exc})") from exc
