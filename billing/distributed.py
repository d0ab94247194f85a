"""Billing partitions on a Dask cluster (dask.distributed): the same meter-range partitions, the same kernels.

``address`` is a scheduler address (``tcp://host:8786``, as ``dask scheduler`` prints) or ``"local"`` for a
LocalCluster on this machine. Every worker must reach the database with the connection string the run was given
(the billing role's, carried in each partition job: each partition reads its own meters' readings with binary COPY
and writes its own daily rows), and have this
project installed (the same version as the client: Dask pickles the partition jobs by reference to
``billing.run._run_partition``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

J = TypeVar("J")
R = TypeVar("R")

LOCAL = "local"
LOCAL_WORKERS = 2  # one per core of the 2-core reference machine; a real cluster brings its own


def run_on_dask(fn: Callable[[J], R], jobs: Sequence[J], address: str) -> Iterator[tuple[int, R]]:
    """(job index, result) as the cluster finishes each job; a failed job raises its exception here."""
    from distributed import Client, LocalCluster, as_completed

    cluster: Any = None
    if address == LOCAL:
        cluster = LocalCluster(n_workers=LOCAL_WORKERS, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        futures = client.map(fn, list(jobs), pure=False)
        index = {f.key: k for k, f in enumerate(futures)}
        for future in as_completed(futures):
            yield index[future.key], future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
