"""`lsr ... --url`: the CLI against a real server (uvicorn on a loopback port, with an API key)."""
import json
import socket
import threading
import time

import pytest
import uvicorn

from service.app import create_app
from service.cli import main
from service.settings import Settings

from .conftest import load_corpus

KEY = "k"


def _write_jsonl(path, docs) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """A server on a socket bound here (no race for the port), stopped after the module."""
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("data"), _env_file=None, api_keys=KEY))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(30)
    sock.close()


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setenv("LSR_API_KEY", KEY)
    monkeypatch.delenv("LSR_URL", raising=False)


def test_index_search_and_list(url, tmp_path, capsys, monkeypatch):
    docs = load_corpus(per_topic=2, topics=6)
    src = tmp_path / "docs.jsonl"
    _write_jsonl(src, docs)
    assert main(["index", str(src), "--collection", "c", "--url", url, "--no-dense", "--no-progress"]) == 0
    assert f"indexed {len(docs)} documents into 'c' ({len(docs)} in total)" in capsys.readouterr().out

    query = ["search", "baking bread with a starter", "--collection", "c", "--url", url, "--k", "2"]
    assert main(query) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].split()[2] == "cooking-01"  # " 1.  score  id  text"
    monkeypatch.setenv("LSR_URL", url)  # the environment names the server as well as --url
    assert main([a for a in query if a not in ("--url", url)] + ["--mode", "sparse", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    top = res["results"][0]
    assert res["mode"] == "sparse" and len(res["results"]) == 2
    assert top["id"] == "cooking-01" and "bread" in top["text"].lower()

    assert main(["collections", "--json"]) == 0
    (coll,) = [c for c in json.loads(capsys.readouterr().out) if c["name"] == "c"]
    assert coll["documents"] == len(docs) and set(coll["fields"]) == {"sparse", "bm25"}  # --no-dense
    assert main(["collections"]) == 0
    assert f"c  {len(docs)} documents" in capsys.readouterr().out.splitlines()


def test_index_folders_one_job_per_file(url, tmp_path, capsys):
    docs = load_corpus(per_topic=1, topics=6)
    folder = tmp_path / "parts"
    folder.mkdir()
    _write_jsonl(folder / "a.jsonl", docs[:4])
    _write_jsonl(folder / "b.jsonl", docs[4:])
    assert main(["index", str(folder), "--collection", "parts", "--url", url, "--no-dense", "--no-progress"]) == 0
    assert f"indexed {len(docs)} documents into 'parts' ({len(docs)} in total)" in capsys.readouterr().out
    beir = tmp_path / "beir"
    beir.mkdir()
    _write_jsonl(beir / "corpus.jsonl", [{"_id": d["id"], "title": "", "text": d["text"]} for d in docs])
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "not a corpus"}\n')
    assert main(["index", str(beir), "--collection", "beir", "--url", url, "--no-dense", "--no-bm25",
                 "--no-progress"]) == 0
    assert f"indexed {len(docs)} documents into 'beir' ({len(docs)} in total)" in capsys.readouterr().out


def test_server_errors_are_one_line(url, tmp_path, capsys, monkeypatch):
    assert main(["search", "x", "--collection", "missing", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lsr: ") and "not found" in err and len(err.splitlines()) == 1
    monkeypatch.setenv("LSR_API_KEY", "wrong")
    assert main(["search", "x", "--collection", "c", "--url", url]) == 1
    assert capsys.readouterr().err == "lsr: unknown API key\n"
    monkeypatch.delenv("LSR_API_KEY")
    assert main(["collections", "--url", url]) == 1
    assert "missing API key" in capsys.readouterr().err


def test_a_failed_job_is_an_error(url, tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    _write_jsonl(src, [{"id": "a", "text": "fine"}, {"text": "no id here"}])
    assert main(["index", str(src), "--collection", "bad", "--url", url, "--no-dense", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lsr: job ") and "failed" in err and "no id" in err


def test_refused_connection_and_bad_arguments(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
        assert main(["search", "x", "--collection", "c", "--url", closed]) == 1
    assert capsys.readouterr().err == f"lsr: cannot connect to {closed} (is `lsr serve` running there?)\n"
    assert main(["search", "x", "--collection", "c", "--url", closed, "--data-dir", str(tmp_path)]) == 1
    assert "not both" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "nope.jsonl"), "--collection", "c", "--url", closed]) == 1
    assert "does not exist" in capsys.readouterr().err
