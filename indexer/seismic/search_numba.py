"""Reference Seismic query kernel in Numba: the fallback when the C++ extension is missing.

It mirrors native/seismic.hpp operation for operation (visiting order, float32 arithmetic,
the 8-lane document scorer, tie-breaking), so both return identical ids and scores.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from .summaries import (CODE_BITS, GROUPED, LEVELS, SHIFT_MASK, block_bits, bucket_entries, list_wide, read_bits,
                        read_dir, read_key, unary_bytes)


@nb.njit(nogil=True, cache=True, inline="always")
def _better(s1, d1, s2, d2):
    return s1 > s2 or (s1 == s2 and d1 < d2)


@nb.njit(nogil=True, cache=True)
def heap_push(hs, hd, size, k, score, doc):
    """Min-heap (root = worst kept hit) of at most k hits; returns the new size."""
    if size < k:
        i = size
        hs[i], hd[i] = score, doc
        while i > 0:
            p = (i - 1) // 2
            if not _better(hs[p], hd[p], hs[i], hd[i]):
                break
            hs[p], hs[i] = hs[i], hs[p]
            hd[p], hd[i] = hd[i], hd[p]
            i = p
        return size + 1
    if _better(score, doc, hs[0], hd[0]):
        hs[0], hd[0] = score, doc
        i = 0
        while True:
            lc, rc, w = 2 * i + 1, 2 * i + 2, i
            if lc < size and _better(hs[w], hd[w], hs[lc], hd[lc]):
                w = lc
            if rc < size and _better(hs[w], hd[w], hs[rc], hd[rc]):
                w = rc
            if w == i:
                break
            hs[w], hs[i] = hs[i], hs[w]
            hd[w], hd[i] = hd[i], hd[w]
            i = w
    return size


@nb.njit(nogil=True, cache=True)
def heap_drain(hs, hd, size):
    """Hits sorted best first (score descending, then doc id ascending)."""
    by_doc = np.argsort(hd[:size], kind="mergesort")
    order = by_doc[np.argsort(-hs[:size][by_doc], kind="mergesort")]
    return hd[:size][order].copy(), hs[:size][order].copy()


@nb.njit(nogil=True, cache=True, inline="always")
def score_doc(q, terms, vals, a, b):
    lanes = np.zeros(8, dtype=np.float32)
    for i in range(b - a):
        lanes[i & 7] += q[terms[a + i]] * vals[a + i]
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))


@nb.njit(nogil=True, cache=True)
def _block_dots(t, b0, nb_, q_terms, q_vals, list_entry_ptr, list_shift, list_dir_ptr,
                summary_dir, list_key_ptr, entry_key, block_levels, dots, dim):
    """dots[b] = sum over the query terms (ascending) that block b's summary holds of
    q_val * levels_b[code]."""
    dots[:nb_] = 0.0
    e = list_entry_ptr[t + 1] - list_entry_ptr[t]
    if e > 0:
        sb = np.int64(list_shift[t])
        s = sb & SHIFT_MASK
        bb = block_bits(nb_)
        lmask = (1 << s) - 1
        bmask = (1 << bb) - 1
        cmask = (1 << CODE_BITS) - 1
        d0 = list_dir_ptr[t]
        k0 = list_key_ptr[t]
        wide = list_wide(sb, e, list_key_ptr[t + 1] - k0)
        if sb & GROUPED:
            _grouped_dots(b0, s, bb, q_terms, q_vals, summary_dir, d0, wide, entry_key, k0,
                          block_levels, dots)
            return
        w = s + bb + CODE_BITS
        k1 = k0 + unary_bytes(e, ((dim - 1) >> s) + 1)  # the keys follow the unary bucket sizes
        for j in range(q_terms.shape[0]):
            qt = np.int64(q_terms[j])
            h = qt >> s
            lo = qt & lmask
            qv = q_vals[j]
            i0, i1 = bucket_entries(summary_dir, d0, wide, entry_key, k0, h)
            for i in range(i0, i1):
                key = read_key(entry_key, k1, i, w)
                klo = key >> (bb + CODE_BITS)
                if klo > lo:
                    break
                if klo == lo:
                    b = (key >> CODE_BITS) & bmask
                    dots[b] += qv * block_levels[(b0 + b) * LEVELS + (key & cmask)]


@nb.njit(nogil=True, cache=True, inline="always")
def _grouped_dots(b0, s, bb, q_terms, q_vals, summary_dir, d0, wide, entry_key, k0, block_levels, dots):
    """_block_dots over a grouped list (summaries.encode_grouped): per query term, the records
    of its bucket are scanned (a record's low part and first entry read as one field) until
    its own, whose entries are added, or a larger low part."""
    ew = bb + CODE_BITS + 1
    hw = s + ew
    lmask = (1 << s) - 1
    for j in range(q_terms.shape[0]):
        qt = np.int64(q_terms[j])
        h = qt >> s
        lo = qt & lmask
        qv = q_vals[j]
        pos = 8 * read_dir(summary_dir, d0, h, wide)
        end = 8 * read_dir(summary_dir, d0, h + 1, wide)
        while pos + hw <= end:  # the zero padding of a bucket's last byte is never a record
            f = read_bits(entry_key, k0, pos, hw)
            klo = f & lmask
            if klo > lo:
                break
            ent = f >> s
            pos += hw
            if klo == lo:
                while True:
                    b = ent >> (CODE_BITS + 1)
                    dots[b] += qv * block_levels[(b0 + b) * LEVELS + ((ent >> 1) & ((1 << CODE_BITS) - 1))]
                    if (ent & 1) == 0:
                        break
                    ent = read_bits(entry_key, k0, pos, ew)
                    pos += ew
                break
            while ent & 1:  # another term's entries: skip them
                ent = read_bits(entry_key, k0, pos, ew)
                pos += ew


@nb.njit(nogil=True, cache=True, inline="always")
def _visit(doc, hs, hd, size, k, q_dense, visited, seen, fwd_ptr, fwd_terms, fwd_vals):
    """Score a document not scored before by this query and offer it to the heap (the lists'
    blocks and the κ-NN expansion alike); returns the heap's new size."""
    if visited[doc]:
        return size
    visited[doc] = True
    seen.append(doc)
    s = score_doc(q_dense, fwd_terms, fwd_vals, fwd_ptr[doc], fwd_ptr[doc + 1])
    return heap_push(hs, hd, size, k, s, doc)


@nb.njit(nogil=True, cache=True)
def expand(hs, hd, size, k, q_dense, visited, seen, fwd_ptr, fwd_terms, fwd_vals, knn, knn_k,
           knn_expand):
    """κ-NN refinement: score the first knn_expand stored neighbours of every hit now in the
    heap (the inverted-index phase's top k). The result is the top k of all documents scored,
    so it does not depend on the order the neighbours are visited in."""
    tops = hd[:size].copy()
    for r in range(tops.shape[0]):
        base = np.int64(tops[r]) * knn_k
        for j in range(knn_expand):
            size = _visit(np.int32(knn[base + j]), hs, hd, size, k, q_dense, visited, seen,
                          fwd_ptr, fwd_terms, fwd_vals)
    return size


@nb.njit(nogil=True, cache=True)
def search_one(q_terms, q_vals, k, query_cut, heap_factor, q_dense, visited, dots,
               fwd_ptr, fwd_terms, fwd_vals, list_block_ptr, block_doc_ptr, block_docs,
               block_levels, list_entry_ptr, list_shift, list_dir_ptr, summary_dir,
               list_key_ptr, entry_key, knn, knn_k, knn_expand):
    hf = np.float32(heap_factor)
    for j in range(q_terms.shape[0]):
        q_dense[q_terms[j]] = q_vals[j]
    cut = np.argsort(-q_vals, kind="mergesort")[:query_cut]
    hs = np.empty(k, dtype=np.float32)
    hd = np.empty(k, dtype=np.int32)
    size = 0
    seen = []
    for li in range(cut.shape[0]):
        t = q_terms[cut[li]]
        b0 = list_block_ptr[t]
        nb_ = list_block_ptr[t + 1] - b0
        if nb_ == 0:
            continue
        _block_dots(t, b0, nb_, q_terms, q_vals, list_entry_ptr, list_shift, list_dir_ptr,
                    summary_dir, list_key_ptr, entry_key, block_levels, dots, q_dense.shape[0])
        if li == 0:
            order = np.argsort(-dots[:nb_], kind="mergesort")
        else:
            order = np.arange(nb_)
        for i in range(nb_):
            b = order[i]
            if size == k and dots[b] < hf * hs[0]:
                continue
            for p in range(block_doc_ptr[b0 + b], block_doc_ptr[b0 + b + 1]):
                size = _visit(np.int32(block_docs[p]), hs, hd, size, k, q_dense, visited, seen,
                              fwd_ptr, fwd_terms, fwd_vals)
    if knn_expand > 0:
        size = expand(hs, hd, size, k, q_dense, visited, seen, fwd_ptr, fwd_terms, fwd_vals, knn,
                      knn_k, knn_expand)
    for j in range(q_terms.shape[0]):
        q_dense[q_terms[j]] = 0.0
    for d in seen:
        visited[d] = False
    return heap_drain(hs, hd, size)


@nb.njit(nogil=True, parallel=True)  # not cached: Numba cannot cache this parallel function
def search_batch(q_ptr, q_terms, q_vals, k, query_cut, heap_factor, dim, n_docs, max_blocks,
                 fwd_ptr, fwd_terms, fwd_vals, list_block_ptr, block_doc_ptr, block_docs,
                 block_levels, list_entry_ptr, list_shift, list_dir_ptr, summary_dir,
                 list_key_ptr, entry_key, knn, knn_k, knn_expand):
    nq = q_ptr.shape[0] - 1
    out_ids = np.full((nq, k), -1, dtype=np.int32)
    out_scores = np.full((nq, k), -np.inf, dtype=np.float32)
    n_workers = min(nq, nb.get_num_threads())
    for w in nb.prange(n_workers):
        q_dense = np.zeros(dim, dtype=np.float32)
        visited = np.zeros(n_docs, dtype=np.bool_)
        dots = np.empty(max(1, max_blocks), dtype=np.float32)
        for i in range(w, nq, n_workers):
            a, b = q_ptr[i], q_ptr[i + 1]
            ids, sc = search_one(q_terms[a:b], q_vals[a:b], k, query_cut, heap_factor, q_dense,
                                 visited, dots, fwd_ptr, fwd_terms, fwd_vals, list_block_ptr,
                                 block_doc_ptr, block_docs, block_levels, list_entry_ptr,
                                 list_shift, list_dir_ptr, summary_dir, list_key_ptr, entry_key,
                                 knn, knn_k, knn_expand)
            out_ids[i, : ids.shape[0]] = ids
            out_scores[i, : sc.shape[0]] = sc
    return out_ids, out_scores
