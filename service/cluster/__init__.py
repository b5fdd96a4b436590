"""lsr-search on a cluster: hash-sharded, replicated collections (Ray Serve) and bulk indexing
(Ray Data). Ray is optional (the ``cluster`` extra); only ``ray_app`` and ``bulk`` import it.

    client ──REST──> router (the same FastAPI app as `lsr serve`, over ClusterStore)
                        │  writes: to the owning shard's writer (hash of the document id)
                        │  reads:  scatter to one reader replica per shard, gather, fuse, rerank
                        ├──> query encoder (batched across requests)
                        ├──> shard i writer  (one Ray actor: the shard's Store, WAL, maintenance)
                        └──> shard i readers (R replicas: the shard's directory, read-only)

- placement.py: which shard owns a document, and where its data directory is;
- shard.py:     what one shard does (ShardService over a Store), with plain-data arguments;
- backend.py:   the router's side — ClusterStore and ShardedCollection present the shards as
                the Store and Collection that the routes and the search pipeline already use;
- transport.py: how the router reaches the shards (in-process, or Ray in ray_app.py);
- ray_app.py:   the Ray Serve application; bulk.py: Ray Data bulk indexing; cli.py: `lsr cluster`.
"""
