"""Background batch indexing jobs: one worker thread, state persisted for resumption.

A job reads its source in chunks, encodes and upserts each chunk (durable when upsert
returns), then records ``done`` in ``<data_dir>/.jobs/<id>.json`` (atomic replace). After a
restart, queued and running jobs are queued again and skip their first ``done`` records:
re-upserting a chunk that was written but not yet recorded is harmless (same ids, newest wins).
Searches never wait for a job: the collection takes its own locks per upsert.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import sources
from .errors import BadRequest, Conflict, NotFound, ServiceError
from .store import Store

# "cancelling": cancel asked while a chunk is being written; the worker records that chunk and
# then marks the job "cancelled", so a final status always counts exactly what was upserted.
ACTIVE = ("queued", "running", "cancelling")


@dataclass
class Job:
    id: str
    collection: str
    source: str
    format: str
    status: str = "queued"
    done: int = 0
    total: int | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    # not persisted: progress of the current run, for rate and ETA
    run_started: float | None = None
    run_start_done: int = 0

    def public(self) -> dict:
        rate = eta = None
        if self.status == "running" and self.run_started is not None:
            elapsed = time.time() - self.run_started
            if elapsed > 0 and self.done > self.run_start_done:
                rate = (self.done - self.run_start_done) / elapsed
                if self.total is not None:
                    eta = max(0, self.total - self.done) / rate
        return {"id": self.id, "collection": self.collection, "status": self.status, "done": self.done,
                "total": self.total, "rate": rate, "eta": eta, "source": self.source,
                "format": self.format, "error": self.error}

    def persisted(self) -> dict:
        d = asdict(self)
        d.pop("run_started")
        d.pop("run_start_done")
        return d


class JobManager:
    def __init__(self, store: Store, state_dir: Path, chunk: int = 64):
        self.store = store
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.chunk = chunk
        self._jobs: dict[str, Job] = {}
        self._queue: deque[str] = deque()
        self._cancel: set[str] = set()
        self._current: str | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        for p in sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                job = Job(**json.loads(p.read_text()))
            except (ValueError, TypeError):
                continue  # a foreign or damaged file is not ours to run
            self._jobs[job.id] = job
            if job.status == "cancelling":  # the server stopped before the worker saw the cancel
                job.status = "cancelled"
            elif job.status in ACTIVE:
                job.status = "queued"
                self._queue.append(job.id)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="lsr-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the chunk in progress; unfinished jobs stay queued for the next start."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # ---------------------------------------------------------------- API
    def submit(self, collection: str, source: str, fmt: str | None) -> Job:
        try:
            path, fmt = sources.resolve(source, fmt)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        job = Job(uuid.uuid4().hex[:16], collection, str(path), fmt)
        with self._cond:
            self._jobs[job.id] = job
            self._save(job)
            self._queue.append(job.id)
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found")
        return job

    def list(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.created)

    def cancel(self, job_id: str) -> Job:
        with self._cond:
            job = self.get(job_id)
            if job.status not in ACTIVE:
                raise Conflict(f"job {job_id!r} is already {job.status}")
            self._cancel.add(job.id)
            if job.id in self._queue:  # never started: nothing in flight
                self._queue.remove(job.id)
                job.status = "cancelled"
            elif job.status == "running":
                job.status = "cancelling"
            self._save(job)
            return job

    def cancel_collection(self, collection: str, timeout: float = 60.0) -> None:
        """Cancel a collection's jobs and wait until none is writing to it."""
        with self._cond:
            for job in self._jobs.values():
                if job.collection == collection and job.status in ACTIVE:
                    self.cancel(job.id)
            deadline = time.time() + timeout
            while (self._current and self._jobs[self._current].collection == collection
                   and time.time() < deadline):
                self._cond.wait(0.1)

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until a job leaves the active states (tests, CLI)."""
        deadline = time.time() + timeout
        with self._cond:
            while self.get(job_id).status in ACTIVE and time.time() < deadline:
                self._cond.wait(0.05)
        return self.get(job_id)

    # ---------------------------------------------------------------- worker
    def _save(self, job: Job) -> None:
        tmp = self.dir / f".{job.id}.tmp"
        with open(tmp, "w") as f:
            json.dump(job.persisted(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / f"{job.id}.json")

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job = self._jobs[self._queue.popleft()]
                self._current = job.id
                job.status = "running"
                self._save(job)
            try:
                self._run(job)
            except Exception as exc:  # a bad record or a vanished collection fails the job only
                msg = exc.message if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
                with self._cond:
                    job.status, job.error = "failed", msg
                    self._save(job)
            finally:
                with self._cond:
                    self._current = None
                    self._cond.notify_all()

    def _run(self, job: Job) -> None:
        path = Path(job.source)
        if job.total is None:
            job.total = sources.count(path, job.format)
        job.run_started, job.run_start_done = time.time(), job.done
        batch: list = []
        for rec in sources.read(path, job.format, skip=job.done):
            batch.append(rec)
            if len(batch) >= self.chunk and not self._step(job, batch):
                break
        else:
            if not batch or self._step(job, batch):
                with self._cond:
                    if job.status == "running":
                        job.status = "done"
                        self._save(job)
                return
        with self._cond:  # stopped between chunks: by a cancel, or by a shutdown (resumable)
            if job.id in self._cancel:
                job.status = "cancelled"
                self._save(job)

    def _step(self, job: Job, batch: list) -> bool:
        """Upsert one chunk and record it; False when the job should stop here."""
        if job.id in self._cancel or self._stop:
            return False
        ids = [r[0] for r in batch]
        # within one chunk the last version of a repeated id wins, as it would across chunks
        last = {doc_id: i for i, doc_id in enumerate(ids)}
        keep = sorted(last.values())
        self.store.upsert(job.collection, [ids[i] for i in keep], [batch[i][1] for i in keep],
                          [batch[i][2] for i in keep])
        with self._cond:
            job.done += len(batch)
            self._save(job)
        batch.clear()
        return not (job.id in self._cancel or self._stop)
