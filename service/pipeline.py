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

from encoders.multivector import StackedTokens, project_tokens
from indexer import Collection, Hit
from indexer.facets import FacetCounts
from indexer.filters import Filter
from indexer.query import DEFAULTS

from . import exclusions, fusion, highlight, lexical, models, prf, raw_vectors
from .errors import BadRequest
from .query_batching import QueryBatcher
from .rerank import maxsim_rerank
from .schemas import (ExclusionOut, FacetOut, FacetValue, HighlightSpec, SearchRequest, SearchResponse,
                      SearchResult)
from .store import EncoderSet, Store, token_projection
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
        self.early_query_tokens = True  # rerank: encode the query's tokens beside the lists
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
        asked = req.query
        req, excl = self._exclusions(req)
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
        # MaxSim's query tokens: encoded beside the first-stage lists while cores are free
        q_tokens = None
        if req.rerank is not None and self.early_query_tokens and self._in_flight < self.parallel_below:
            q_tokens = _LIST_POOL.submit(self.queries.encode, enc.multivector, req.query)
        qv, lists, hits = self._run_lists(names, req, enc, coll, depth, flt, timings, excl)
        penalties: dict[str, float] = {}
        if excl:
            with timings.stage("exclude"):
                lists, penalties, excluded = self._exclude(excl, coll, lists, hits, qv, depth, flt, req)
        with timings.stage("fuse"):
            fused = exclusions.demote(self._fuse(lists, req), penalties)
        reranked, stats = 0, None
        if req.rerank is not None:
            with timings.stage("rerank"):
                fused, reranked, stats = self._rerank(coll, enc, req, fused, hits, q_tokens)
                fused = exclusions.demote(fused[:reranked], penalties) + fused[reranked:]
        facets = None
        if req.facets:
            with timings.stage("facets"):
                facets = self._facets(coll, req, flt, fused)
        page = fused[req.offset:page_end]
        results = []
        spec = req.highlight if not isinstance(req.highlight, bool) else (HighlightSpec() if req.highlight else None)
        with timings.stage("fetch"):  # text and metadata: read for the page only
            self.store.fetch_page(coll, [hits[d] for d, _ in page])
            for doc_id, score in page:
                h = hits[doc_id]
                doc = coll.get(doc_id) if req.explain or spec is not None else None
                expl = self._explain(coll, enc, qv, lists, doc_id, req, doc) if req.explain else None
                marks = self._highlight(enc, qv, req, doc, spec) if spec is not None else None
                results.append(SearchResult(id=doc_id, score=score, text=h.text, metadata=h.metadata,
                                            explanation=expl, highlights=marks))
        out = SearchResponse(results=results, mode=req.mode, offset=req.offset, k=req.k,
                             candidates=len(fused), reranked=reranked, rerank_stats=stats, facets=facets)
        if excl:
            out.exclusions = [ExclusionOut(text=e.text, weight=e.weight, source=e.source) for e in excl]
            out.excluded = excluded
            if req.query != asked:
                out.query = req.query
        return out

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
                   flt, timings: Timings, excl: list = ()):
        """Encode, retrieve (and PRF) every list: the first in this thread, the others in the
        list pool when this is the only search in flight (spare cores cut a lone hybrid
        search's latency); under load one after the other, as extra threads would only add
        switching to cores that are busy anyway. Stage times of parallel lists add up."""
        with self._flight_lock:
            self._in_flight += 1
            parallel = len(names) > 1 and self._in_flight <= self.parallel_below
        try:
            def one(name):
                return self._one_list(name, req, enc, coll, depth, flt, timings, excl)
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
                  flt, timings: Timings, excl: list = ()):
        with timings.stage("encode"):
            vec = self._encode_list(name, req, enc, coll)
        hits: dict[str, Hit] = {}
        with timings.stage("retrieve"):
            ranked = self._retrieve(coll, name, vec, depth, flt, hits)
            if req.prf is not None:
                ranked = self._feedback(coll, name, vec, ranked, depth, req, flt, hits, excl)
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
            # any sparse kind; inference-free with live IDF runs no model (service/models.py)
            return models.sparse_query(enc.sparse, query, coll, self.queries)
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
        # BM25 visits every query term (a few, all informative); a sparse field its own search
        # defaults (FieldSpec.search_defaults: indexer/query.py's, measured against exact
        # search, unless its encoder's kind recorded others, service/models.py FIELD_PROFILES)
        if field == "bm25":
            return coll.search(ids, vals, k=k, field=field, filter=flt, query_cut=len(ids),
                               heap_factor=DEFAULTS.heap_factor)
        return coll.search(ids, vals, k=k, field=field, filter=flt)

    def _retrieve(self, coll, field, query, depth, flt, hits) -> list[tuple[str, float]]:
        found = self._search_field(coll, field, query, depth, flt)
        for h in found:
            hits.setdefault(h.id, h)
        return [(h.id, h.score) for h in found]

    @staticmethod
    def _feedback_docs(coll, ranked, n: int, excl=()) -> list:
        """The top ``n`` documents of a list that the search keeps: one an exclusion removes
        would pull the excluded words back into the expanded query (demoted ones stay)."""
        matcher = exclusions.Matcher(excl) if excl else None
        top = []
        for d, _ in ranked[:n * 4]:  # bounded: past that, feedback from fewer documents
            if len(top) == n:
                break
            doc = coll.get(d)
            if doc is None or (matcher is not None and exclusions.penalty(matcher.matches(doc.text)) is None):
                continue
            top.append(doc)
        return top

    def _feedback(self, coll, field, query, ranked, depth, req: SearchRequest, flt, hits, excl=()):
        spec = req.prf
        vecs = [doc.vectors[field] for doc in self._feedback_docs(coll, ranked, spec.docs, excl)]
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

    def _rerank(self, coll, enc: EncoderSet, req: SearchRequest, fused, hits, early=None):
        """early: a future of the query's token vectors, started beside the first stage."""
        spec = req.rerank
        head = fused[:spec.kappa]
        mv = enc.multivector
        # a collection that stores token vectors (store_token_vectors) reads them; its query
        # tokens go through the fixed projection its documents' went through (if any)
        stored = bool(coll.config.store_token_vectors)
        weight = token_projection(mv.dim, coll.config.token_dim) if stored else None
        raw = early.result() if early is not None else self.queries.encode(mv, req.query)
        q_tokens = project_tokens(raw, weight)

        def encode(texts: list[str]) -> list[np.ndarray]:
            return [project_tokens(t, weight) for t in mv.encode_documents(texts, batch_size=16)]

        def on_demand(ids: list[str]) -> list[np.ndarray]:
            self.store.fetch_page(coll, [hits[d] for d in ids])
            texts = [hits[d].text or "" for d in ids]
            keys = [(coll.name, d, _text_key(t)) for d, t in zip(ids, texts)]
            return self.tokens.get_many(keys, texts, encode)

        def doc_tokens(ids: list[str]):
            if not stored:
                return on_demand(ids)
            rows = coll.token_vectors(ids)  # one stacked block, scored as stored (int8 / fp16)
            lengths = np.diff(rows.ptr)
            # encoded after all: documents gone since the first stage, or stored without
            # tokens although they have text (written before / through raw vectors)
            missing = [i for i, n in enumerate(lengths) if n == 0 and hits[ids[i]].text]
            if not missing:
                return StackedTokens(rows.codes, lengths, rows.scales if rows.dtype == "int8" else None)
            encoded = dict(zip(missing, on_demand([ids[i] for i in missing])))
            return [encoded[i] if i in encoded else rows.doc(i) for i in range(len(ids))]

        scored, stats = maxsim_rerank(head, q_tokens, doc_tokens, spec.top or req.offset + req.k,
                                      spec.alpha, spec.beta, first_stage_weight=spec.first_stage_weight)
        done = {d for d, _ in scored}
        rest = [(d, s) for d, s in fused if d not in done]
        return scored + rest, len(scored), {"candidates": stats.candidates, "pruned": stats.pruned,
                                            "scored": stats.scored}

    def _explain(self, coll, enc: EncoderSet, qv: QueryVectors, lists, doc_id, req: SearchRequest,
                 doc=None) -> dict:
        # each list before fusion: this document's score and rank in it (absent: not retrieved
        # to the list's depth), and the list's best score, to compare against
        out: dict = {"scores": {}, "ranks": {}, "best": {n: lst[0][1] for n, lst in lists.items() if lst}}
        for n, lst in lists.items():
            for rank, (d, s) in enumerate(lst, 1):
                if d == doc_id:
                    out["scores"][n], out["ranks"][n] = s, rank
                    break
        doc = doc if doc is not None else coll.get(doc_id)
        if doc is None:
            return out
        if qv.sparse is not None:
            out["sparse"] = _term_contributions(qv.sparse, doc.vectors["sparse"],
                                                models.term_names(enc.sparse))
        if qv.bm25 is not None:
            raw = req.vector.bm25 if req.vector is not None else None
            words = raw_vectors.bm25_words(raw) if raw is not None else lexical.token_terms(req.query)
            out["bm25"] = _term_contributions(qv.bm25, doc.vectors["bm25"],
                                              lambda ids: [words.get(i, str(i)) for i in ids])
        return out

    # ---------------------------------------------------------------- exclusions, facets, highlights
    def _exclude(self, excl, coll, lists: dict, hits: dict, qv, depth: int, flt, req: SearchRequest):
        """Each list without the candidates an exclusion removes (and the demoted ones'
        penalties). A list that came back full and lost candidates is refilled from one deeper
        retrieval with the same query vector, so that excluding costs no recall at the list's
        depth. (Not with PRF: its second-round list is a mix that a deeper first round would
        change, so it stays as retrieved.)"""
        def texts_of(lsts) -> None:  # every candidate's text in one go (one call per shard in a cluster)
            self.store.fetch_page(coll, list({d: hits[d] for lst in lsts.values() for d, _ in lst}.values()))
        texts_of(lists)
        kept, penalties, excluded = _apply_exclusions(excl, lists, hits)
        short = [n for n in lists if len(lists[n]) >= depth and len(kept[n]) < depth]
        if not short or req.prf is not None:
            return kept, penalties, excluded
        deeper = dict(lists)
        for name in short:  # deep enough to make up for what was removed, and then some
            lost = depth - len(kept[name])
            deeper[name] = self._retrieve(coll, name, getattr(qv, name), depth + max(2 * lost, depth // 2), flt, hits)
        texts_of({n: deeper[n] for n in short})
        kept, penalties, excluded = _apply_exclusions(excl, deeper, hits)
        return {n: lst[:depth] for n, lst in kept.items()}, penalties, excluded

    @staticmethod
    def _exclusions(req: SearchRequest) -> tuple[SearchRequest, list]:
        """The request with its query cleared of what it excludes, and every exclusion
        (must_not, -term / -"phrase", natural-language negation: service/exclusions.py)."""
        found = [exclusions.Exclusion(m, None, "must_not") if isinstance(m, str)
                 else exclusions.Exclusion(m.text, m.weight, "must_not") for m in req.must_not or ()]
        if req.query is not None and (req.query_syntax or req.negation):
            query, stated = exclusions.parse_query(req.query, req.query_syntax, req.negation)
            if stated:
                if not query:
                    raise BadRequest("query: nothing is left to search for once its exclusions "
                                     f"({', '.join(e.text for e in stated)}) are taken out")
                found += stated
                req = req.model_copy(update={"query": query})
        found = [e for e in found if e.words]
        return req, found

    @staticmethod
    def _facets(coll: Collection, req: SearchRequest, flt, fused) -> list[FacetOut]:
        """Value counts per facet: over the fused candidates (scope hits) or over the filtered
        collection; read from the metadata columns (Collection.facet_counts), no text."""
        out, hit_ids = [], [d for d, _ in fused]
        for spec in req.facets:
            counts = FacetCounts()
            if spec.scope == "hits":  # the candidates passed the filter already
                counts.add(coll.facet_counts(spec.key, ids=hit_ids))
            else:
                counts.add(coll.facet_counts(spec.key, filter=flt))
            top, other = counts.top(spec.size)
            out.append(FacetOut(key=spec.key, scope=spec.scope, other=other, missing=counts.missing,
                                values=[FacetValue(value=v, count=c) for v, c in top]))
        return out

    @staticmethod
    def _highlight(enc: EncoderSet, qv: QueryVectors, req: SearchRequest, doc, spec: HighlightSpec) -> list:
        """Fragments of the hit's text around its top contributing terms (service/highlight.py)."""
        if doc is None or not doc.text:
            return []
        text, spans = doc.text, []
        if qv.sparse is not None and "sparse" in doc.vectors:
            tok = getattr(enc.sparse, "tokenizer", None)
            if tok is not None and getattr(tok, "is_fast", False):
                terms = highlight.top_terms(qv.sparse, doc.vectors["sparse"], spec.terms)
                spans += highlight.wordpiece_spans(text, tok, terms)
        if qv.bm25 is not None and "bm25" in doc.vectors:
            raw = req.vector.bm25 if req.vector is not None else None
            words = raw_vectors.bm25_words(raw) if raw is not None else lexical.token_terms(req.query)
            terms = highlight.top_terms(qv.bm25, doc.vectors["bm25"], spec.terms)
            spans += highlight.bm25_spans(text, terms, words)
        if not spans and req.query:
            spans = highlight.query_word_spans(text, req.query)
        return highlight.fragments(text, spans, spec.fragments, spec.fragment_chars)


def _apply_exclusions(excl: list, lists: dict, hits: dict) -> tuple[dict, dict, int]:
    """Every list without the candidates that contain a removing exclusion; the demoting ones'
    penalties (a fraction of |score|) by id; how many distinct candidates either hit."""
    matcher = exclusions.Matcher(excl)
    removed: set[str] = set()
    penalties: dict[str, float] = {}
    for doc_id in {d for lst in lists.values() for d, _ in lst}:
        matched = matcher.matches(hits[doc_id].text)
        if not matched:
            continue
        p = exclusions.penalty(matched)
        if p is None:
            removed.add(doc_id)
        elif p > 0:
            penalties[doc_id] = p
    if removed:
        lists = {n: [(d, s) for d, s in lst if d not in removed] for n, lst in lists.items()}
    return lists, penalties, len(removed) + len(penalties)


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
