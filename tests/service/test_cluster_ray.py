"""The cluster on a real local Ray (2 shards x 2 reader replicas, Ray Serve and Ray Data) on
127.0.0.1 — `make test` runs the suite in a network namespace that has only loopback, where Ray
binds 127.0.0.1. Against a single node holding the same documents: the same results in every
mode, the same 4xx for bad input, the same OpenAPI document; a killed reader replica fails no
search; bulk indexing survives writer restarts and a rerun installs nothing twice."""
import json
import socket
import threading
import time

import httpx
import pytest

ray = pytest.importorskip("ray")

from fastapi.testclient import TestClient  # noqa: E402
from ray import serve  # noqa: E402

from service.app import create_app  # noqa: E402
from service.cluster import bulk, ray_app  # noqa: E402
from service.cluster.transport import ShardUnavailable  # noqa: E402
from service.errors import http_status  # noqa: E402
from service.settings import Settings  # noqa: E402

from .test_cluster_sharding import BAD, SEARCHES, _pairs, assert_same_ranking  # noqa: E402

SHARDS, REPLICAS = 2, 2


def _visible(router, name: str, n: int) -> None:
    """Written by the shard writers directly (a bulk load, not through the router): each reader
    replica sees it within its own refresh interval (refresh_ms), BM25's global statistics
    within STATS_TTL_S. Replicas refresh independently, so one answering n does not mean all
    do: after the first, every replica gets two more intervals before the count must hold."""
    from service.cluster.backend import STATS_TTL_S
    refresh_s = Settings(_env_file=None).refresh_ms / 1000
    deadline = time.monotonic() + 60
    while router.get(f"/collections/{name}").json()["documents"] != n and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(max(2 * refresh_s, STATS_TTL_S))
    for _ in range(4):  # several reads: each may go to another replica
        assert router.get(f"/collections/{name}").json()["documents"] == n


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, corpus):
    """(router client, single-node client, root): both with collection 'docs' holding the corpus."""
    ray.init(num_cpus=8, include_dashboard=False, namespace=ray_app.NAMESPACE, log_to_driver=False,
             configure_logging=False)
    root = tmp_path_factory.mktemp("ray-cluster")
    port = _free_port()
    try:
        ray_app.deploy(Settings(data_dir=root, _env_file=None), root, SHARDS, REPLICAS, port=port)
        single = create_app(Settings(data_dir=tmp_path_factory.mktemp("single"), _env_file=None))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as router, TestClient(single) as one:
            for c in (router, one):
                assert c.post("/collections", json={"name": "docs"}).status_code == 201
                for lo, hi in ((0, 10), (10, 25), (25, len(corpus))):
                    r = c.put("/collections/docs/documents", json={"documents": corpus[lo:hi]})
                    assert r.status_code == 200, r.text
            yield router, one, root
    finally:
        ray_app.shutdown(root, SHARDS)
        serve.shutdown()
        ray.shutdown()


def test_router_serves_the_same_api(cluster):
    router, one, _ = cluster
    assert router.get("/openapi.json").json() == one.get("/openapi.json").json()
    ready = router.get("/readyz").json()
    assert ready["status"] == "ready" and ready["role"] == "router" and ready["shards"] == SHARDS


@pytest.mark.parametrize("req", SEARCHES, ids=lambda r: f"{r['mode']}-{r.get('fusion', r.get('rerank', ''))}")
def test_every_mode_equals_single_node(cluster, req):
    router, one, _ = cluster
    ra, rb = one.post("/collections/docs/search", json=req), router.post("/collections/docs/search", json=req)
    assert ra.status_code == rb.status_code == 200, (ra.text, rb.text)
    assert_same_ranking(_pairs(rb.json()), _pairs(ra.json()))
    assert [r["text"] for r in rb.json()["results"]][:1] == [r["text"] for r in ra.json()["results"]][:1]


@pytest.mark.parametrize("method,path,body", BAD, ids=[f"{m}-{p}-{i}" for i, (m, p, _) in enumerate(BAD)])
def test_bad_input_gets_the_same_4xx(cluster, method, path, body):
    router, one, _ = cluster
    ra, rb = (getattr(c, method)(path, json=body) for c in (one, router))
    assert 400 <= ra.status_code < 500
    assert (rb.status_code, rb.json()["detail"]) == (ra.status_code, ra.json()["detail"])


def _replicas(deployment: str) -> list:
    names = [a for a in ray.util.list_named_actors(all_namespaces=True)
             if f"#{deployment}#" in a["name"] and a["name"].startswith("SERVE_REPLICA")]
    return [ray.get_actor(a["name"], namespace=a["namespace"]) for a in names]


def test_killing_a_reader_replica_fails_no_search(cluster):
    """A bounded load (3 clients x 40 searches); one replica of shard 0 is killed a few requests
    in. Every search answers 200 with the same results as before."""
    router, _, _ = cluster
    req = {"query": "renewable energy from wind", "mode": "bm25", "k": 5}
    want = _pairs(router.post("/collections/docs/search", json=req).json())
    victims = _replicas("shard-0-reader")
    assert len(victims) == REPLICAS
    statuses, rankings, started = [], [], threading.Event()

    def client():
        with httpx.Client(base_url=str(router.base_url), timeout=120) as c:
            for i in range(40):
                r = c.post("/collections/docs/search", json=req)
                statuses.append(r.status_code)
                if r.status_code == 200:
                    rankings.append(_pairs(r.json()))
                if i == 5:
                    started.set()
    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    started.wait(120)
    ray.kill(victims[0], no_restart=True)
    for t in threads:
        t.join(300)
    assert len(statuses) == 120 and set(statuses) == {200}, statuses
    for got in rankings:
        assert_same_ranking(got, want)


def test_a_shard_with_no_live_writer_is_503_naming_it(cluster, tmp_path):
    """Through Ray's real failure: an actor killed for good; the shard is named, never 'not found'."""
    actor = ray.remote(ray_app.ShardWriter).options(num_cpus=0.1, max_restarts=0).remote(
        str(tmp_path / "shard-x"), Settings(data_dir=tmp_path, _env_file=None))
    ray.get(actor.call.remote("ping", ()))
    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + 60  # ray.kill returns before the actor is gone: wait for it
    while time.monotonic() < deadline:
        try:
            ray.get(actor.call.remote("ping", ()), timeout=10)
        except ray.exceptions.RayActorError:
            break
        time.sleep(0.2)
    shards = ray_app.RayShards([actor], [], retry_s=1.0)
    with pytest.raises(ShardUnavailable, match="shard 0") as err:
        shards.write_many([(0, "names", ())])
    assert http_status(err.value) == 503


@ray.remote(num_cpus=0.1, max_concurrency=4)
class _HungReplica:
    """Answers every call as a replica stuck for good would (a deadlock, a stalled disk)."""

    def call(self, method, args):
        time.sleep(3600)


def test_a_hung_reader_is_503_naming_its_shard_not_waited_on_forever(cluster):
    hung = _HungReplica.remote()
    try:
        shards = ray_app.RayShards([hung], [hung], retry_s=0.5, read_timeout_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(ShardUnavailable, match="shard 0.*TimeoutError") as err:
            shards.read_many([(0, "describe", ("docs", None))])
        assert http_status(err.value) == 503
        assert time.monotonic() - t0 < 20  # bounded: one timeout, at most a retry or two
    finally:
        ray.kill(hung)


def test_bulk_index_survives_writer_restarts_and_reruns_install_nothing_twice(cluster, tmp_path, corpus):
    router, one, root = cluster
    docs = [{"id": f"bulk-{i:03d}", "text": d["text"], "metadata": d["metadata"]}
            for i, d in enumerate(corpus + corpus[:24])]
    src = tmp_path / "source.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    assert router.post("/collections", json={"name": "bulk", "multivector_encoder": None}).status_code == 201
    kills, done = [], threading.Event()

    def killer():  # the writer of shard 1 is killed (and restarted by Ray) while the load runs
        while not done.wait(1.5) and len(kills) < 3:
            ray.kill(ray.get_actor(ray_app.writer_name(root, 1), namespace=ray_app.NAMESPACE), no_restart=False)
            kills.append(time.monotonic())
    t = threading.Thread(target=killer)
    t.start()
    try:
        first = bulk.bulk_index(str(src), "bulk", root=root, settings=Settings(data_dir=root, _env_file=None),
                                batch_docs=8, encode_batch_rows=16)
    finally:
        done.set()
        t.join()
    assert kills and first["documents"] == len(docs) and first["installed"] == first["batches"] > SHARDS
    again = bulk.bulk_index(str(src), "bulk", root=root, settings=Settings(data_dir=root, _env_file=None),
                            batch_docs=8)
    assert again["batches"] == first["batches"] and again["installed"] == 0  # all skipped
    _visible(router, "bulk", len(docs))
    listed, cursor = [], None
    while True:
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        page = router.get("/collections/bulk/documents", params=params).json()
        listed += [d["id"] for d in page["documents"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert listed == sorted(d["id"] for d in docs)  # exactly the source: nothing lost, nothing twice
    assert router.get("/collections/bulk").json()["documents"] == len(docs)
    # and it scores as a single node that took the same documents in one batch
    assert one.post("/collections", json={"name": "bulk", "multivector_encoder": None}).status_code == 201
    assert one.put("/collections/bulk/documents", json={"documents": docs}).status_code == 200
    for mode in ("bm25", "sparse", "dense"):
        req = {"query": "energy from the wind and the sun", "mode": mode, "k": 10}
        assert_same_ranking(_pairs(router.post("/collections/bulk/search", json=req).json()),
                            _pairs(one.post("/collections/bulk/search", json=req).json()))


def test_cli_bulk_index_and_status(cluster, tmp_path, capsys):
    """`lsr cluster index` and `lsr cluster status` (in this process, connected already)."""
    from service.cli import main
    router, _, root = cluster
    src = tmp_path / "more.jsonl"
    words = "amber basalt cobalt dune ember fjord glacier harbor iris juniper kelp lagoon".split()
    src.write_text("".join(json.dumps({"id": f"cli-{i}", "text": f"a note about the {w}"}) + "\n"
                           for i, w in enumerate(words)))
    assert router.post("/collections", json={"name": "viacli", "dense_encoder": None,
                                             "multivector_encoder": None}).status_code == 201
    assert main(["cluster", "index", str(src), "--collection", "viacli", "--root", str(root)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["documents"] == 12 and out["installed"] == out["batches"]
    _visible(router, "viacli", 12)
    hits = router.post("/collections/viacli/search", json={"query": "harbor", "mode": "bm25", "k": 1}).json()
    assert hits["results"][0]["id"] == "cli-7"  # harbor
    assert main(["cluster", "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status[ray_app.APP_NAME]["status"].endswith("RUNNING")
    assert set(status[ray_app.APP_NAME]["deployments"]) >= {"Router", "QueryEncoder", "shard-0-reader",
                                                            "shard-1-reader"}


def test_app_builder_runs_a_second_cluster_beside_the_first(cluster, tmp_path):
    """`serve run service.cluster.ray_app:app_builder ...` and KubeRay's serveConfigV2 import the
    builder with string arguments; its writers are named by root, so two clusters share one Ray."""
    router, _, _ = cluster
    root = tmp_path / "second"
    app = ray_app.app_builder({"root": str(root), "shards": "1", "replicas": "1", "cpus": "0.1"})
    serve.run(app, name="lsr-b", route_prefix="/b")
    try:
        base = str(router.base_url).rstrip("/") + "/b"
        with httpx.Client(base_url=base, timeout=300) as c:
            assert c.get("/readyz").json()["shards"] == 1
            assert c.post("/collections", json={"name": "tiny", "sparse_encoder": None, "dense_encoder": None,
                                                "multivector_encoder": None}).status_code == 201
            docs = [{"id": "a", "text": "granite cliffs"}, {"id": "b", "text": "sandy beaches"}]
            assert c.put("/collections/tiny/documents", json={"documents": docs}).status_code == 200
            hits = c.post("/collections/tiny/search", json={"query": "granite", "mode": "bm25"}).json()
            assert [h["id"] for h in hits["results"]] == ["a"]
        # the first cluster still answers, with its own collections only
        assert "tiny" not in [c["name"] for c in router.get("/collections").json()["collections"]]
    finally:
        ray_app.shutdown(root, 1, app_name="lsr-b")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "beir"])
def test_bulk_reads_every_source_as_lsr_index_does(cluster, tmp_path, fmt):
    """Ray Data's reading gives the records `lsr index` reads (service/sources.py), per format."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from service import sources
    rows = [{"_id": "d1", "title": "Tides", "text": "The moon pulls the sea.", "year": 2020},
            {"_id": "d2", "title": "", "text": "Dunes move with the wind.", "metadata": {"k": "v"}}]
    if fmt == "parquet":
        path = tmp_path / "c.parquet"
        pq.write_table(pa.Table.from_pylist([{**r, "metadata": json.dumps(r.get("metadata"))
                                              if "metadata" in r else None} for r in rows]), path)
        want_path = path
    else:
        folder = tmp_path / "beir"
        folder.mkdir()
        path = want_path = folder / "corpus.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if fmt == "beir":
            path = folder
    ds, _ = bulk.read_records(str(path))
    got = sorted((r["id"], r["text"], None if r["metadata"] is None else json.loads(r["metadata"]))
                 for r in ds.take_all())
    want = sorted(sources.read(want_path, "parquet" if fmt == "parquet" else "jsonl"))
    assert got == [(i, t, m) for i, t, m in want]


def test_inference_free_collection_equals_single_node(cluster, corpus):
    """Inference-free queries (tokenizer + the collection's live IDF, summed over the shards)."""
    router, one, _ = cluster
    body = {"name": "ifree", "sparse_encoder": "splade-tiny-inference-free", "dense_encoder": None,
            "multivector_encoder": None}
    for c in (router, one):
        assert c.post("/collections", json=body).status_code == 201
        assert c.put("/collections/ifree/documents", json={"documents": corpus}).status_code == 200
    for req in ({"query": "renewable energy from wind", "mode": "sparse", "k": 8},
                {"query": "ocean tides and the moon", "mode": "hybrid", "k": 8}):
        ra, rb = one.post("/collections/ifree/search", json=req), router.post("/collections/ifree/search", json=req)
        assert ra.status_code == rb.status_code == 200, (ra.text, rb.text)
        assert_same_ranking(_pairs(rb.json()), _pairs(ra.json()))


def test_bulk_index_stores_token_vectors_as_upserts_do(cluster, tmp_path, corpus):
    """A collection that stores token vectors (store_token_vectors) gets them from a bulk load
    too — encoded on the encoder actors, quantised there, installed with the segment — so a
    reranked search reads them as on a single node that took the same documents by upsert."""
    router, one, root = cluster
    body = {"name": "bulktok", "sparse_encoder": None, "dense_encoder": None,
            "index": {"store_token_vectors": "int8", "token_dim": 128}}
    docs = [{"id": d["id"], "text": d["text"]} for d in corpus] + [{"id": "no-text", "text": ""}]
    src = tmp_path / "tok.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    for c in (router, one):
        assert c.post("/collections", json=body).status_code == 201
    assert one.put("/collections/bulktok/documents", json={"documents": docs}).status_code == 200
    out = bulk.bulk_index(str(src), "bulktok", root=root, settings=Settings(data_dir=root, _env_file=None),
                          batch_docs=8)
    assert out["documents"] == len(docs) and out["installed"] == out["batches"]
    _visible(router, "bulktok", len(docs))
    got, want = (c.get("/collections/bulktok").json()["token_vectors"] for c in (router, one))
    assert got["dtype"] == want["dtype"] == "int8" and got["dim"] == want["dim"] == 128
    assert got["bytes_per_document"] == pytest.approx(want["bytes_per_document"], rel=0.01)
    assert got["bytes_per_document"] > 128 * 5  # every document with text has its tokens
    req = {"query": "ocean tides and the moon", "mode": "bm25", "k": 5, "rerank": {"kappa": 20}}
    ra, rb = one.post("/collections/bulktok/search", json=req), router.post("/collections/bulktok/search", json=req)
    assert ra.status_code == rb.status_code == 200, (ra.text, rb.text)
    assert rb.json()["reranked"] == ra.json()["reranked"] > 0
    assert_same_ranking(_pairs(rb.json()), _pairs(ra.json()))
