"""Scroll / export: every document of a collection, page by page, in id order.

A page is the `limit` smallest live ids greater than the cursor's id (ids compare by Unicode
code points), so a scroll is correct while the collection changes between pages: ids only
grow along it, so no document comes twice, and a document that exists for the whole scroll
has an id past some cursor and before the next, so it comes once. One that is upserted meanwhile
comes if its id is still ahead; one deleted meanwhile does not come. The cursor is opaque to
clients (base64 of a small JSON object) and holds no server state: it never expires.

Which documents match a filter is read from the collection's per-segment metadata columns (the
filters.py evaluation a filtered delete uses); the documents of a page are then read one by one
and checked again, so a page never carries a document that no longer matches.
"""
from __future__ import annotations

import base64
import binascii
import heapq
import json

from indexer.filters import Filter, MetadataColumns

from .errors import BadRequest

MAX_LIMIT = 1000


def encode_cursor(after: str) -> str:
    raw = json.dumps({"after": after}, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = json.loads(raw.decode("utf-8"))["after"]
    except (binascii.Error, ValueError, UnicodeDecodeError, KeyError, TypeError):
        after = None
    if not isinstance(after, str):
        raise BadRequest("cursor: not a cursor this server issued (pass next_cursor unchanged)")
    return after


def parse_filter(raw: str | None) -> Filter | None:
    """The `filter` query parameter: a JSON object in the search filter syntax."""
    if raw is None or raw == "":
        return None
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"filter: not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise BadRequest(f"filter: must be a JSON object, got {type(spec).__name__}")
    flt = Filter.parse(spec)  # InvalidInputError (400) names the key and the operator
    return flt if flt.conditions else None


def _matches(flt: Filter | None, metadata) -> bool:
    return flt is None or bool(flt.mask(MetadataColumns([metadata]))[0])


def page(coll, cursor: str | None, limit: int, flt: Filter | None) -> dict:
    """One page: ``{"documents": [{"id", "text", "metadata"}], "next_cursor"}``."""
    after = decode_cursor(cursor)
    ids = coll.ids(flt)  # the live (matching) ids at one moment
    ahead = ids if after is None else (i for i in ids if i > after)
    chosen = heapq.nsmallest(limit + 1, ahead)
    more = len(chosen) > limit
    chosen = chosen[:limit]
    docs = []
    for doc_id in chosen:
        doc = coll.get(doc_id)
        if doc is not None and _matches(flt, doc.metadata):  # deleted or changed meanwhile
            docs.append({"id": doc.id, "text": doc.text, "metadata": doc.metadata})
    return {"documents": docs, "next_cursor": encode_cursor(chosen[-1]) if more else None}


def iterate(coll, flt: Filter | None = None, limit: int = MAX_LIMIT):
    """Every document (matching the filter), in id order, a page at a time."""
    cursor = None
    while True:
        p = page(coll, cursor, limit, flt)
        yield from p["documents"]
        cursor = p["next_cursor"]
        if cursor is None:
            return
