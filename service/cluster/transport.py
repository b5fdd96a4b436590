"""How the router reaches its shards: ``Shards`` sends a method call to a shard's writer, or to
one of its readers, and many calls at once (a scatter). Two implementations: ``LocalShards``
runs the ShardServices in this process (one machine, no Ray: development and the fast tests of
the sharding logic), ``RayShards`` (ray_app.py) calls Ray actors and Serve replicas.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ..errors import Unavailable

Call = tuple[int, str, tuple]  # (shard, method, args)


class ShardUnavailable(Unavailable):
    """No replica of a shard answered (all dead, or restarting): the search cannot be complete.
    Answered 503 naming the shard — never a silently partial result."""

    def __init__(self, shard: int, what: str):
        super().__init__(f"shard {shard} is unavailable ({what}); retry shortly — its replicas "
                         "are restarted automatically")
        self.shard = shard


class Shards(Protocol):
    count: int

    def write(self, shard: int, method: str, *args) -> Any: ...

    def write_many(self, calls: list[Call]) -> list: ...

    def read_many(self, calls: list[Call]) -> list: ...

    def close(self) -> None: ...


class LocalShards:
    """ShardServices in this process: a writer and one reader per shard directory."""

    def __init__(self, writers: list, readers: list):
        self.count = len(writers)
        self.writers, self.readers = writers, readers
        self._pool = ThreadPoolExecutor(max_workers=max(2, self.count), thread_name_prefix="lsr-shard")

    def write(self, shard: int, method: str, *args) -> Any:
        return getattr(self.writers[shard], method)(*args)

    def _many(self, services, calls: list[Call]) -> list:
        if len(calls) == 1:
            s, m, a = calls[0]
            return [getattr(services[s], m)(*a)]
        futures = [self._pool.submit(getattr(services[s], m), *a) for s, m, a in calls]
        return [f.result() for f in futures]

    def write_many(self, calls: list[Call]) -> list:
        return self._many(self.writers, calls)

    def read_many(self, calls: list[Call]) -> list:
        return self._many(self.readers, calls)

    def close(self) -> None:
        for svc in self.readers + self.writers:
            svc.close()
        self._pool.shutdown(wait=False)
