"""The cluster on Ray: one Serve application, and the shard writers as Ray actors.

    router     Serve deployment, the ingress: create_app() over a ClusterStore (same REST API,
               same OpenAPI document as `lsr serve`); any number of replicas
    encoder    Serve deployment: query encoding, batched across requests (@serve.batch), on a
               GPU when the cluster has one, autoscaled
    shard-i-reader  Serve deployment per shard, R replicas, each following the shard's data
               directory read-only (shared storage across machines)
    lsr-shard-i-writer  a detached, named Ray actor per shard (max_restarts=-1): the shard's
               Store; a restarted writer recovers from the shard's WAL before it answers

Ray gives the RPC, placement, restarts and health checks; nothing here reimplements them. The
router retries a read on another replica when one dies (a replica the controller has not yet
replaced is skipped), and answers 503 naming the shard when none answers within RETRY_S.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from pathlib import Path

import ray
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from ..settings import Settings
from .placement import shard_dir
from .shard import ShardService
from .transport import Call, ShardUnavailable

log = logging.getLogger("lsr.cluster")
NAMESPACE = "lsr"
APP_NAME = "lsr"
RETRY_S = 15.0  # how long a read or write waits for a shard's replica to come back
ENCODER_TIMEOUT_S = 300.0  # a first query may wait for its model to load
# A read (search, fetch, describe) that a replica has not answered in this long is taken as a
# hung replica: tried again elsewhere while RETRY_S lasts, then 503 naming the shard — never
# waited on forever. Writes have no such bound (a large install or a merge may take minutes).
READ_TIMEOUT_S = 30.0
_DOWN = (RayActorError, ActorUnavailableError)  # the replica or actor died / is restarting
try:
    from ray.serve.exceptions import DeploymentUnavailableError
    _DOWN = _DOWN + (DeploymentUnavailableError,)
except ImportError:  # older Ray
    pass


def writer_name(root, shard: int) -> str:
    """A shard writer's actor name: unique per cluster root, so that one Ray cluster can hold
    several lsr clusters (staging and production, or a reindex beside the live one)."""
    tag = hashlib.blake2b(str(Path(root).resolve()).encode(), digest_size=4).hexdigest()
    return f"lsr-{tag}-shard-{shard}-writer"


def _unwrap(exc: BaseException) -> BaseException:
    """The shard's own exception (NotFound, BadRequest, ...) rather than Ray's wrapper, so the
    one error table (service/errors.py) answers as on a single node."""
    if isinstance(exc, RayTaskError) and not isinstance(exc, _DOWN):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            return cause
    return exc


class ShardWriter:
    """A shard's writer as a Ray actor (threaded: writes to different collections overlap)."""

    def __init__(self, data_dir: str, settings: Settings):
        self.svc = ShardService(data_dir, writer=True, settings=settings)

    def call(self, method: str, args: tuple):
        return getattr(self.svc, method)(*args)


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class ShardReader:
    def __init__(self, data_dir: str, settings: Settings):
        self.svc = ShardService(data_dir, writer=False, settings=settings)

    async def call(self, method: str, args: tuple):
        # in a thread: the index kernels release the GIL, so searches of one replica overlap
        return await asyncio.to_thread(getattr(self.svc, method), *args)


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=128)
class QueryEncoder:
    """Query vectors for every router replica; concurrent queries share one forward pass."""

    def __init__(self, settings: Settings):
        settings.apply()
        from ..encoder_cache import ENCODERS
        self.cache = ENCODERS

    def _encoder(self, kind: str, name: str):
        return getattr(self.cache, kind)(name)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def queries(self, items: list[tuple[str, str, str]]) -> list:
        return await asyncio.to_thread(self._queries, items)

    def _queries(self, items: list[tuple[str, str, str]]) -> list:
        out: list = [None] * len(items)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (kind, name, _) in enumerate(items):
            groups.setdefault((kind, name), []).append(i)
        for (kind, name), pos in groups.items():
            enc = self._encoder(kind, name)
            vecs = enc.encode_queries([items[i][2] for i in pos])
            for j, i in enumerate(pos):
                out[i] = vecs[j]
        return out

    async def documents(self, kind: str, name: str, texts: list[str], batch_size: int):
        enc = self._encoder(kind, name)
        return await asyncio.to_thread(enc.encode_documents, texts, batch_size=batch_size)

    async def info(self, kind: str, name: str) -> dict:
        enc = await asyncio.to_thread(self._encoder, kind, name)
        return {"dim": int(enc.dim)}


class RemoteEncoder:
    """One model of the encoder deployment, as the pipeline uses an encoder: encode_queries,
    encode_documents, dim; the tokenizer (explanations) is loaded here, it is small."""

    def __init__(self, handle, kind: str, name: str):
        self.handle, self.kind, self.name = handle, kind, name
        self.dim = handle.info.remote(kind, name).result()["dim"]
        self._tokenizer = None

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> list:
        responses = [self.handle.queries.remote((self.kind, self.name, t)) for t in texts]
        return [_result(r) for r in responses]

    def encode_documents(self, texts: list[str], batch_size: int = 32):
        return _result(self.handle.documents.remote(self.kind, self.name, texts, batch_size))

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from encoders.models import load_tokenizer
            self._tokenizer = load_tokenizer(self.name)
        return self._tokenizer


class RemoteEncoders:
    """EncoderCache's interface over the encoder deployment; model names are checked against
    the registry here first (the router has the same models directory)."""

    def __init__(self, handle):
        from ..encoder_cache import ENCODERS
        self.handle, self.local = handle, ENCODERS
        self._items: dict[tuple[str, str], RemoteEncoder] = {}

    def _get(self, kind: str, name: str) -> RemoteEncoder:
        key = (kind, name)
        if key not in self._items:
            from ..encoder_cache import check_model_name
            check_model_name(name)  # 400 for an unknown model, before any remote call
            self._items[key] = RemoteEncoder(self.handle, kind, name)
        return self._items[key]

    def sparse(self, name: str):
        # an inference-free model's queries run no model (tokenizer + IDF: service/models.py),
        # so they stay here rather than crossing to the encoder deployment
        if self.local.spec(name).kind == "inference-free":
            return self.local.sparse(name)
        return self._get("sparse", name)

    def dense(self, name: str):
        return self._get("dense", name)

    def multivector(self, name: str):
        return self._get("multivector", name)

    def loaded(self) -> list[str]:
        return [f"{k}:{n}" for k, n in self._items]

    def __getattr__(self, attr):  # the registry's questions (spec, ...) are answered locally
        return getattr(self.local, attr)


def _result(response):
    try:
        return response.result(timeout_s=ENCODER_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - re-raised as the shard's own error
        raise _unwrap(exc) from None


def _wait(ref, timeout_s: float | None):
    """The result of an actor call (ObjectRef) or a Serve call (DeploymentResponse); a
    TimeoutError after ``timeout_s`` (None: no bound)."""
    if isinstance(ref, ray.ObjectRef):
        return ray.get(ref, timeout=timeout_s)
    return ref.result(timeout_s=timeout_s)


def _cancel(ref) -> None:
    try:
        ray.cancel(ref) if isinstance(ref, ray.ObjectRef) else ref.cancel()
    except Exception:  # noqa: BLE001 - best effort: the call may have finished meanwhile
        pass


class RayShards:
    """Shards over Ray: writes to the named writer actors, reads to the reader deployments."""

    def __init__(self, writers: list, readers: list, retry_s: float = RETRY_S,
                 read_timeout_s: float = READ_TIMEOUT_S):
        self.count = len(writers)
        self.writers, self.readers, self.retry_s = writers, readers, retry_s
        self.read_timeout_s = read_timeout_s

    def _retrying(self, calls: list[Call], send, what: str, timeout_s: float | None = None) -> list:
        results: list = [None] * len(calls)
        pending = list(range(len(calls)))
        deadline = time.monotonic() + self.retry_s
        delay = 0.05
        while True:
            refs = {i: send(*calls[i]) for i in pending}
            failed = []
            for i, ref in refs.items():
                try:
                    results[i] = _wait(ref, timeout_s)
                except Exception as exc:  # noqa: BLE001
                    exc = _unwrap(exc)
                    if isinstance(exc, TimeoutError):  # hung: given up on, tried again elsewhere
                        _cancel(ref)
                    elif not isinstance(exc, _DOWN):
                        raise exc from None
                    failed.append((i, exc))
            if not failed:
                return results
            if time.monotonic() > deadline:
                i, exc = failed[0]
                raise ShardUnavailable(calls[i][0], f"no {what} answered within {self.retry_s:g} s: "
                                       f"{type(exc).__name__}")
            log.warning("%d call(s) to shard %s %s failed (%s); retrying", len(failed),
                        sorted({calls[i][0] for i, _ in failed}), what, type(failed[0][1]).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            pending = [i for i, _ in failed]

    def write(self, shard: int, method: str, *args):
        return self.write_many([(shard, method, args)])[0]

    def write_many(self, calls: list[Call]) -> list:
        # writes are idempotent (upserts by id, keyed installs), so a retry after a writer
        # restart is safe; Ray's own max_task_retries retries first
        return self._retrying(calls, lambda s, m, a: self.writers[s].call.remote(m, a), "writer")

    def read_many(self, calls: list[Call]) -> list:
        return self._retrying(calls, lambda s, m, a: self.readers[s].call.remote(m, a), "reader replica",
                              self.read_timeout_s)

    def close(self) -> None:
        pass


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256)
@serve.ingress()
class Router:
    """The ingress: the service's own FastAPI app over the shards."""

    def __init__(self, settings: Settings, root: str, shards: int, readers: list, encoder):
        self.settings, self.root, self.shards = settings, root, shards
        self.readers, self.encoder = readers, encoder

    def __serve_build_asgi_app__(self):
        from ..app import create_app
        from .backend import ClusterStore, RouterRole

        def backend(settings: Settings):
            writers = [ray.get_actor(writer_name(self.root, s), namespace=NAMESPACE) for s in range(self.shards)]
            store = ClusterStore(self.root, RayShards(writers, self.readers), RemoteEncoders(self.encoder),
                                 settings.encode_batch_size)
            return store, RouterRole(settings, store)
        return create_app(self.settings, backend=backend)


def start_writers(settings: Settings, root: Path, shards: int, cpus: float = 0.1) -> list:
    """The shard writers (created, or found if running), each answering once its shard is open."""
    actor = ray.remote(ShardWriter)
    writers = [actor.options(name=writer_name(root, s), namespace=NAMESPACE, lifetime="detached",
                             get_if_exists=True, max_restarts=-1, max_task_retries=3,
                             max_concurrency=16, num_cpus=cpus).remote(str(shard_dir(root, s)), settings)
               for s in range(shards)]
    ray.get([w.call.remote("ping", ()) for w in writers])
    return writers


def build_app(settings: Settings, root, shards: int, replicas: int, *, encoder_replicas: int = 1,
              encoder_max_replicas: int | None = None, cpus: float = 0.1):
    """The Serve application over ``root`` (its shard writers started or found first). The
    shard layout is fixed for a root: documents are placed by hash over the shard count."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    layout = root / "cluster.json"
    if layout.exists():
        recorded = json.loads(layout.read_text())["shards"]
        if recorded != shards:
            raise ValueError(f"{root} holds a cluster of {recorded} shards; documents are placed by "
                             f"hash over that count, so it cannot serve {shards} (re-index into a new root)")
    else:
        layout.write_text(json.dumps({"shards": shards}))
    start_writers(settings, root, shards, cpus)
    readers = [ShardReader.options(name=f"shard-{s}-reader", num_replicas=replicas,
                                   ray_actor_options={"num_cpus": cpus}).bind(str(shard_dir(root, s)), settings)
               for s in range(shards)]
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    encoder_opts: dict = {"ray_actor_options": {"num_cpus": cpus, "num_gpus": gpus}}
    if encoder_max_replicas:
        encoder_opts["autoscaling_config"] = {"min_replicas": encoder_replicas, "max_replicas": encoder_max_replicas,
                                              "target_ongoing_requests": 8}
    else:
        encoder_opts["num_replicas"] = encoder_replicas
    encoder = QueryEncoder.options(**encoder_opts).bind(settings)
    return Router.options(ray_actor_options={"num_cpus": cpus}).bind(settings, str(root), shards, readers, encoder)


def app_builder(args: dict):
    """For `serve run service.cluster.ray_app:app_builder shards=2 replicas=2 root=/data` and a
    KubeRay RayService's serveConfigV2 (deploy/kuberay-rayservice.yaml); settings from LSR_*."""
    settings = Settings()
    most = args.get("encoder_max_replicas")
    return build_app(settings, args.get("root") or settings.data_dir, int(args.get("shards", 2)),
                     int(args.get("replicas", 2)), encoder_replicas=int(args.get("encoder_replicas", 1)),
                     encoder_max_replicas=int(most) if most else None, cpus=float(args.get("cpus", 1.0)))


def deploy(settings: Settings, root, shards: int, replicas: int, *, encoder_replicas: int = 1,
           encoder_max_replicas: int | None = None, cpus: float = 0.1, route_prefix: str = "/",
           host: str = "127.0.0.1", port: int = 8000, blocking: bool = False):
    """Start (or update: replicas, encoders) the cluster application on the connected Ray
    cluster, serving HTTP on host:port; returns the router's handle."""
    serve.start(http_options={"host": host, "port": port})
    app = build_app(settings, root, shards, replicas, encoder_replicas=encoder_replicas,
                    encoder_max_replicas=encoder_max_replicas, cpus=cpus)
    return serve.run(app, name=APP_NAME, route_prefix=route_prefix, blocking=blocking)


def shutdown(root, shards: int | None = None, app_name: str = APP_NAME) -> None:
    """Remove the application and the shard writers of ``root`` (their data stays)."""
    try:
        serve.delete(app_name)
    except Exception:  # noqa: BLE001 - no Serve running, or the app is gone already
        log.info("no Serve application %r to delete", app_name)
    if shards is None:
        layout = Path(root) / "cluster.json"
        shards = json.loads(layout.read_text())["shards"] if layout.exists() else 0
    for s in range(shards):
        try:
            ray.kill(ray.get_actor(writer_name(root, s), namespace=NAMESPACE), no_restart=True)
        except ValueError:  # not running
            pass
