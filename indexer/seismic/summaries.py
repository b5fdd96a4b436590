"""Block summaries (Seismic §4.3), their u8 quantisation and their packed per-list layout.

A block's summary is the per-term maximum over its documents, pruned to the largest entries
holding `summary_energy` of its L1 mass (entries sorted by value, kept up to and including the
one that reaches the target; summary_energy = 1.0 keeps every term).

Quantisation rule (per block): scale = max_kept / 255, rounded up until 255 * scale >= max_kept
in float32; q(v) = the smallest integer in [0, 255] with q * scale >= v. So the dequantised
value q * scale is never below the true maximum and overshoots it by less than one step
(scale). A summary therefore never lowers a term's bound: with summary_energy = 1.0 a block's
summary dot product is an upper bound of the score of every document in it, which is what
makes Seismic exact when nothing is pruned and heap_factor = 1.0.

Layout (summary layout 2), per posting list, transposed (as in Seismic's QuantizedSummary) so
that a query touches only the summary entries of its own terms. A list's entries are sorted by
(term, block); a term id is split into a bucket (term >> s) and a low part (term & (2^s - 1)),
with s chosen per list to minimise the list's bytes (a long list has dense buckets and a small
s; a one-block list a large s). Per list t, with nb blocks and bb = ceil(log2 nb) bits:
    list_shift[t]                                   s
    summary_dir[list_dir_ptr[t] + h]                first entry (relative to the list) of
                                                    bucket h, for h = 0 .. (dim-1) >> s, plus
                                                    the list's entry count after the last
    entry_key, from byte list_key_ptr[t]            per entry, (low << bb) | local block id in
                                                    s + bb bits, packed little-endian
    entry_value[list_entry_ptr[t] + i]              u8 code
    block_scale[b]                                  dequantisation step of block b
A lookup of query term q reads two directory words and scans its bucket (at most _MAX_FILL
entries on average) until the low part passes q's; the C++ kernel prefetches the directory
words and buckets of the next lists while it scores documents. Measured on synthetic-100k
(n_postings 1000, α 0.4, 153M entries): summaries of 418 MB (2.7 bytes an entry, everything
included) against 616 MB in summary layout 1 (a u16 term id, a u8 block id and a u8 code per
entry; load() still reads it and converts) and 500 MB in pyseismic-lsr 0.5.4; the kernel is
as fast as with layout 1 or a little faster.
"""
from __future__ import annotations

import numba as nb
import numpy as np

_CHUNK = 64
SUMMARY_LAYOUT = 2
_DIR_BITS = 32  # summary_dir is uint32
_MAX_SHIFT = 16
_MAX_FILL = 16


@nb.njit(nogil=True, cache=True, inline="always")
def block_bits(n_blocks):
    """Bits of a local block id: ceil(log2 n_blocks) (0 for a one-block list)."""
    bb = 0
    while (1 << bb) < n_blocks:
        bb += 1
    return bb


@nb.njit(nogil=True, cache=True)
def list_shift(n_entries, dim):
    """The s that minimises directory bits + low-part bits of a list (ties: the smaller s),
    among those with at most _MAX_FILL entries a bucket on average (a lookup scans half a
    bucket; s = 0 is always allowed)."""
    best_s, best = 0, -1
    for s in range(_MAX_SHIFT + 1):
        n_buckets = ((dim - 1) >> s) + 1
        cost = (n_buckets + 1) * _DIR_BITS + n_entries * s
        if (best < 0 or cost < best) and (s == 0 or n_entries <= _MAX_FILL * n_buckets):
            best_s, best = s, cost
    return best_s


@nb.njit(nogil=True, cache=True)
def plan_layout(list_entry_ptr, list_block_ptr, dim):
    """(list_shift, list_dir_ptr, list_key_ptr) of the packed layout, from entry counts alone."""
    n_lists = list_entry_ptr.shape[0] - 1
    shift = np.zeros(n_lists, dtype=np.uint8)
    dir_ptr = np.zeros(n_lists + 1, dtype=np.int64)
    key_ptr = np.zeros(n_lists + 1, dtype=np.int64)
    for t in range(n_lists):
        e = list_entry_ptr[t + 1] - list_entry_ptr[t]
        n_dir, n_bytes = 0, 0
        if e > 0:
            s = list_shift(e, dim)
            shift[t] = s
            n_dir = ((dim - 1) >> s) + 2
            w = s + block_bits(list_block_ptr[t + 1] - list_block_ptr[t])
            n_bytes = (e * w + 7) // 8
        dir_ptr[t + 1] = dir_ptr[t] + n_dir
        key_ptr[t + 1] = key_ptr[t] + n_bytes
    return shift, dir_ptr, key_ptr


@nb.njit(nogil=True, cache=True, inline="always")
def read_key(keys, base, i, w):
    """Field i (w bits) of the packed keys starting at byte `base` (4-byte little-endian load)."""
    bit = i * w
    p = base + (bit >> 3)
    x = (np.uint32(keys[p]) | (np.uint32(keys[p + 1]) << np.uint32(8))
         | (np.uint32(keys[p + 2]) << np.uint32(16)) | (np.uint32(keys[p + 3]) << np.uint32(24)))
    return np.int64((x >> np.uint32(bit & 7)) & np.uint32((1 << w) - 1))


@nb.njit(nogil=True, cache=True)
def encode_list(terms, blocks, s, bb, dim, summary_dir, d0, entry_key, k0):
    """Directory and packed keys of one list whose entries are sorted by (term, block)."""
    n_buckets = ((dim - 1) >> s) + 1
    e = terms.shape[0]
    j = 0
    for h in range(n_buckets + 1):
        while j < e and (np.int64(terms[j]) >> s) < h:
            j += 1
        summary_dir[d0 + h] = j
    w = s + bb
    lmask = (1 << s) - 1
    for i in range(e):
        key = ((np.int64(terms[i]) & lmask) << bb) | np.int64(blocks[i])
        bit = i * w
        p = k0 + (bit >> 3)
        v = key << (bit & 7)
        while v:  # bytes are zero-initialised and fields do not overlap: or them in
            entry_key[p] |= np.uint8(v & 255)
            v >>= 8
            p += 1


@nb.njit(nogil=True, parallel=True, cache=True)
def pack_layout1(list_entry_ptr, list_block_ptr, entry_term, entry_block, dim):
    """Summary layout 1 (a term id and a block id per entry) -> the packed layout's arrays."""
    shift, dir_ptr, key_ptr = plan_layout(list_entry_ptr, list_block_ptr, dim)
    summary_dir = np.zeros(dir_ptr[-1], dtype=np.uint32)
    entry_key = np.zeros(key_ptr[-1] + 4, dtype=np.uint8)
    n_lists = list_entry_ptr.shape[0] - 1
    for t in nb.prange(n_lists):
        e0, e1 = list_entry_ptr[t], list_entry_ptr[t + 1]
        if e1 > e0:
            encode_list(entry_term[e0:e1], entry_block[e0:e1], np.int64(shift[t]),
                        block_bits(list_block_ptr[t + 1] - list_block_ptr[t]), dim,
                        summary_dir, dir_ptr[t], entry_key, key_ptr[t])
    return shift, dir_ptr, summary_dir, key_ptr, entry_key


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
    """Pass 2: quantised summaries in the packed per-list layout (no second sort: the cut
    found by pass 1 is applied as a threshold). Returns (block_scale, entry_value, list_shift,
    list_dir_ptr, summary_dir, list_key_ptr, entry_key)."""
    n_lists = list_block_ptr.shape[0] - 1
    n_blocks = block_doc_ptr.shape[0] - 1
    block_scale = np.zeros(n_blocks, dtype=np.float32)
    entry_value = np.empty(list_entry_ptr[-1], dtype=np.uint8)
    shift, dir_ptr, key_ptr = plan_layout(list_entry_ptr, list_block_ptr, dim)
    summary_dir = np.zeros(dir_ptr[-1], dtype=np.uint32)
    entry_key = np.zeros(key_ptr[-1] + 4, dtype=np.uint8)  # +4: read_key loads 4 bytes
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
                entry_value[e0 + i] = tri_v[order[i]]
            encode_list(tri_t[order], tri_b[order], np.int64(shift[t]),
                        block_bits(list_block_ptr[t + 1] - b0), dim, summary_dir, dir_ptr[t],
                        entry_key, key_ptr[t])
    return block_scale, entry_value, shift, dir_ptr, summary_dir, key_ptr, entry_key
