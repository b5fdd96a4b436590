"""`make run`: fetch the default models, index the bundled demo corpus, serve it on localhost.

    python -m service.demo [--data-dir data/demo] [--host 127.0.0.1] [--port 8000]

The corpus (service/demo_corpus.jsonl) is 200 short documents written for this project on
20 topics, with ``topic`` and ``year`` metadata. Indexing is skipped when the collection
already holds it, so a second run starts serving at once.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = Path(__file__).with_name("demo_corpus.jsonl")
COLLECTION = "demo"


def curl_example(host: str, port: int) -> str:
    body = json.dumps({"query": "how do wind turbines make electricity", "k": 3, "mode": "hybrid"})
    return (f"curl -s -X POST http://{host}:{port}/collections/{COLLECTION}/search "
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)}")


def prepare(store, settings) -> int:
    """Create and fill the demo collection unless it is already complete; returns its size."""
    from . import sources
    from .errors import NotFound
    from .indexing import index_records
    try:
        store.get(COLLECTION)
    except NotFound:
        store.create(COLLECTION, settings.sparse_encoder, settings.dense_encoder,
                     settings.multivector_encoder)
    total = sources.count(CORPUS, "jsonl")
    if store.stats(COLLECTION)["documents"] != total:
        index_records(store, COLLECTION, sources.read(CORPUS, "jsonl"), total)
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m service.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path("data/demo"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)

    import uvicorn

    from encoders.fetch_models import fetch

    from .app import create_app
    from .encoder_cache import ENCODERS
    from .settings import Settings
    from .store import Store
    settings = Settings(data_dir=args.data_dir, host=args.host, port=args.port)
    for name in {settings.sparse_encoder, settings.dense_encoder, settings.multivector_encoder}:
        fetch(name)
    store = Store(settings.data_dir, ENCODERS, settings.encode_batch_size)
    try:  # indexed before the server starts: the server's own store is then the one writer
        n = prepare(store, settings)
    finally:
        store.close()
    app = create_app(settings)
    url = f"http://{args.host}:{args.port}"
    print(f"\nlsr-search demo: collection {COLLECTION!r} with {n} documents\n"
          f"  console: {url}/\n  API:     {url}\n  docs:    {url}/docs\n"
          f"  try:     {curl_example(args.host, args.port)}\n", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
