"""Background batch indexing jobs: one worker thread, state persisted for resumption.

A job reads its source in chunks, encodes and upserts each chunk (durable when upsert
returns), then records ``done`` in ``<data_dir>/.jobs/<id>.json`` (atomic replace). After a
restart, queued and running jobs are queued again and skip their first ``done`` records:
re-upserting a chunk that was written but not yet recorded is harmless (same ids, newest wins).
Searches never wait for a job: the collection takes its own locks per upsert.

Sources: a file uploaded with the request (deleted once its job ends), or — only when the
operator sets LSR_IMPORT_DIR — a path inside that directory. Anything else is refused before
the server looks at it, so a job cannot read arbitrary server files nor tell which exist.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from indexer import crashpoints
from indexer.atomic import fsync_dir
from indexer.errors import LsrError

from . import sources
from .errors import BadRequest, Conflict, Forbidden, NotFound, client_message, http_status
from .store import Store

log = logging.getLogger("lsr.service")
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
    started: float | None = None   # first time it ran (a resumed job keeps it)
    finished: float | None = None  # when it left the active states: done, failed or cancelled
    label: str = ""        # what clients see as the source (never a server path of an upload)
    uploaded: bool = False  # the source file is ours: deleted when the job ends
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
                "total": self.total, "rate": rate, "eta": eta, "source": self.label or self.source,
                "format": self.format, "error": self.error, "created": _iso(self.created),
                "started": _iso(self.started), "finished": _iso(self.finished)}

    def set_status(self, status: str) -> None:
        """The one place a job's status changes, and with it its start and end times."""
        self.status = status
        now = time.time()
        if status == "running" and self.started is None:
            self.started = now
        if status not in ACTIVE and self.finished is None:
            self.finished = now

    def persisted(self) -> dict:
        d = asdict(self)
        d.pop("run_started")
        d.pop("run_start_done")
        return d


def _iso(t: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC (what a client's date parser takes)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobManager:
    def __init__(self, store: Store, state_dir: Path, chunk: int = 64, import_dir: Path | None = None):
        self.store = store
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.chunk = chunk
        self.import_dir = None if import_dir is None else Path(import_dir).resolve()
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
                job.set_status("cancelled")
            elif job.status in ACTIVE:
                job.set_status("queued")
                self._queue.append(job.id)
            if job.status not in ACTIVE:
                self._discard_upload(job)  # the server stopped between the end and the delete

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
        """A job over a file or BEIR folder named by the client: inside LSR_IMPORT_DIR only."""
        if self.import_dir is None:
            raise Forbidden("job sources on the server are disabled: upload the file "
                            "(POST /collections/{name}/jobs/upload), or have the operator set "
                            "LSR_IMPORT_DIR")
        path = (self.import_dir / source).resolve()  # an absolute source replaces the base
        if path != self.import_dir and self.import_dir not in path.parents:
            raise Forbidden(f"source {source!r} is outside the import directory; give a path "
                            "relative to it")
        try:
            path, fmt = sources.resolve(str(path), fmt)
        except ValueError:
            raise BadRequest(f"source {source!r} is not a readable {fmt or 'JSONL, Parquet or BEIR'} "
                             "source in the import directory") from None
        return self._enqueue(Job(uuid.uuid4().hex[:16], collection, str(path), fmt, label=source))

    def submit_upload(self, collection: str, path: Path, fmt: str, filename: str) -> Job:
        """A job over a file the client uploaded (ours: deleted when the job ends)."""
        return self._enqueue(Job(uuid.uuid4().hex[:16], collection, str(path), fmt,
                                 label=f"upload:{filename}", uploaded=True))

    def _enqueue(self, job: Job) -> Job:
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
                job.set_status("cancelled")
                self._discard_upload(job)
            elif job.status == "running":
                job.set_status("cancelling")
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
    @staticmethod
    def _discard_upload(job: Job) -> None:
        if job.uploaded:
            Path(job.source).unlink(missing_ok=True)

    def _save(self, job: Job) -> None:
        tmp = self.dir / f".{job.id}.tmp"
        with open(tmp, "w") as f:
            json.dump(job.persisted(), f)
            f.flush()
            os.fsync(f.fileno())
        crashpoints.step("jobs.save.fsync")
        os.replace(tmp, self.dir / f"{job.id}.json")
        crashpoints.step("jobs.save.rename")
        fsync_dir(self.dir)  # the rename itself survives a power cut

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job = self._jobs[self._queue.popleft()]
                self._current = job.id
                job.set_status("running")
                self._save(job)
            try:
                self._run(job)
            except Exception as exc:  # a bad record or a vanished collection fails the job only
                with self._cond:
                    job.error = _job_error(exc)
                    job.set_status("failed")
                    self._save(job)
            finally:
                with self._cond:
                    if job.status not in ACTIVE:
                        self._discard_upload(job)
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
                        job.set_status("done")
                        self._save(job)
                return
        with self._cond:  # stopped between chunks: by a cancel, or by a shutdown (resumable)
            if job.id in self._cancel:
                job.set_status("cancelled")
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


def _job_error(exc: Exception) -> str:
    """What a failed job reports: bad input and damage as they are (they name the record or
    the file); anything else by kind only, its details (server paths) go to the log."""
    if isinstance(exc, (LsrError, ValueError)) or http_status(exc) is not None:
        return client_message(exc)
    log.error("job failed", exc_info=exc)
    return f"internal error ({type(exc).__name__}); see the server log"
