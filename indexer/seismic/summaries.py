"""Block summaries (Seismic §4.3) and their u8 quantisation.

A block's summary is the per-term maximum over its documents, pruned to the largest entries
holding `summary_energy` of its L1 mass (entries sorted by value, kept up to and including the
one that reaches the target; summary_energy = 1.0 keeps every term).

Quantisation rule (per block): scale = max_kept / 255, rounded up until 255 * scale >= max_kept
in float32; q(v) = the smallest integer in [0, 255] with q * scale >= v. So the dequantised
value q * scale is never below the true maximum and overshoots it by less than one step
(scale). A summary therefore never lowers a term's bound: with summary_energy = 1.0 a block's
summary dot product is an upper bound of the score of every document in it, which is what
makes Seismic exact when nothing is pruned and heap_factor = 1.0.

Layout, per posting list, transposed (as in Seismic's QuantizedSummary) so that a query touches
only the summary entries of its own terms. Most terms occur in a single block of a list, so the
term id is stored with every entry instead of in a separate per-term offsets table (measured on
synthetic SPLADE-like data: 4 bytes an entry against 9 with per-term offsets):
    list_entry_ptr[t]..list_entry_ptr[t+1]          the list's entries, sorted by (term, block)
    entry_term[e], entry_block[e], entry_value[e]   term id, local block id (uint8), u8 code
    block_scale[b]                                  dequantisation step of block b
"""
from __future__ import annotations

import numba as nb
import numpy as np

_CHUNK = 64


@nb.njit(nogil=True, cache=True)
def _block_union(block_docs, fwd_ptr, fwd_terms, fwd_vals, maxv, touched):
    """Per-term maxima of a block into maxv; touched[:n] lists the terms in first-seen order."""
    n_t = 0
    for d in block_docs:
        for p in range(fwd_ptr[d], fwd_ptr[d + 1]):
            t = fwd_terms[p]
            v = fwd_vals[p]
            if maxv[t] == 0.0:
                touched[n_t] = t
                n_t += 1
            if v > maxv[t]:
                maxv[t] = v
    return n_t


_BUCKETS = 64


@nb.njit(nogil=True, cache=True)
def _energy_cut(maxv, touched, n_t, alpha, vals):
    """(threshold, kept, ties): the summary keeps the values > threshold and the first `ties`
    values == threshold in first-seen order; `kept` entries in all.

    Equivalent to sorting the maxima and keeping the largest until they reach alpha of the
    mass, but O(n): values are bucketed linearly under the maximum, whole buckets are taken
    from the top, and only the bucket where the target is crossed is sorted.
    """
    total = np.float32(0.0)
    vmax = np.float32(0.0)
    for i in range(n_t):
        v = maxv[touched[i]]
        vals[i] = v
        total += v
        vmax = max(vmax, v)
    if alpha >= 1.0 or n_t == 0:
        return np.float32(0.0), n_t, 0
    until = total * np.float32(alpha)
    scale = np.float32(_BUCKETS) / vmax
    mass = np.zeros(_BUCKETS, dtype=np.float32)
    count = np.zeros(_BUCKETS, dtype=np.int64)
    for i in range(n_t):
        b = min(_BUCKETS - 1, np.int64(vals[i] * scale))
        mass[b] += vals[i]
        count[b] += 1
    acc = np.float32(0.0)
    above = 0
    b = _BUCKETS - 1
    while b >= 0 and acc + mass[b] < until:
        acc += mass[b]
        above += count[b]
        b -= 1
    if b < 0:  # rounding never reached the target: keep everything
        return np.float32(0.0), n_t, 0
    sel = np.empty(count[b], dtype=np.float32)
    j = 0
    for i in range(n_t):
        if min(_BUCKETS - 1, np.int64(vals[i] * scale)) == b:
            sel[j] = vals[i]
            j += 1
    sel.sort()
    kept_b = 0
    thr = sel[-1]
    for i in range(sel.shape[0] - 1, -1, -1):
        acc += sel[i]
        kept_b += 1
        thr = sel[i]
        if acc >= until:
            break
    ties = 0
    for i in range(sel.shape[0] - kept_b, sel.shape[0]):
        if sel[i] == thr:
            ties += 1
    return thr, above + kept_b, ties


@nb.njit(nogil=True, cache=True)
def quantize_block(vals):
    """(scale, u8 codes) with codes * scale >= vals elementwise (see module docstring)."""
    vmax = np.float32(0.0)
    for v in vals:
        if v > vmax:
            vmax = v
    if vmax <= 0.0:
        return np.float32(0.0), np.zeros(vals.shape[0], dtype=np.uint8)
    scale = np.float32(vmax / np.float32(255.0))
    while np.float32(255.0) * scale < vmax:
        scale = np.float32(scale * np.float32(1.0000001))
    codes = np.empty(vals.shape[0], dtype=np.uint8)
    for i in range(vals.shape[0]):
        q = min(255, np.int64(np.ceil(vals[i] / scale)))
        while q < 255 and np.float32(q) * scale < vals[i]:
            q += 1
        codes[i] = q
    return scale, codes


@nb.njit(nogil=True, parallel=True, cache=True)
def count_summaries(list_block_ptr, block_doc_ptr, block_docs, fwd_ptr, fwd_terms, fwd_vals,
                    dim, alpha):
    """Pass 1: energy cut of every block (threshold, ties) and summary entries per list."""
    n_lists = list_block_ptr.shape[0] - 1
    n_blocks = block_doc_ptr.shape[0] - 1
    thr = np.zeros(n_blocks, dtype=np.float32)
    ties = np.zeros(n_blocks, dtype=np.int64)
    n_entries = np.zeros(n_lists, dtype=np.int64)
    n_chunks = (n_lists + _CHUNK - 1) // _CHUNK
    for ch in nb.prange(n_chunks):
        maxv = np.zeros(dim, dtype=np.float32)
        touched = np.empty(dim, dtype=np.int32)
        vals = np.empty(dim, dtype=np.float32)
        for t in range(ch * _CHUNK, min(n_lists, (ch + 1) * _CHUNK)):
            for b in range(list_block_ptr[t], list_block_ptr[t + 1]):
                n_t = _block_union(block_docs[block_doc_ptr[b]:block_doc_ptr[b + 1]],
                                   fwd_ptr, fwd_terms, fwd_vals, maxv, touched)
                thr[b], kept, ties[b] = _energy_cut(maxv, touched, n_t, alpha, vals)
                n_entries[t] += kept
                for i in range(n_t):
                    maxv[touched[i]] = 0.0
    return thr, ties, n_entries


@nb.njit(nogil=True, parallel=True, cache=True)
def fill_summaries(list_block_ptr, block_doc_ptr, block_docs, fwd_ptr, fwd_terms, fwd_vals,
                   dim, thr, ties, list_entry_ptr):
    """Pass 2: quantised summaries in the transposed per-list layout (no second sort: the
    cut found by pass 1 is applied as a threshold)."""
    n_lists = list_block_ptr.shape[0] - 1
    n_blocks = block_doc_ptr.shape[0] - 1
    block_scale = np.zeros(n_blocks, dtype=np.float32)
    entry_term = np.empty(list_entry_ptr[-1], dtype=np.int32)
    entry_block = np.empty(list_entry_ptr[-1], dtype=np.uint8)
    entry_value = np.empty(list_entry_ptr[-1], dtype=np.uint8)
    n_chunks = (n_lists + _CHUNK - 1) // _CHUNK
    for ch in nb.prange(n_chunks):
        maxv = np.zeros(dim, dtype=np.float32)
        touched = np.empty(dim, dtype=np.int32)
        for t in range(ch * _CHUNK, min(n_lists, (ch + 1) * _CHUNK)):
            e0, e1 = list_entry_ptr[t], list_entry_ptr[t + 1]
            if e1 == e0:
                continue
            tri_t = np.empty(e1 - e0, dtype=np.int32)
            tri_b = np.empty(e1 - e0, dtype=np.uint8)
            tri_v = np.empty(e1 - e0, dtype=np.uint8)
            o = 0
            b0 = list_block_ptr[t]
            for b in range(b0, list_block_ptr[t + 1]):
                n_t = _block_union(block_docs[block_doc_ptr[b]:block_doc_ptr[b + 1]],
                                   fwd_ptr, fwd_terms, fwd_vals, maxv, touched)
                kt = np.empty(n_t, dtype=np.int32)
                kv = np.empty(n_t, dtype=np.float32)
                n_k = 0
                ties_left = ties[b]
                for i in range(n_t):
                    term = touched[i]
                    v = maxv[term]
                    maxv[term] = 0.0
                    if v > thr[b] or (v == thr[b] and ties_left > 0):
                        if v == thr[b] and thr[b] > 0:
                            ties_left -= 1
                        kt[n_k] = term
                        kv[n_k] = v
                        n_k += 1
                scale, codes = quantize_block(kv[:n_k])
                block_scale[b] = scale
                for i in range(n_k):
                    tri_t[o] = kt[i]
                    tri_b[o] = b - b0
                    tri_v[o] = codes[i]
                    o += 1
            order = np.argsort(tri_t, kind="mergesort")  # stable: blocks ascending per term
            for i in range(e1 - e0):
                j = order[i]
                entry_term[e0 + i] = tri_t[j]
                entry_block[e0 + i] = tri_b[j]
                entry_value[e0 + i] = tri_v[j]
    return block_scale, entry_term, entry_block, entry_value
