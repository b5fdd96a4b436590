"""Operations: per-collection metrics, a request id on every request and in every log line,
JSON logs, and the slow-search log.

- ``CollectionCollector``: Prometheus gauges per collection, read at scrape time from the store
  (documents, segments, bytes on disk, tombstones, buffered documents, state 1/0 per state)
  and counters of what the collection did since it was opened (documents upserted / deleted,
  flushes and merges with their seconds). Collection names label the series: a client can
  create collections only with an admin key, so the label set grows only as the data does.
- ``RequestId``: ASGI middleware, outermost. A client's ``X-Request-Id`` is kept when it is a
  plain token (letters, digits, ``._-``, at most 64), else one is made; it is sent back in the
  response and is in every log line written while the request runs (a context variable).
- ``configure_logging("json")`` (``LSR_LOG_FORMAT=json``): one JSON object per line on stderr
  for the ``lsr`` loggers (time, level, logger, message, request id and any ``extra`` fields);
  ``"text"`` leaves Python's and uvicorn's own formats alone.
- ``OperationMetrics``: histograms of encoder time per forward pass (``lsr_encode_seconds``, by
  encoder kind, model and queries / documents, with ``lsr_encoded_texts_total``) and of each
  flush and merge (``lsr_flush_seconds``, ``lsr_merge_seconds`` by collection), the latter fed
  by indexer.maintenance's timing hook (the indexer does not import the service).
- ``slow_search(...)``: a WARNING on the ``lsr.slowlog`` logger when a search takes at least
  ``LSR_SLOW_SEARCH_MS``, with the collection, mode, k, the server's split of its time and the
  query (first 200 characters), as Elasticsearch's search slow log does.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid

from pathlib import Path

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("lsr_request_id", default=None)
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
STATES = ("ready", "damaged")
slowlog = logging.getLogger("lsr.slowlog")


class RequestId:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope.get("headers", []) if k == b"x-request-id"), b"").decode("latin-1")
        rid = given if _CLIENT_ID.match(given) else uuid.uuid4().hex[:16]
        token = REQUEST_ID.set(rid)

        async def send_with_id(msg):
            if msg["type"] == "http.response.start":
                msg = {**msg, "headers": [*msg.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(msg)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class JsonFormatter(logging.Formatter):
    # attributes every LogRecord has: anything else was passed in `extra` and is logged as a field
    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                       + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        rid = REQUEST_ID.get()
        if rid is not None:
            out["request_id"] = rid
        out.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(fmt: str) -> None:
    """``json``: the ``lsr`` loggers write JSON lines (with the request id) to stderr, and only
    there. ``text``: Python's own logging setup, untouched (uvicorn's, or the application's)."""
    logger = logging.getLogger("lsr")
    for h in [h for h in logger.handlers if getattr(h, "_lsr", False)]:
        logger.removeHandler(h)
    if fmt != "json":
        logger.propagate = True
        return
    handler = logging.StreamHandler()
    handler._lsr = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    logger.propagate = False  # one line per record, not a second one through the root logger


def slow_search(threshold_ms: float | None, elapsed_s: float, collection: str, body, stages: dict) -> None:
    if threshold_ms is None or elapsed_s * 1e3 < threshold_ms:
        return
    slowlog.warning("slow search: %.1f ms on %r", elapsed_s * 1e3, collection, extra={
        "collection": collection, "ms": round(elapsed_s * 1e3, 3), "mode": body.mode, "k": body.k,
        "offset": body.offset, "rerank": body.rerank is not None, "prf": body.prf is not None,
        "stages_ms": {k: round(v * 1e3, 3) for k, v in stages.items()},
        "query": (body.query or "")[:200]})


class CollectionCollector:
    """Per-collection series, computed at each scrape from ``store()`` (None before start)."""

    def __init__(self, store):
        self.store = store

    def describe(self):
        return []  # no fixed set: collections come and go

    def collect(self):
        gauges = {k: GaugeMetricFamily(f"lsr_collection_{k}", doc, labels=["collection"]) for k, doc in (
            ("documents", "live documents"), ("segments", "sealed segments"),
            ("bytes", "bytes on disk"), ("tombstones", "deleted or replaced rows not yet merged away"),
            ("buffer_documents", "documents in the write buffer (not yet in a segment)"))}
        state = GaugeMetricFamily("lsr_collection_state", "1 for the collection's state",
                                  labels=["collection", "state"])
        counters = {k: CounterMetricFamily(f"lsr_collection_{k}", doc, labels=["collection"]) for k, doc in (
            ("upserted_documents", "documents upserted since the collection was opened"),
            ("deleted_documents", "documents deleted since the collection was opened"),
            ("flushes", "write buffers sealed into segments"), ("flush_seconds", "time spent sealing"),
            ("merges", "segment merges"), ("merge_seconds", "time spent merging"))}
        store = self.store()
        for name in (store.names() if store is not None else []):
            try:
                d = store.describe(name)
            except Exception:  # dropped between names() and describe(): not a scrape failure
                continue
            for s in STATES:
                state.add_metric([name, s], 1.0 if d.get("state") == s else 0.0)
            if d.get("state") != "ready":
                continue
            for k, g in gauges.items():
                g.add_metric([name], float(d.get(k, 0)))
            act = d.get("activity", {})
            for k, key in (("upserted_documents", "upserted"), ("deleted_documents", "deleted"),
                           ("flushes", "flushes"), ("flush_seconds", "flush_seconds"),
                           ("merges", "merges"), ("merge_seconds", "merge_seconds")):
                counters[k].add_metric([name], float(act.get(key, 0)))
        yield from gauges.values()
        yield state
        yield from counters.values()


_SECONDS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)
_MAINTENANCE_SECONDS = (.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class OperationMetrics:
    """Encoder, flush and merge timings as Prometheus histograms in ``registry``.

    ``encoded`` is the QueryBatcher's and the Store's ``on_encode`` callback; ``hook`` goes to
    ``indexer.maintenance.add_timing_hook`` and counts only the collections under ``data_dir``
    (tests run several apps in one process, and the hook list is the process's)."""

    def __init__(self, registry, data_dir):
        self.data_dir = Path(data_dir).resolve()
        self.encode_seconds = Histogram(
            "lsr_encode_seconds", "encoder time per forward pass (a batch of texts)",
            ["encoder", "model", "input"], registry=registry, buckets=_SECONDS)
        self.encoded_texts = Counter("lsr_encoded_texts", "texts encoded", ["encoder", "model", "input"],
                                     registry=registry)
        self.flush_seconds = Histogram("lsr_flush_seconds", "time to seal a write buffer into a "
                                       "segment (Seismic build included)", ["collection"],
                                       registry=registry, buckets=_MAINTENANCE_SECONDS)
        self.merge_seconds = Histogram("lsr_merge_seconds", "time to merge segments", ["collection"],
                                       registry=registry, buckets=_MAINTENANCE_SECONDS)

    def encoded(self, encoder, kind: str, n: int, seconds: float) -> None:
        labels = (type(encoder).__name__, str(getattr(encoder, "name", "?")), kind)
        self.encode_seconds.labels(*labels).observe(seconds)
        self.encoded_texts.labels(*labels).inc(n)

    def hook(self, event: str, collection, seconds: float) -> None:
        path = getattr(collection, "path", None)
        if path is None or Path(path).resolve().parent != self.data_dir:
            return
        {"flush": self.flush_seconds, "merge": self.merge_seconds}[event].labels(collection.name).observe(seconds)
