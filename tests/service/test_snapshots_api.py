"""Snapshots as an API between real servers: download a snapshot (a streamed tar), upload it into
another server's data directory, restore it there (also into a new name) — same search results;
unsafe archives are refused with a 400 naming the field and leave nothing behind."""
import io
import tarfile

import httpx
import pytest

from service.app import create_app
from service.settings import Settings

from .conftest import load_corpus
from .live_server import serve

KEY = {"X-API-Key": "admin"}
READ = {"X-API-Key": "reader"}
NO_DENSE = {"dense_encoder": None, "multivector_encoder": None}
QUERIES = ["baking bread with a starter", "wind turbines and electricity", "how do vaccines work"]


def _app(data):
    return create_app(Settings(data_dir=data, _env_file=None, api_keys="admin", read_keys="reader"))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two servers, each with its own data directory; 'src' on the first holds documents."""
    with serve(_app(tmp_path_factory.mktemp("a"))) as a, serve(_app(tmp_path_factory.mktemp("b"))) as b:
        with httpx.Client(base_url=a, headers=KEY, timeout=60) as ca, \
                httpx.Client(base_url=b, headers=KEY, timeout=60) as cb:
            assert ca.post("/collections", json={"name": "src", **NO_DENSE}).status_code == 201
            docs = load_corpus(per_topic=2, topics=8)
            assert ca.put("/collections/src/documents", json={"documents": docs}).status_code == 200
            yield ca, cb


def _results(c, name: str) -> list:
    out = []
    for q in QUERIES:
        for mode in ("sparse", "bm25", "hybrid"):
            r = c.post(f"/collections/{name}/search", json={"query": q, "mode": mode, "k": 5})
            assert r.status_code == 200, r.text
            out.append([(h["id"], round(h["score"], 5), h["metadata"]) for h in r.json()["results"]])
    return out


def _download(c, name: str, snap: str, headers=None) -> bytes:
    with c.stream("GET", f"/collections/{name}/snapshots/{snap}/download", headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "application/x-tar"
        assert "content-length" not in r.headers  # streamed, not built whole
        assert f'filename="{name}-{snap}.tar"' in r.headers["content-disposition"]
        return b"".join(r.iter_bytes())


def test_download_upload_restore_round_trip(servers):
    ca, cb = servers
    snap = ca.post("/collections/src/snapshots").json()["id"]
    blob = _download(ca, "src", snap, headers=READ)  # a read key may download
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        names = tar.getnames()
    assert names[0] == "lsr-snapshot.json" and "collection.json" in names and "MANIFEST.json" in names
    assert all(not n.startswith(("/", "..")) for n in names)

    # upload into the other server: a snapshot of 'copy' there, then restored
    r = cb.post("/collections/copy/snapshots/upload", files={"file": ("s.tar", blob, "application/x-tar")})
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["collection"] == "copy" and up["bytes"] > 0
    assert [s["id"] for s in cb.get("/collections/copy/snapshots").json()["snapshots"]] == [up["id"]]
    assert cb.get("/collections/copy").status_code == 404  # not restored yet
    r = cb.post(f"/collections/copy/snapshots/{up['id']}/restore")
    assert r.status_code == 200, r.text
    assert r.json()["documents"] == ca.get("/collections/src").json()["documents"]
    assert _results(cb, "copy") == _results(ca, "src")

    # ?restore=true: upload and restore at once (a collection that exists is replaced)
    cb.put("/collections/copy/documents", json={"documents": [{"id": "extra", "text": "gone after restore"}]})
    r = cb.post("/collections/copy/snapshots/upload", params={"restore": "true"},
                files={"file": ("s.tar", blob)})
    assert r.status_code == 201, r.text
    assert cb.get("/collections/copy/documents/extra").status_code == 404
    assert _results(cb, "copy") == _results(ca, "src")

    # the downloaded archive downloads again byte for byte the same files
    again = _download(cb, "copy", up["id"])
    with tarfile.open(fileobj=io.BytesIO(blob)) as t1, tarfile.open(fileobj=io.BytesIO(again)) as t2:
        files1 = {m.name: t1.extractfile(m).read() for m in t1 if m.isfile() and m.name != "lsr-snapshot.json"}
        files2 = {m.name: t2.extractfile(m).read() for m in t2 if m.isfile() and m.name != "lsr-snapshot.json"}
    assert files1 == files2


def test_restore_into_a_new_name(servers):
    ca, _ = servers
    snap = ca.post("/collections/src/snapshots").json()["id"]
    before = ca.get("/collections/src").json()["documents"]
    expected = _results(ca, "src")
    ca.put("/collections/src/documents", json={"documents": [{"id": "later", "text": "written after"}]})
    r = ca.post(f"/collections/src/snapshots/{snap}/restore", json={"target": "src-copy"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "src-copy" and r.json()["documents"] == before
    assert ca.get("/collections/src/documents/later").status_code == 200  # the source is untouched
    assert ca.get("/collections/src-copy/documents/later").status_code == 404
    assert _results(ca, "src-copy") == expected
    # the target exists now: 409 naming it; a bad name: 422 naming target; unknown snapshot: 404
    r = ca.post(f"/collections/src/snapshots/{snap}/restore", json={"target": "src-copy"})
    assert r.status_code == 409 and "target" in r.json()["detail"]
    r = ca.post(f"/collections/src/snapshots/{snap}/restore", json={"target": "../x"})
    assert r.status_code == 422 and "target" in r.json()["detail"]
    r = ca.post(f"/collections/src/snapshots/{snap}/restore", json={"target": 3})
    assert r.status_code == 422 and "target" in r.json()["detail"]
    r = ca.post(f"/collections/src/snapshots/{snap}/restore", json={"targett": "y"})
    assert r.status_code == 422 and "targett" in r.json()["detail"]
    assert ca.post("/collections/src/snapshots/20990101T000000Z-00000000/restore",
                   json={"target": "z"}).status_code == 404
    # restoring into its own name (target = name) replaces as before
    r = ca.post(f"/collections/src/snapshots/{snap}/restore", json={"target": "src"})
    assert r.status_code == 200 and ca.get("/collections/src/documents/later").status_code == 404


def test_download_errors_and_a_concurrent_delete(servers):
    ca, _ = servers
    assert ca.get("/collections/src/snapshots/20990101T000000Z-00000000/download").status_code == 404
    assert ca.get("/collections/src/snapshots/nope/download").status_code == 404
    assert ca.get("/collections/src/snapshots/x/download", headers={"X-API-Key": "bad"}).status_code == 401
    snap = ca.post("/collections/src/snapshots").json()["id"]
    with ca.stream("GET", f"/collections/src/snapshots/{snap}/download") as r:
        chunks = r.iter_raw(512)
        first = next(chunks)
        assert ca.delete(f"/collections/src/snapshots/{snap}").status_code == 204
        blob = first + b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:  # complete: its files were open already
        assert "MANIFEST.json" in tar.getnames()
        for m in tar:
            if m.isfile():
                assert len(tar.extractfile(m).read()) == m.size


def _tar(*members) -> bytes:
    """An archive of (TarInfo, bytes or None) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _member(name: str, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.fixture(scope="module")
def real_files(servers):
    ca, _ = servers
    snap = ca.post("/collections/src/snapshots").json()["id"]
    with tarfile.open(fileobj=io.BytesIO(_download(ca, "src", snap))) as tar:
        return {n: tar.extractfile(n).read() for n in ("collection.json", "MANIFEST.json")}


@pytest.mark.parametrize("bad, message", [
    (lambda ok: _tar(*ok, (_member("/etc/evil"), b"x")), "absolute path"),
    (lambda ok: _tar(*ok, (_member("segments/../../evil"), b"x")), "'..'"),
    (lambda ok: _tar(*ok, (_member("../evil"), b"x")), "'..'"),
    (lambda ok: _tar(*ok, (_member("segments/x", tarfile.SYMTYPE, "/etc/passwd"), None)), "link"),
    (lambda ok: _tar(*ok, (_member("segments/y", tarfile.LNKTYPE, "../../../etc/passwd"), None)), "link"),
    (lambda ok: _tar(*ok, (_member("wal/dev", tarfile.CHRTYPE), None)), "not a regular file"),
    (lambda ok: _tar(*ok, (_member("notes.txt"), b"x")), "not part of a snapshot"),
    (lambda ok: _tar(ok[0]), "MANIFEST.json"),
    (lambda ok: _tar((ok[0][0], b"{}"), ok[1]), "collection.json"),  # checksum missing
    (lambda ok: b"this is not a tar archive" * 40, "tar"),
    (lambda ok: b"", "tar"),
])
def test_unsafe_or_foreign_archives_are_refused(servers, real_files, bad, message):
    _, cb = servers
    ok = [(_member(name), real_files[name]) for name in ("collection.json", "MANIFEST.json")]
    blob = bad(ok)
    r = cb.post("/collections/victim/snapshots/upload", files={"file": ("x.tar", blob)})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert detail.startswith("file:") and message in detail, detail
    assert cb.get("/collections/victim/snapshots").json()["snapshots"] == []  # nothing kept
    # the good members alone are a valid upload (so each refusal above is the bad member's)
    assert cb.post("/collections/victim2/snapshots/upload",
                   files={"file": ("x.tar", _tar(*ok))}).status_code == 201


def test_upload_needs_an_admin_key_and_a_file(servers):
    _, cb = servers
    r = cb.post("/collections/c/snapshots/upload", headers=READ, files={"file": ("x.tar", b"")})
    assert r.status_code == 403
    r = cb.post("/collections/c/snapshots/upload", data={"other": "x"})
    assert r.status_code == 422 and "file" in r.json()["detail"]
    r = cb.post("/collections/bad..name!/snapshots/upload", files={"file": ("x.tar", b"")})
    assert r.status_code == 400 and "name" in r.json()["detail"]
    r = cb.post("/collections/c/snapshots/upload", params={"restore": "maybe"}, files={"file": ("x.tar", b"")})
    assert r.status_code == 422 and "restore" in r.json()["detail"]


def test_a_follower_serves_downloads_and_forwards_uploads_and_restores(tmp_path):
    """Two apps on one data directory (the second is a follower): downloads and scrolls are
    reads the follower serves itself; uploads and restores are forwarded to the writer, and
    a restore into a new name is readable on the follower at once."""
    import time

    from fastapi.testclient import TestClient
    data = tmp_path / "data"
    with TestClient(_app(data)) as writer, TestClient(_app(data)) as follower:
        assert follower.get("/readyz").json()["role"] == "follower"
        assert writer.post("/collections", headers=KEY, json={"name": "c", "sparse_encoder": None,
                                                              **NO_DENSE}).status_code == 201
        docs = [{"id": f"d{i}", "text": f"glacier number {i}"} for i in range(5)]
        assert writer.put("/collections/c/documents", headers=KEY, json={"documents": docs}).status_code == 200
        snap = writer.post("/collections/c/snapshots", headers=KEY).json()["id"]
        deadline = time.monotonic() + 10
        while len(follower.get("/collections/c/documents", headers=READ).json()["documents"]) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = follower.get(f"/collections/c/snapshots/{snap}/download", headers=READ)
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
        r = follower.post("/collections/up/snapshots/upload", headers=KEY, files={"file": ("s.tar", r.content)})
        assert r.status_code == 201, r.text
        r = follower.post(f"/collections/up/snapshots/{r.json()['id']}/restore", headers=KEY,
                          json={"target": "up2"})
        assert r.status_code == 200 and r.json()["documents"] == 5
        page = follower.get("/collections/up2/documents", headers=READ).json()
        assert [d["id"] for d in page["documents"]] == [d["id"] for d in docs]
        assert writer.get("/collections/up2", headers=READ).json()["documents"] == 5
