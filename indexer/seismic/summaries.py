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

Layout, per posting list, transposed (as in Seismic's QuantizedSummary) so a query touches only
the summary entries of its own terms:
    list_comp_ptr[t]..list_comp_ptr[t+1]   the list's distinct summary terms in sum_comps (sorted)
    comp_entry_end[c]                      end of term c's entries, relative to list_entry_ptr[t]
    entry_block[e], entry_value[e]         local block id (uint16) and quantised value (uint8)
    block_scale[b]                         dequantisation step of block b
"""
from __future__ import annotations

import numba as nb
import numpy as np

_CHUNK = 64


@nb.njit(cache=True)
def _block_summary(block_docs, fwd_ptr, fwd_terms, fwd_vals, alpha, maxv, touched):
    """Kept (terms, values) of one block's summary, terms ascending."""
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
    terms = touched[:n_t].copy()
    vals = np.empty(n_t, dtype=np.float32)
    for i in range(n_t):
        vals[i] = maxv[terms[i]]
        maxv[terms[i]] = 0.0
    if alpha >= 1.0:
        order = np.argsort(terms)
        return terms[order], vals[order]
    order = np.argsort(-vals, kind="mergesort")
    total = np.float32(0.0)
    for i in range(n_t):
        total += vals[i]
    until = total * np.float32(alpha)
    acc = np.float32(0.0)
    kept = 0
    for i in range(n_t):
        acc += vals[order[i]]
        kept += 1
        if acc >= until:
            break
    sel = order[:kept]
    kt, kv = terms[sel], vals[sel]
    o2 = np.argsort(kt)
    return kt[o2], kv[o2]


@nb.njit(cache=True)
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


@nb.njit(parallel=True, cache=True)
def count_summaries(list_block_ptr, block_doc_ptr, block_docs, fwd_ptr, fwd_terms, fwd_vals,
                    dim, alpha):
    """Pass 1: summary entries and distinct summary terms of every list."""
    n_lists = list_block_ptr.shape[0] - 1
    n_entries = np.zeros(n_lists, dtype=np.int64)
    n_comps = np.zeros(n_lists, dtype=np.int64)
    n_chunks = (n_lists + _CHUNK - 1) // _CHUNK
    for ch in nb.prange(n_chunks):
        maxv = np.zeros(dim, dtype=np.float32)
        touched = np.empty(dim, dtype=np.int32)
        seen = np.full(dim, -1, dtype=np.int64)
        for t in range(ch * _CHUNK, min(n_lists, (ch + 1) * _CHUNK)):
            for b in range(list_block_ptr[t], list_block_ptr[t + 1]):
                kt, _ = _block_summary(block_docs[block_doc_ptr[b]:block_doc_ptr[b + 1]],
                                       fwd_ptr, fwd_terms, fwd_vals, alpha, maxv, touched)
                n_entries[t] += kt.shape[0]
                for term in kt:
                    if seen[term] != t:
                        seen[term] = t
                        n_comps[t] += 1
    return n_entries, n_comps


@nb.njit(parallel=True, cache=True)
def fill_summaries(list_block_ptr, block_doc_ptr, block_docs, fwd_ptr, fwd_terms, fwd_vals,
                   dim, alpha, list_entry_ptr, list_comp_ptr):
    """Pass 2: quantised summaries in the transposed per-list layout."""
    n_lists = list_block_ptr.shape[0] - 1
    n_blocks = block_doc_ptr.shape[0] - 1
    block_scale = np.zeros(n_blocks, dtype=np.float32)
    sum_comps = np.empty(list_comp_ptr[-1], dtype=np.int32)
    comp_entry_end = np.empty(list_comp_ptr[-1], dtype=np.uint32)
    entry_block = np.empty(list_entry_ptr[-1], dtype=np.uint16)
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
            tri_b = np.empty(e1 - e0, dtype=np.uint16)
            tri_v = np.empty(e1 - e0, dtype=np.uint8)
            o = 0
            b0 = list_block_ptr[t]
            for b in range(b0, list_block_ptr[t + 1]):
                kt, kv = _block_summary(block_docs[block_doc_ptr[b]:block_doc_ptr[b + 1]],
                                        fwd_ptr, fwd_terms, fwd_vals, alpha, maxv, touched)
                scale, codes = quantize_block(kv)
                block_scale[b] = scale
                for i in range(kt.shape[0]):
                    tri_t[o] = kt[i]
                    tri_b[o] = b - b0
                    tri_v[o] = codes[i]
                    o += 1
            order = np.argsort(tri_t, kind="mergesort")  # stable: blocks ascending per term
            c = list_comp_ptr[t] - 1
            prev = -1
            for i in range(e1 - e0):
                j = order[i]
                if tri_t[j] != prev:
                    c += 1
                    sum_comps[c] = tri_t[j]
                    prev = tri_t[j]
                comp_entry_end[c] = i + 1
                entry_block[e0 + i] = tri_b[j]
                entry_value[e0 + i] = tri_v[j]
    return block_scale, sum_comps, comp_entry_end, entry_block, entry_value
