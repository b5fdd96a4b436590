"""Index a stream of records into a collection in chunks, with an optional progress bar.
Used by the CLI (`lsr index`, `lsr eval`) and the demo; jobs run the same steps in the background."""
from __future__ import annotations

from collections.abc import Iterable

from tqdm.auto import tqdm

from .sources import Record
from .store import Store


def index_records(store: Store, name: str, records: Iterable[Record], total: int | None = None,
                  chunk: int = 64, progress: bool = True) -> int:
    """Upsert every record; returns how many were written. Durable chunk by chunk."""
    done = 0
    bar = tqdm(total=total, desc=f"indexing {name}", unit="doc", disable=not progress)
    batch: list[Record] = []

    def flush() -> None:
        nonlocal done
        last = {r[0]: i for i, r in enumerate(batch)}  # a repeated id: its last version wins
        keep = [batch[i] for i in sorted(last.values())]
        store.upsert(name, [r[0] for r in keep], [r[1] for r in keep], [r[2] for r in keep])
        done += len(batch)
        bar.update(len(batch))
        batch.clear()

    try:
        for rec in records:
            batch.append(rec)
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
    finally:
        bar.close()
    return done
