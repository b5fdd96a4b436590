"""The one search pipeline, shared by the REST routes and the CLI:

    query -> encoders -> collection search per list (sparse / bm25 / dense)
          -> optional PRF (interpolated before and after) -> fusion (RRF / convex)
          -> optional MaxSim rerank (alpha / beta pruning) -> page -> text, metadata, explanation

Pagination: every list is retrieved to a depth that depends only on which depth window the page
falls in (``depth x ceil((offset + k) / depth)``), not on the offset itself, and every ranking
breaks ties by id, so consecutive pages of one window are slices of one ranking.
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from indexer import Collection, Hit
from indexer.filters import Filter
from indexer.query import DEFAULTS

from . import fusion, lexical, prf, raw_vectors
from .errors import BadRequest
from .query_batching import QueryBatcher
from .rerank import maxsim_rerank
from .schemas import SearchRequest, SearchResponse, SearchResult
from .store import EncoderSet, Store
from .timing import NO_TIMINGS, Timings

EXPLAIN_TERMS = 20
# the second and third lists of a lone hybrid search (SearchPipeline._run_lists); the encoders
# and the index kernels release the GIL, so the lists really run side by side
_LIST_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lsr-list")


@dataclass
class QueryVectors:
    sparse: tuple[np.ndarray, np.ndarray] | None = None
    bm25: tuple[np.ndarray, np.ndarray] | None = None
    dense: np.ndarray | None = None


class TokenCache:
    """LRU of document token vectors for reranking, keyed by collection, id and text hash."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: list[tuple], texts: list[str], encode) -> list[np.ndarray]:
        with self._lock:
            found = {k: self._items[k] for k in keys if k in self._items}
            for k in found:
                self._items.move_to_end(k)
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            vecs = encode([texts[i] for i in missing])
            with self._lock:
                for i, v in zip(missing, vecs):
                    found[keys[i]] = v
                    self._items[keys[i]] = v
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return [found[k] for k in keys]


def _text_key(text: str | None) -> str:
    return hashlib.blake2b((text or "").encode("utf-8"), digest_size=8).hexdigest()


class SearchPipeline:
    def __init__(self, store: Store, max_k: int = 1000, token_cache: TokenCache | None = None,
                 queries: QueryBatcher | None = None):
        self.store = store
        self.max_k = max_k
        self.tokens = token_cache or TokenCache()
        self.queries = queries or QueryBatcher()
        # lists run in parallel while at most this many searches are in flight (_run_lists)
        self.parallel_below = max(1, len(os.sched_getaffinity(0)) // 2)
        self._in_flight = 0
        self._flight_lock = threading.Lock()

    # ---------------------------------------------------------------- entry point
    def search(self, name: str, req: SearchRequest, timings: Timings = NO_TIMINGS) -> SearchResponse:
        page_end = req.offset + req.k
        if page_end > self.max_k:
            raise BadRequest(f"offset + k = {page_end} exceeds the limit of {self.max_k}")
        coll = self.store.get(name)
        enc = self.store.encoder_set(coll)
        names = self._lists_for(req.mode, enc)
        self._check_query_inputs(name, req, names, enc)
        if req.rerank is not None and enc.multivector is None:
            raise BadRequest(f"collection {name!r} has no multivector encoder to rerank with")
        window = max(req.depth, req.rerank.kappa if req.rerank else 0)
        depth = window * math.ceil(page_end / window)
        # The filter is the only user input the index sees: validate it here (400), so that an
        # error inside a search stays a server error instead of passing for a client one.
        try:
            flt = Filter.parse(req.filter)
        except ValueError as exc:
            raise BadRequest(f"filter: {exc}") from None
        qv, lists, hits = self._run_lists(names, req, enc, coll, depth, flt, timings)
        with timings.stage("fuse"):
            fused = self._fuse(lists, req)
        reranked, stats = 0, None
        if req.rerank is not None:
            with timings.stage("rerank"):
                fused, reranked, stats = self._rerank(coll, enc, req, fused, hits)
        page = fused[req.offset:page_end]
        results = []
        with timings.stage("fetch"):  # text and metadata: read for the page only
            self.store.fetch_page(coll, [hits[d] for d, _ in page])
            for doc_id, score in page:
                h = hits[doc_id]
                expl = self._explain(coll, enc, qv, lists, doc_id, req) if req.explain else None
                results.append(SearchResult(id=doc_id, score=score, text=h.text, metadata=h.metadata,
                                            explanation=expl))
        return SearchResponse(results=results, mode=req.mode, offset=req.offset, k=req.k,
                              candidates=len(fused), reranked=reranked, rerank_stats=stats)

    # ---------------------------------------------------------------- stages
    @staticmethod
    def _lists_for(mode: str, enc: EncoderSet) -> list[str]:
        available = enc.fields
        if mode == "hybrid":
            return available
        if mode not in available:
            raise BadRequest(f"mode {mode!r} needs a {mode} field; this collection has {available}")
        return [mode]

    @staticmethod
    def _check_query_inputs(name: str, req: SearchRequest, names: list[str], enc: EncoderSet) -> None:
        """Each list the mode searches needs the query text or a query vector (vector.<list>);
        a vector for a list the search does not run is a mistake, not something to ignore."""
        given = req.vector.given() if req.vector is not None else {}
        for f in given:
            if f not in enc.fields:
                raise BadRequest(f"vector.{f}: collection {name!r} has no {f} field (its lists: "
                                 f"{enc.fields})")
            if f not in names:
                raise BadRequest(f"vector.{f}: mode {req.mode!r} does not search the {f} list (it "
                                 f"searches {names}); use mode {f!r} or 'hybrid'")
        if req.query is None:
            missing = [n for n in names if n not in given]
            if not given:
                raise BadRequest("query: give the query text, or query vectors in vector")
            if missing:
                raise BadRequest(f"vector.{missing[0]}: no query text, and no vector for the "
                                 f"{missing[0]} list, which mode {req.mode!r} searches (lists: "
                                 f"{names}); give query, vectors for every list, or another mode")
            if req.rerank is not None:
                raise BadRequest("rerank: needs the query text (MaxSim encodes the query's tokens); "
                                 "give query beside vector, or leave out rerank")

    def _run_lists(self, names, req: SearchRequest, enc: EncoderSet, coll: Collection, depth: int,
                   flt, timings: Timings):
        """Encode, retrieve (and PRF) every list: the first in this thread, the others in the
        list pool when this is the only search in flight (spare cores cut a lone hybrid
        search's latency); under load one after the other, as extra threads would only add
        switching to cores that are busy anyway. Stage times of parallel lists add up."""
        with self._flight_lock:
            self._in_flight += 1
            parallel = len(names) > 1 and self._in_flight <= self.parallel_below
        try:
            def one(name):
                return self._one_list(name, req, enc, coll, depth, flt, timings)
            if parallel:
                rest = [_LIST_POOL.submit(one, n) for n in names[1:]]
                done = [one(names[0])] + [f.result() for f in rest]
            else:
                done = [one(n) for n in names]
        finally:
            with self._flight_lock:
                self._in_flight -= 1
        qv, lists, hits = QueryVectors(), {}, {}
        for name, (vec, ranked, found) in zip(names, done):
            setattr(qv, name, vec)
            lists[name] = ranked
            for doc_id, h in found.items():
                hits.setdefault(doc_id, h)
        return qv, lists, hits

    def _one_list(self, name: str, req: SearchRequest, enc: EncoderSet, coll: Collection, depth: int,
                  flt, timings: Timings):
        with timings.stage("encode"):
            vec = self._encode_list(name, req, enc, coll)
        hits: dict[str, Hit] = {}
        with timings.stage("retrieve"):
            ranked = self._retrieve(coll, name, vec, depth, flt, hits)
            if req.prf is not None:
                ranked = self._feedback(coll, name, vec, ranked, depth, req, flt, hits)
        return vec, ranked, hits

    def _encode_list(self, name: str, req: SearchRequest, enc: EncoderSet, coll: Collection):
        """The query vector of one list: the client's (vector.<list>, checked and put into the
        encoder's form: service/raw_vectors.py) or the encoded query text. The one place that
        decides between them."""
        raw = getattr(req.vector, name, None) if req.vector is not None else None
        if raw is not None:
            return raw_vectors.query_vector(name, raw, coll, enc, f"vector.{name}")
        query = req.query
        if query is None:  # _check_query_inputs refused this already
            raise BadRequest(f"vector.{name}: no query text and no vector for the {name} list")
        if name == "sparse":
            row = self.queries.encode(enc.sparse, query)  # a 1 × vocabulary CSR row
            return row.indices.astype(np.int32), row.data.astype(np.float32)
        if name == "bm25":
            def stats(terms):
                s = coll.term_stats("bm25", terms)
                return s.df, s.n_docs
            return lexical.encode_query(query, stats)
        return self.queries.encode(enc.dense, query)

    def _search_field(self, coll: Collection, field: str, query, k: int, flt: Filter | None) -> list[Hit]:
        if field == "dense":
            return coll.search_dense(query, k=k, field="dense", filter=flt)
        ids, vals = query
        if len(ids) == 0:
            return []
        # BM25 visits every query term (a few, all informative); SPLADE the default cut
        # (indexer/query.py: measured against exact search)
        cut = len(ids) if field == "bm25" else min(DEFAULTS.query_cut, len(ids))
        return coll.search(ids, vals, k=k, field=field, filter=flt, query_cut=cut,
                           heap_factor=DEFAULTS.heap_factor)

    def _retrieve(self, coll, field, query, depth, flt, hits) -> list[tuple[str, float]]:
        found = self._search_field(coll, field, query, depth, flt)
        for h in found:
            hits.setdefault(h.id, h)
        return [(h.id, h.score) for h in found]

    def _feedback(self, coll, field, query, ranked, depth, req: SearchRequest, flt, hits):
        spec = req.prf
        top = [coll.get(d) for d, _ in ranked[:spec.docs]]
        vecs = [doc.vectors[field] for doc in top if doc is not None]
        if not vecs:
            return ranked
        if field == "dense":
            q = prf.rocchio_dense(query, vecs, spec.query_weight)
        else:
            ids, vals = query
            q = prf.rocchio_sparse(ids, vals, vecs, coll.config.fields[field].dim,
                                   spec.query_weight, spec.terms)
        found = self._search_field(coll, field, q, depth, flt)
        for h in found:
            hits.setdefault(h.id, h)
        mixed = prf.interpolate(ranked, [(h.id, h.score) for h in found], spec.score_weight)
        return mixed[:depth]

    @staticmethod
    def _fuse(lists: dict, req: SearchRequest) -> list[tuple[str, float]]:
        if len(lists) == 1:
            return list(next(iter(lists.values())))
        spec = req.fusion
        if spec is None or spec.method == "rrf":
            k = 60.0 if spec is None else spec.k
            return fusion.rrf(lists, k, spec.weights if spec is not None else None)
        weights = spec.weights or fusion.hybrid_weights(list(lists), spec.alpha)
        try:
            return fusion.convex(lists, weights, spec.normalization)
        except ValueError as exc:
            raise BadRequest(f"fusion: {exc}") from None

    def _rerank(self, coll, enc: EncoderSet, req: SearchRequest, fused, hits):
        spec = req.rerank
        head = fused[:spec.kappa]
        mv = enc.multivector
        q_tokens = self.queries.encode(mv, req.query)

        def doc_tokens(ids: list[str]) -> list[np.ndarray]:
            self.store.fetch_page(coll, [hits[d] for d in ids])
            texts = [hits[d].text or "" for d in ids]
            keys = [(coll.name, d, _text_key(t)) for d, t in zip(ids, texts)]
            return self.tokens.get_many(keys, texts, lambda ts: mv.encode_documents(ts, batch_size=16))

        scored, stats = maxsim_rerank(head, q_tokens, doc_tokens, spec.top or req.offset + req.k,
                                      spec.alpha, spec.beta, first_stage_weight=spec.first_stage_weight)
        done = {d for d, _ in scored}
        rest = [(d, s) for d, s in fused if d not in done]
        return scored + rest, len(scored), {"candidates": stats.candidates, "pruned": stats.pruned,
                                            "scored": stats.scored}

    def _explain(self, coll, enc: EncoderSet, qv: QueryVectors, lists, doc_id, req: SearchRequest) -> dict:
        # each list before fusion: this document's score and rank in it (absent: not retrieved
        # to the list's depth), and the list's best score, to compare against
        out: dict = {"scores": {}, "ranks": {}, "best": {n: lst[0][1] for n, lst in lists.items() if lst}}
        for n, lst in lists.items():
            for rank, (d, s) in enumerate(lst, 1):
                if d == doc_id:
                    out["scores"][n], out["ranks"][n] = s, rank
                    break
        doc = coll.get(doc_id)
        if doc is None:
            return out
        if qv.sparse is not None:
            out["sparse"] = _term_contributions(qv.sparse, doc.vectors["sparse"],
                                                lambda ids: enc.sparse.tokenizer.convert_ids_to_tokens(ids))
        if qv.bm25 is not None:
            raw = req.vector.bm25 if req.vector is not None else None
            words = raw_vectors.bm25_words(raw) if raw is not None else lexical.token_terms(req.query)
            out["bm25"] = _term_contributions(qv.bm25, doc.vectors["bm25"],
                                              lambda ids: [words.get(i, str(i)) for i in ids])
        return out


def _term_contributions(query, doc_row, names) -> dict:
    """Per shared term: query weight x document weight, largest first; they sum to the score."""
    q_ids, q_vals = query
    d = doc_row.tocsr() if hasattr(doc_row, "tocsr") else doc_row
    d_ids, d_vals = np.asarray(d.indices), np.asarray(d.data, np.float64)
    common, qi, di = np.intersect1d(q_ids, d_ids, assume_unique=True, return_indices=True)
    contrib = q_vals[qi].astype(np.float64) * d_vals[di]
    order = np.argsort(-contrib, kind="stable")[:EXPLAIN_TERMS]
    terms = names([int(common[i]) for i in order])
    return {"score": float(contrib.sum()),
            "terms": [{"term": t, "query_weight": float(q_vals[qi[i]]), "doc_weight": float(d_vals[di[i]]),
                       "contribution": float(contrib[i])} for t, i in zip(terms, order)]}
