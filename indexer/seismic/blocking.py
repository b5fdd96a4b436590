"""Blocking of posting lists by shallow clustering (Seismic §4.2).

Each list gets max(1, centroid_fraction * len) random centroids (documents of the list); every
document joins the centroid with the largest dot product, computed on the document's doc_cut
largest terms against the centroids' full vectors. Clusters of at most min_cluster_size
documents are dissolved and their documents re-assigned. Then cluster_rounds Lloyd steps: the
clusters' means over their documents' doc_cut terms become the centroids and every document is
assigned again (with the same dissolving), so that a block's documents agree more with their
block (tests: mean agreement 0.228 -> 0.236). One step, measured on the synthetic generators
(query sample 1, one core), cut the time at recall 0.90 / 0.95 to 0.88-0.98 / 0.82-0.97 for
-1..+2 % summary bytes and 0-18 % more build CPU (benchmarks/cluster_rounds.py, BENCHMARKS.md).
Each cluster becomes a block; blocks list their documents in ascending id order so the forward
index is read front to back.
"""
from __future__ import annotations

import numba as nb
import numpy as np

_CHUNK = 64  # lists per parallel task: amortises the per-task scratch arrays


@nb.njit(nogil=True, cache=True, inline="always")
def _splitmix64(x):
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@nb.njit(nogil=True, cache=True)
def top_terms(indptr, terms, vals, doc_cut):
    """The doc_cut largest terms of every document (padded with -1)."""
    n = indptr.shape[0] - 1
    out_t = np.full((n, doc_cut), -1, dtype=np.int32)
    out_v = np.zeros((n, doc_cut), dtype=np.float32)
    for d in range(n):
        a, b = indptr[d], indptr[d + 1]
        if b - a <= doc_cut:
            out_t[d, : b - a] = terms[a:b]
            out_v[d, : b - a] = vals[a:b]
        else:
            order = np.argsort(-vals[a:b], kind="mergesort")[:doc_cut]
            for j in range(doc_cut):
                out_t[d, j] = terms[a + order[j]]
                out_v[d, j] = vals[a + order[j]]
    return out_t, out_v


@nb.njit(nogil=True, cache=True)
def _invert(n_centroids, c_ptr, c_terms, c_vals, head, count):
    """Inverted index of centroids given as CSR rows: (term -> centroid, value), grouped by term
    with the centroids ascending inside a term (what a stable sort by term gives), by a counting
    sort: head[t] is term t's first slot and count[t] its entries. (A merge sort of these
    entries was half of the blocking time on SciFact: 256 centroids of ~285 terms a list.)"""
    nnz = c_ptr[n_centroids]
    for p in range(nnz):
        count[c_terms[p]] += 1
    o = 0
    for p in range(nnz):
        t = c_terms[p]
        if head[t] < 0:
            head[t] = o
            o += count[t]
    tri_c = np.empty(nnz, dtype=np.int32)
    tri_v = np.empty(nnz, dtype=np.float32)
    for c in range(n_centroids - 1, -1, -1):  # backwards, so each term's slots fill from its end
        for p in range(c_ptr[c], c_ptr[c + 1]):
            t = c_terms[p]
            count[t] -= 1
            tri_c[head[t] + count[t]] = c
            tri_v[head[t] + count[t]] = c_vals[p]
    for p in range(nnz):  # the counts again (the fill used them up)
        count[c_terms[p]] += 1
    return tri_c, tri_v


@nb.njit(nogil=True, cache=True)
def _clear(c_terms, head, count):
    for p in range(c_terms.shape[0]):
        head[c_terms[p]] = -1
        count[c_terms[p]] = 0


@nb.njit(nogil=True, cache=True)
def _assign(docs, n_centroids, min_size, cut_t, cut_v, head, count, tri_c, tri_v, assign):
    """Every document joins the centroid of largest dot product on its cut terms; clusters of at
    most min_size documents are then dissolved and their documents re-assigned (unless every
    cluster is that small)."""
    m = docs.shape[0]
    scores = np.zeros(n_centroids, dtype=np.float32)
    removed = np.zeros(n_centroids, dtype=np.bool_)
    for rnd in range(2):  # round 1 re-assigns documents of dissolved clusters
        for i in range(m):
            if rnd == 1 and not removed[assign[i]]:
                continue
            d = docs[i]
            scores[:] = 0.0
            for j in range(cut_t.shape[1]):
                t = cut_t[d, j]
                if t < 0:
                    break
                h = head[t]
                if h >= 0:
                    v = cut_v[d, j]
                    for p in range(h, h + count[t]):
                        scores[tri_c[p]] += tri_v[p] * v
            best = -1
            for c in range(n_centroids):
                if not removed[c] and (best < 0 or scores[c] > scores[best]):
                    best = c
            assign[i] = best
        if rnd == 0:
            sizes = np.bincount(assign, minlength=n_centroids)
            n_small = 0
            for c in range(n_centroids):
                if sizes[c] <= min_size:
                    n_small += 1
            if n_small == 0 or n_small == n_centroids:
                break
            for c in range(n_centroids):
                removed[c] = sizes[c] <= min_size


@nb.njit(nogil=True, cache=True)
def _mean_centroids(docs, n_centroids, assign, cut_t, cut_v, acc):
    """The mean of each cluster's documents on their cut terms, as CSR rows (empty clusters:
    empty rows). acc is a zeroed dense scratch vector of dim floats, left zeroed."""
    m = docs.shape[0]
    order = np.argsort(assign, kind="mergesort")
    c_ptr = np.zeros(n_centroids + 1, dtype=np.int64)
    c_terms = np.empty(m * cut_t.shape[1], dtype=np.int32)
    c_vals = np.empty(m * cut_t.shape[1], dtype=np.float32)
    n = 0
    i = 0
    for c in range(n_centroids):
        start = n
        size = 0
        while i < m and assign[order[i]] == c:
            d = docs[order[i]]
            for j in range(cut_t.shape[1]):
                t = cut_t[d, j]
                if t < 0:
                    break
                if cut_v[d, j] <= 0.0:  # adds nothing (and a zero sum marks an unseen term)
                    continue
                if acc[t] == 0.0:
                    c_terms[n] = t
                    n += 1
                acc[t] += cut_v[d, j]
            size += 1
            i += 1
        for p in range(start, n):
            c_vals[p] = acc[c_terms[p]] / size
            acc[c_terms[p]] = 0.0
        c_ptr[c + 1] = n
    return c_ptr, c_terms[:n], c_vals[:n]


@nb.njit(nogil=True, cache=True)
def _cluster_list(docs, n_centroids, min_size, seed, rounds, fwd_ptr, fwd_terms, fwd_vals,
                  cut_t, cut_v, head, count, acc, out_docs, out_sizes):
    """Cluster one list; writes reordered docs and block sizes, returns the number of blocks."""
    m = docs.shape[0]
    # centroids: partial Fisher-Yates over positions with a counter-based RNG (deterministic
    # whatever the thread schedule)
    pos = np.arange(m)
    state = np.uint64(seed)
    for i in range(n_centroids):
        state = _splitmix64(state)
        j = i + np.int64(state % np.uint64(m - i))
        pos[i], pos[j] = pos[j], pos[i]
    centroids = docs[pos[:n_centroids]]
    c_ptr = np.zeros(n_centroids + 1, dtype=np.int64)
    for c in range(n_centroids):
        d = centroids[c]
        c_ptr[c + 1] = c_ptr[c] + fwd_ptr[d + 1] - fwd_ptr[d]
    c_terms = np.empty(c_ptr[n_centroids], dtype=np.int32)
    c_vals = np.empty(c_ptr[n_centroids], dtype=np.float32)
    for c in range(n_centroids):
        d = centroids[c]
        c_terms[c_ptr[c]:c_ptr[c + 1]] = fwd_terms[fwd_ptr[d]:fwd_ptr[d + 1]]
        c_vals[c_ptr[c]:c_ptr[c + 1]] = fwd_vals[fwd_ptr[d]:fwd_ptr[d + 1]]

    assign = np.empty(m, dtype=np.int32)
    for rnd in range(rounds + 1):
        if rnd > 0:  # a Lloyd step: the clusters' means become the centroids
            c_ptr, c_terms, c_vals = _mean_centroids(docs, n_centroids, assign, cut_t, cut_v, acc)
        tri_c, tri_v = _invert(n_centroids, c_ptr, c_terms, c_vals, head, count)
        _assign(docs, n_centroids, min_size, cut_t, cut_v, head, count, tri_c, tri_v, assign)
        _clear(c_terms, head, count)

    # blocks ordered by centroid, documents by id inside a block (docs arrive sorted)
    order = np.argsort(assign, kind="mergesort")
    n_blocks = 0
    prev = -1
    for i in range(m):
        out_docs[i] = docs[order[i]]
        a = assign[order[i]]
        if a != prev:
            out_sizes[n_blocks] = 0
            n_blocks += 1
            prev = a
        out_sizes[n_blocks - 1] += 1
    return n_blocks


@nb.njit(nogil=True, parallel=True, cache=True)
def block_lists(list_ptr, list_docs, fwd_ptr, fwd_terms, fwd_vals, cut_t, cut_v, dim,
                centroid_fraction, min_size, max_blocks, seed, rounds):
    """Cluster every list in parallel.

    Returns (docs reordered block by block, per-list block counts, block sizes written at the
    list's posting offset — a list of m postings never has more than m blocks).
    """
    n_lists = list_ptr.shape[0] - 1
    out_docs = np.empty_like(list_docs)
    sizes = np.zeros(list_docs.shape[0], dtype=np.int32)
    n_blocks = np.zeros(n_lists, dtype=np.int64)
    n_chunks = (n_lists + _CHUNK - 1) // _CHUNK
    for ch in nb.prange(n_chunks):
        head = np.full(dim, -1, dtype=np.int64)
        count = np.zeros(dim, dtype=np.int64)
        acc = np.zeros(dim, dtype=np.float32)
        for t in range(ch * _CHUNK, min(n_lists, (ch + 1) * _CHUNK)):
            a, b = list_ptr[t], list_ptr[t + 1]
            m = b - a
            if m == 0:
                continue
            nc = min(max(1, np.int64(centroid_fraction * m)), max_blocks)
            if nc == 1:
                out_docs[a:b] = list_docs[a:b]
                sizes[a] = m
                n_blocks[t] = 1
                continue
            seed_t = _splitmix64(np.uint64(seed) * np.uint64(1000003) + np.uint64(t))
            n_blocks[t] = _cluster_list(list_docs[a:b], nc, min_size, seed_t, rounds, fwd_ptr,
                                        fwd_terms, fwd_vals, cut_t, cut_v, head, count, acc,
                                        out_docs[a:b], sizes[a:b])
    return out_docs, n_blocks, sizes


@nb.njit(nogil=True, cache=True)
def compact_block_sizes(list_ptr, n_blocks, sizes):
    """Turn the per-list block sizes into global block offsets (block_doc_ptr, list_block_ptr)."""
    n_lists = list_ptr.shape[0] - 1
    list_block_ptr = np.zeros(n_lists + 1, dtype=np.int64)
    for t in range(n_lists):
        list_block_ptr[t + 1] = list_block_ptr[t] + n_blocks[t]
    block_doc_ptr = np.zeros(list_block_ptr[-1] + 1, dtype=np.int64)
    for t in range(n_lists):
        pos = list_ptr[t]
        for j in range(n_blocks[t]):
            b = list_block_ptr[t] + j
            pos += sizes[list_ptr[t] + j]
            block_doc_ptr[b + 1] = pos
    return list_block_ptr, block_doc_ptr
