"""κ-NN graph of a Seismic index (Bruch, Nardini, Rulli, Venturini, CIKM 2024).

Each document stores the ids of κ approximate nearest neighbours by inner product: by default
its best block-mates (block_graph), or the index's own top hits for the document as the query
(source "search"). A search may then score, exactly
from the forward index, the stored neighbours of its top hits after the inverted-index phase:
documents near a true top hit that the visited blocks missed are recovered, so a small
query_cut reaches a given recall (search_numba.expand / seismic.hpp expand).

Layout: `knn_neighbors`, u32 [n_docs * κ], document d's neighbours at [d * κ, (d + 1) * κ),
best first. A document with fewer than κ neighbours found is padded with its own id: a top hit
is visited already, so its own id is skipped by the expansion without a sentinel test.
"""
from __future__ import annotations

import numba as nb
import numpy as np
import scipy.sparse as sp

from ..storage import IndexFormatError
from .blocking import top_terms

ARRAY = "knn_neighbors"
SOURCES = ("blocks", "search")


def build_graph(index, k: int, query_cut: int, heap_factor: float,
                n_threads: int | None = None, batch: int = 8192, source: str = "search",
                lists: int = 3) -> np.ndarray:
    """Every document's k approximate nearest neighbours (itself excluded), u32 [n_docs * k],
    rows and neighbours in the index's internal numbering.

    source "search": the index searched with each document (query_cut, heap_factor).
    source "blocks": the best k of the document's block-mates in the lists of its `lists`
    largest terms, scored exactly (block_graph)."""
    if source == "blocks":
        return block_graph(index, k, lists)
    if source != "search":
        raise ValueError(f"unknown κ-NN graph source {source!r}; known: {SOURCES}")
    n = index.n_docs
    out = np.empty((n, k), dtype=np.uint32)
    ptr, terms, vals = (np.asarray(x) for x in index.forward())
    for lo in range(0, n, batch):  # batches bound the f32 copies of the query rows
        hi = min(n, lo + batch)
        p0, p1 = int(ptr[lo]), int(ptr[hi])
        rows = sp.csr_matrix((vals[p0:p1].astype(np.float32), terms[p0:p1].astype(np.int32),
                              ptr[lo:hi + 1] - p0), shape=(hi - lo, index.dim))
        docs = np.arange(lo, hi)
        out[lo:hi] = docs[:, None]
        live = np.flatnonzero(np.diff(rows.indptr) > 0)  # an empty document has no neighbours
        if live.size == 0:
            continue
        ids, _ = index.search_batch(rows[live], k=k + 1, query_cut=query_cut, heap_factor=heap_factor,
                                    n_threads=n_threads)
        # rows here are internal numbers, and so is the graph; results are input rows
        ids = np.where(ids >= 0, index.positions(np.maximum(ids, 0)), -1)
        d = docs[live][:, None]
        keep = (ids >= 0) & (ids != d)
        first = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept hits first, in rank order
        nb = np.take_along_axis(ids, first, axis=1)
        out[lo + live] = np.where(np.take_along_axis(keep, first, axis=1), nb, d)
    return out.reshape(-1)


def block_graph(index, k: int, lists: int) -> np.ndarray:
    """κ-NN graph from block-mates: a document's candidates are the other members of its
    blocks in the posting lists of its `lists` largest terms (Seismic clustered each list by
    similarity, so they share its strongest terms), scored exactly by inner product.

    The search graph finds each document's neighbours by searching the index with it, which
    scores whole blocks of several lists at a cost that grows with the collection (744 CPU s
    at synthetic-1m, 3.5x the index build). Block-mates are a fixed, small candidate set, and
    the loop is block-major (a block's members are read once per pass, not once per document
    that has them): 6.5 against 12.8 CPU s at synthetic-100k, where the expansion reached the
    same recall@10 with either graph (0.9557 / 0.9563 at query_cut 3, equal at 5 and 8)."""
    a = index.arrays
    ptr, terms, vals = index.forward()
    vals = np.asarray(vals, dtype=np.float32)
    tops, _ = top_terms(ptr, terms, vals, lists)
    pos = _member_blocks(a["list_block_ptr"], a["block_doc_ptr"], a["block_docs"], tops)
    return _block_mates(a["list_block_ptr"], a["block_doc_ptr"], a["block_docs"], pos,
                        ptr, terms, vals, index.dim, k).reshape(-1)


@nb.njit(nogil=True, parallel=True, cache=True)
def _member_blocks(list_block_ptr, block_doc_ptr, block_docs, tops):
    """pos[d, j]: the block of document d in the list of its j-th largest term (-1: pruned)."""
    n, n_top = tops.shape
    pos = np.full((n, n_top), -1, dtype=np.int64)
    for t in nb.prange(list_block_ptr.shape[0] - 1):  # a (d, j) is written by list tops[d, j] only
        for b in range(list_block_ptr[t], list_block_ptr[t + 1]):
            for i in range(block_doc_ptr[b], block_doc_ptr[b + 1]):
                d = block_docs[i]
                for j in range(n_top):
                    if tops[d, j] == t:
                        pos[d, j] = b
    return pos


@nb.njit(nogil=True, cache=True, inline="always")
def _worst(sc, ids, j, d, k):
    """The slot of document d's worst kept neighbour of pass j: lowest score, then highest id."""
    w = 0
    for c in range(1, k):
        if sc[j, d, c] < sc[j, d, w] or (sc[j, d, c] == sc[j, d, w] and ids[j, d, c] > ids[j, d, w]):
            w = c
    return w


@nb.njit(nogil=True, parallel=True, cache=True)
def _block_mates(list_block_ptr, block_doc_ptr, block_docs, pos, fwd_ptr, fwd_terms, fwd_vals, dim, k):
    """The graph of block_graph. Documents take the candidates of their j-th block into slots of
    their own for each j (a document's blocks are in different lists, which different threads
    may visit at once: each (j, document) has one writer); the k best of a document's slots,
    by (score desc, id asc) and each id once, are its neighbours, padded with its own id.

    Block-major, every block once: the block's own inverted index (its members' entries sorted
    by term) is built, and each document that takes the block's candidates walks only the
    entries of its own terms, so a pair that shares few terms costs little. Cluster sizes are
    skewed (synthetic-1m: median 9 members, 1 % over 224, up to 1,288), so most of the 463M
    pairs are in large blocks, where a document at a time read every member's whole row for
    each document: 93 CPU s at synthetic-1m, 81.5 with a block's index built once a pass, 53
    built once (the same recall after expansion on its query sample 1: 0.944 / 0.980 / 0.997
    at query_cut 3 / 5 / 8). A candidate is compared with the worst kept one first; only one
    that beats it is looked for among the kept."""
    n, n_top = pos.shape
    ids = np.empty((n_top, n, k), dtype=np.int32)
    sc = np.full((n_top, n, k), -np.inf, dtype=np.float32)
    for j in range(n_top):
        for d in range(n):
            ids[j, d, :] = d
    n_lists = list_block_ptr.shape[0] - 1
    n_blocks = block_doc_ptr.shape[0] - 1
    most_docs, most_entries = 0, 0
    for b in range(n_blocks):
        m0, m1 = block_doc_ptr[b], block_doc_ptr[b + 1]
        most_docs = max(most_docs, m1 - m0)
        e = 0
        for i in range(m0, m1):
            e += fwd_ptr[block_docs[i] + 1] - fwd_ptr[block_docs[i]]
        most_entries = max(most_entries, e)
    n_chunks = (n_lists + 63) // 64
    for ch in nb.prange(n_chunks):
        cnt = np.zeros(dim, dtype=np.int64)  # a block's entries a term, then fill pointers
        first = np.empty(dim, dtype=np.int64)  # where a term's entries start
        seen = np.empty(dim, dtype=np.int64)
        member = np.empty(most_entries, dtype=np.int32)  # the block's inverted index
        value = np.empty(most_entries, dtype=np.float32)
        acc = np.zeros(most_docs, dtype=np.float32)
        for t in range(ch * 64, min(n_lists, (ch + 1) * 64)):
            for b in range(list_block_ptr[t], list_block_ptr[t + 1]):
                m0, m1 = block_doc_ptr[b], block_doc_ptr[b + 1]
                owners = 0
                for i in range(m0, m1):
                    for j in range(n_top):
                        owners += pos[block_docs[i], j] == b
                if owners == 0:
                    continue
                n_seen = 0
                for i in range(m0, m1):  # count the entries of each term
                    e = block_docs[i]
                    for p in range(fwd_ptr[e], fwd_ptr[e + 1]):
                        term = fwd_terms[p]
                        seen[n_seen] = term
                        n_seen += cnt[term] == 0
                        cnt[term] += 1
                off = 0
                for x in range(n_seen):  # counts -> where each term's entries start
                    term = seen[x]
                    c = cnt[term]
                    first[term] = off
                    cnt[term] = off
                    off += c
                for i in range(m0, m1):  # members in block order within a term
                    e = block_docs[i]
                    for p in range(fwd_ptr[e], fwd_ptr[e + 1]):
                        term = fwd_terms[p]
                        member[cnt[term]] = i - m0
                        value[cnt[term]] = fwd_vals[p]
                        cnt[term] += 1
                for i in range(m0, m1):  # cnt[term] now ends term's entries
                    d = block_docs[i]
                    jd = -1  # the pass whose block this is for d (its blocks are in distinct lists)
                    for j in range(n_top):
                        if pos[d, j] == b:
                            jd = j
                    if jd < 0:
                        continue
                    acc[:m1 - m0] = 0.0
                    for p in range(fwd_ptr[d], fwd_ptr[d + 1]):
                        term = fwd_terms[p]
                        v = fwd_vals[p]
                        for q in range(first[term], cnt[term]):
                            acc[member[q]] += v * value[q]
                    w = _worst(sc, ids, jd, d, k)
                    for i2 in range(m0, m1):
                        e = block_docs[i2]
                        if e == d:
                            continue
                        s = acc[i2 - m0]
                        if not (s > sc[jd, d, w] or (s == sc[jd, d, w] and e < ids[jd, d, w])):
                            continue
                        present = False
                        for c in range(k):
                            present |= ids[jd, d, c] == e
                        if not present:
                            sc[jd, d, w] = s
                            ids[jd, d, w] = e
                            w = _worst(sc, ids, jd, d, k)
                for x in range(n_seen):
                    cnt[seen[x]] = 0
    out = np.empty((n, k), dtype=np.uint32)
    for d in nb.prange(n):
        cs = sc[:, d, :].ravel()
        ci = ids[:, d, :].ravel()
        order = np.argsort(ci, kind="mergesort")  # by id, then by score desc: stable sorts
        order = order[np.argsort(-cs[order], kind="mergesort")]
        c = 0
        for x in range(order.shape[0]):
            if c == k or cs[order[x]] == -np.inf:
                break
            e = ci[order[x]]
            dup = False
            for y in range(c):
                dup |= out[d, y] == e
            if not dup:
                out[d, c] = e
                c += 1
        for y in range(c, k):
            out[d, y] = d
    return out


def stored_k(arrays: dict, n_docs: int) -> int:
    """Neighbours stored per document (0 without a graph)."""
    g = arrays.get(ARRAY)
    return 0 if g is None or n_docs == 0 else int(g.shape[0] // n_docs)


def check_graph(path, arrays: dict, n_docs: int) -> None:
    """A loaded graph must be n_docs rows of ids below n_docs: the kernels index with them."""
    g = arrays.get(ARRAY)
    if g is None:
        return
    if g.dtype != np.uint32 or g.ndim != 1 or (n_docs and g.shape[0] % n_docs) or \
            (g.shape[0] and int(g.max()) >= n_docs):
        raise IndexFormatError(f"{path} is damaged: its κ-NN graph does not match its {n_docs} documents",
                               path=path, check="consistency")
