"""Writer or follower: what a server process runs besides the app, by its role.

The data directory's writer lock (indexer/datadir.py) decides at start. The writer runs the
job worker and also serves the app on the writer socket, for followers to forward writes to
(forwarding.py). A follower has read-only collections that it refreshes every LSR_REFRESH_MS,
no job worker (jobs run, and report progress, in the writer), and a Forwarder for writes.
"""
from __future__ import annotations

import logging
import threading
import time

from indexer.datadir import WriterLock

from .forwarding import Forwarder, WriterSocket
from .jobs import JobManager
from .settings import Settings
from .store import Store

log = logging.getLogger("lsr.service")


class Writer:
    name = "writer"
    forwarder = None

    def __init__(self, app, settings: Settings, store: Store, lock: WriterLock):
        self.store, self.lock = store, lock
        self.jobs = JobManager(store, settings.data_dir / ".jobs", settings.job_chunk_docs,
                               settings.import_dir)
        self.socket = WriterSocket(app, settings.data_dir)

    def start(self) -> None:
        self.jobs.start()
        self.socket.start()

    async def stop(self) -> None:
        self.socket.stop()  # first: followers then get 503 at once, not a closing store
        self.jobs.stop()
        self.store.close()
        self.lock.close()  # last: the next writer must not find collections still open here

    def public(self) -> dict:
        return {"role": self.name}


class Follower:
    name = "follower"
    jobs = None

    def __init__(self, settings: Settings, store: Store):
        self.store = store
        self.interval = settings.refresh_ms / 1000
        self.forwarder = Forwarder(settings.data_dir, store)
        self.last_refresh: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh_loop, name="lsr-refresh", daemon=True)

    def start(self) -> None:
        self.last_refresh = time.time()  # the collections were just opened
        self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.refresh_all()  # damage is recorded there and reported by /readyz
                self.last_refresh = time.time()
            except Exception:  # a bug or a full disk must not end the loop: log, try again
                log.exception("refreshing the collections of %s failed", self.store.data_dir)

    async def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        await self.forwarder.aclose()
        self.store.close()

    def public(self) -> dict:
        return {"role": self.name, "last_refresh": self.last_refresh}
