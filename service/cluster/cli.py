"""`lsr cluster serve | index | status | stop`: the cluster commands (Ray is imported only when
one of them runs; the `cluster` extra installs it)."""
from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path


def _connect(address: str | None, num_cpus: int | None = None):
    try:
        import ray
    except ImportError:
        raise ValueError("the cluster commands need Ray: pip install 'lsr-search[cluster]'") from None
    from .ray_app import NAMESPACE
    if ray.is_initialized():  # called from a program (or test) that is connected already
        return ray
    # address None: a new single-node Ray in this process (num_cpus explicit, so that Serve
    # replicas and Ray Data's encoder actors share the machine as configured)
    ray.init(address=address, namespace=NAMESPACE, num_cpus=None if address else num_cpus,
             include_dashboard=False, configure_logging=False)
    return ray


def _settings(args):
    from ..settings import Settings
    return Settings(data_dir=args.root) if args.root else Settings()


def cmd_serve(args) -> int:
    ray = _connect(args.address, args.num_cpus)
    from ray import serve

    from . import ray_app
    # Our SIGTERM handler replaces the one ray.init installed (sys.exit(15)) before the deploy,
    # not after it: /readyz can answer while serve.run is still returning, and a SIGTERM then
    # must stop the cluster cleanly rather than exit with status 15 and leave it running.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = _settings(args)
    root = Path(args.root or settings.data_dir)
    try:
        ray_app.deploy(settings, root, args.shards, args.replicas, encoder_replicas=args.encoder_replicas,
                       encoder_max_replicas=args.encoder_max_replicas, cpus=args.cpus_per_replica,
                       host=args.host or settings.host, port=args.port or settings.port)
        print(f"lsr cluster: {args.shards} shard(s) x {args.replicas} reader replica(s) of {root} on "
              f"http://{args.host or settings.host}:{args.port or settings.port} (Ctrl-C stops it)", flush=True)
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if args.address is None:  # our own Ray: take everything down with us
            ray_app.shutdown(root, args.shards)
            serve.shutdown()
            ray.shutdown()
    return 0


def cmd_index(args) -> int:
    _connect(args.address)
    from . import bulk
    settings = _settings(args)
    out = bulk.bulk_index(str(args.source), args.collection, root=args.root, settings=settings, fmt=args.format,
                          encoder_actors=args.encoder_actors, encoder_gpus=args.encoder_gpus,
                          batch_docs=args.batch_docs)
    print(json.dumps(out))
    return 0


def cmd_status(args) -> int:
    _connect(args.address)
    from ray import serve
    status = serve.status()
    apps = {name: {"status": str(app.status),
                   "deployments": {d: str(s.status) for d, s in app.deployments.items()}}
            for name, app in status.applications.items()}
    print(json.dumps(apps, indent=2))
    return 0


def cmd_stop(args) -> int:
    _connect(args.address)
    from ray import serve

    from . import ray_app
    ray_app.shutdown(args.root or _settings(args).data_dir)
    serve.shutdown()
    return 0


def add_commands(sub) -> None:
    """`lsr cluster ...` under the main parser's sub-commands."""
    p = sub.add_parser("cluster", help="sharded, replicated serving and bulk indexing on a Ray cluster")
    csub = p.add_subparsers(dest="cluster_command", required=True)

    def common(q: argparse.ArgumentParser, default_address: str | None) -> None:
        q.add_argument("--address", default=default_address,
                       help="Ray cluster address (auto, ray://host:10001, host:6379); "
                       + ("default: start a single-node Ray here" if default_address is None else
                          f"default: {default_address}"))
        q.add_argument("--root", type=Path, help="the cluster's data directory (shared storage across "
                       "machines): shard-NNN/ directories, aliases, jobs; default: LSR_DATA_DIR")

    q = csub.add_parser("serve", help="deploy the REST API over S shards x R reader replicas")
    common(q, None)
    q.add_argument("--shards", type=int, default=2)
    q.add_argument("--replicas", type=int, default=2, help="reader replicas per shard")
    q.add_argument("--encoder-replicas", type=int, default=1)
    q.add_argument("--encoder-max-replicas", type=int, help="autoscale the query encoder up to this")
    q.add_argument("--cpus-per-replica", type=float, default=1.0,
                   help="Ray CPUs each router, reader, encoder replica and writer reserves")
    q.add_argument("--num-cpus", type=int, help="CPUs of a single-node Ray started here")
    q.add_argument("--host")
    q.add_argument("--port", type=int)
    q.set_defaults(func=cmd_serve)
    q = csub.add_parser("index", help="bulk-index a JSONL / Parquet file or BEIR folder with Ray Data")
    common(q, "auto")
    q.add_argument("source", help="a local path or a URI pyarrow reads (s3://, gs://, hdfs://)")
    q.add_argument("--collection", required=True)
    q.add_argument("--format", choices=["jsonl", "parquet", "beir"])
    q.add_argument("--encoder-actors", type=int, default=1)
    q.add_argument("--encoder-gpus", type=float, default=0.0, help="GPUs per encoder actor")
    q.add_argument("--batch-docs", type=int, default=1024, help="documents per installed segment")
    q.set_defaults(func=cmd_index)
    q = csub.add_parser("status", help="the Serve application and its deployments")
    common(q, "auto")
    q.set_defaults(func=cmd_status)
    q = csub.add_parser("stop", help="remove the application and the shard writers (data stays)")
    common(q, "auto")
    q.set_defaults(func=cmd_stop)
