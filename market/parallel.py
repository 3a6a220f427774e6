"""One way to spread independent tasks (stock-days, partitions) over cores or a cluster: in this
process, in a process pool, or as Ray tasks. Generation and validation both map through it, so
``--jobs`` and ``--ray-address`` mean the same thing everywhere."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class TaskRunner:
    """Maps a picklable function over tasks, results in task order. ``ray_address``: a cluster's
    address, or "local" to start a private local instance; else ``jobs`` processes (1: in process).
    Use it as a context manager, or call :meth:`close`."""

    def __init__(self, jobs: int, ray_address: str | None = None) -> None:
        self._pool = self._ray = None
        self._owns_ray = False
        self._remote: dict[Callable, object] = {}
        if ray_address:
            import ray

            self._ray = ray
            self._owns_ray = ray_address == "local" and not ray.is_initialized()
            if self._owns_ray:
                ray.init(num_cpus=max(jobs, 1), include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
        elif jobs > 1:
            from concurrent.futures import ProcessPoolExecutor

            # the platform's default start (fork on Linux): a worker starts with the libraries the
            # parent loaded, in well under a second, and a user's script needs no __main__ guard
            self._pool = ProcessPoolExecutor(max_workers=jobs)

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        if self._ray is not None:
            remote = self._remote.setdefault(fn, self._ray.remote(fn))
            return (self._ray.get(ref) for ref in [remote.remote(t) for t in tasks])
        if self._pool is not None:
            return self._pool.map(fn, tasks, chunksize=1)
        return map(fn, tasks)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        if self._ray is not None and self._owns_ray:
            self._ray.shutdown()

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
