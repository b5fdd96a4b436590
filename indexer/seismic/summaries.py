"""Block summaries (Seismic §4.3), their 2-bit quantisation and their packed per-list layout.

A block's summary is the per-term maximum over its documents, pruned to the largest entries
holding `summary_energy` of its L1 mass (entries sorted by value, kept up to and including the
one that reaches the target; summary_energy = 1.0 keeps every term).

Quantisation rule (per block, LEVELS = 2^CODE_BITS = 4 levels): the block's kept values, sorted,
are split into LEVELS groups of equal count (the first groups one larger when the count does
not divide); level k is the largest value of group k times (1 + 2^-20), and q(v) is the
smallest k with level k >= v. So a dequantised value is never below the true maximum: a
summary never lowers a term's bound, and with summary_energy = 1.0 a block's summary dot
product is an upper bound of the score of every document in it, which is what makes Seismic
exact when nothing is pruned and heap_factor = 1.0. Levels at equal-count quantiles keep most
values close to their level (the kept values crowd near the energy cut). Measured against
8-bit codes at a given (query_cut, heap_factor): recall unchanged on synthetic-100k and a
little higher on -flat; time within noise on -100k, 1-15 % more on -flat (2-bit uniform codes:
5-24 % more); 4-bit uniform codes (base + code * step) took 34 MB more on -100k.

Layout (summary layout 5), per posting list, transposed (as in Seismic's QuantizedSummary) so
that a query touches only the summary entries of its own terms. A list's entries are sorted by
(term, block); a term id is split into a bucket (term >> s) and a low part (term & (2^s - 1)),
with s chosen per list to minimise the list's bytes. Per plain list t, with nb blocks,
bb = ceil(log2 nb) bits, E entries and B = ((dim - 1) >> s) + 1 buckets:
    list_shift[t]                                   s
    summary_dir, u16 words from list_dir_ptr[t]     for g = 0 .. ceil(B / _GROUP): the entries
                                                    before bucket _GROUP * g (the last word: E);
                                                    one word each when E < 65536, else two (low
                                                    and high half, a wide list)
    entry_key, from byte list_key_ptr[t]            the buckets' sizes in unary: per bucket, a
                                                    one per entry then a zero (E + B bits,
                                                    little-endian, padded to a byte); then per
                                                    entry, (((low << bb) | local block id)
                                                    << CODE_BITS) | code in s + bb + CODE_BITS
                                                    bits (read with 8-byte loads)
    block_levels[b * LEVELS + code]                 the dequantised value of a code in block b
Bucket h's entries start after the h % _GROUP zeros that follow bit base + _GROUP * g of the
unary sizes (base: directory word g = h // _GROUP; that many ones and _GROUP * g zeros come
before) and run to the next zero: a select over a few 64-bit words. Layout 4 had a directory
word per bucket instead; its 16 bits a bucket bound s from below (a fine s made the directory
large), while the unary sizes cost one bit a bucket and one an entry, so s gets small (2-4 on
the synthetic collections) and a bucket holds about one entry.
Grouped lists (flag GROUPED in list_shift[t], s in its low 5 bits; added in layout 4, unchanged
since): a list whose blocks share many summary terms stores each term's low part once,
followed by its entries:
    summary_dir, from list_dir_ptr[t]               BYTE offset (relative to the list) of
                                                    bucket h's first record, h = 0 .. nbk, one
                                                    word a bucket when the list's keys take
                                                    < 65536 bytes, else two
    entry_key, from byte list_key_ptr[t]            per bucket (starting on a byte boundary),
                                                    records sorted by low part: low (s bits),
                                                    then for each of the term's blocks
                                                    ((block << CODE_BITS | code) << 1) | more,
                                                    more = 1 when another entry of the term
                                                    follows (bb + CODE_BITS + 1 bits)
The planner (plan_list) takes, per list, whichever of the two encodings has fewer bytes
("auto"); since layout 5 it is almost always the plain one (SciFact: 9 of 15,742 lists grouped).
Both encodings hold the same entries, so searches return the same results with either.
The C++ kernel prefetches the directory words, the unary sizes and the estimated keys of the
next lists while it scores documents. Summary bytes (synthetic-100k, n_postings 1000, alpha 0.4,
154M entries; benchmarks/index.py): 283 MB in layout 4 (14.7 bits an entry), 418 MB in layout
2, 500 MB in pyseismic-lsr 0.5.4; layout 5: see BENCHMARKS.md. Older layouts are still read:
load() converts layouts 3 and 4 exactly (codes and levels kept), and layouts 2 (u32 directory,
keys of s + bb bits, a separate u8 code per entry with a per-block scale) and 1 (a u16 term id,
a u8 block id and a u8 code per entry) by re-quantising their dequantised values, which keeps
every bound.
"""
from __future__ import annotations

import numba as nb
import numpy as np

_CHUNK = 64
SUMMARY_LAYOUT = 5
GROUPED = 0x80  # list_shift flag: the list's entries are grouped by term
SHIFT_MASK = 0x1F
_MAX_SHIFT = 16
_MAX_FILL = 16
_GROUP = 64  # buckets a plain list's directory word counts the entries before (layout 5)
# Grouped records are scanned one after the other (a record's length is in its entries), so a
# grouped list keeps fewer records a bucket than a plain one has entries. SciFact, one core,
# query_cut 10 / heap_factor 0.9, against every list plain: at most 8 a bucket on average,
# summaries -14 % and queries +8 %; 4: -10 % and +1 %; 2: -4 % and -2 %.
_GROUP_FILL = 4
CODE_BITS = 2
LEVELS = 1 << CODE_BITS
_WIDE = 65536  # lists with at least this many entries use two directory words a bucket
_NUDGE = np.float32(1.0 + 2.0 ** -20)
KEY_PAD = 8  # entry_key ends with 8 bytes of padding: the kernels load 8 bytes at a time


@nb.njit(nogil=True, cache=True, inline="always")
def block_bits(n_blocks):
    """Bits of a local block id: ceil(log2 n_blocks) (0 for a one-block list)."""
    bb = 0
    while (1 << bb) < n_blocks:
        bb += 1
    return bb


@nb.njit(nogil=True, cache=True, inline="always")
def dir_words(n_entries):
    """Directory words (u16) a count takes in a list of n_entries entries."""
    return 1 if n_entries < _WIDE else 2


@nb.njit(nogil=True, cache=True, inline="always")
def unary_bytes(n_entries, n_buckets):
    """Bytes of a plain list's unary bucket sizes (a one per entry, a zero per bucket)."""
    return (n_entries + n_buckets + 7) >> 3


@nb.njit(nogil=True, cache=True, inline="always")
def plain_size(n_entries, n_blocks, s, dim):
    """(directory words, bytes) of a plain list (summary layout 5) with bucket shift s."""
    n_buckets = ((dim - 1) >> s) + 1
    n_dir = ((n_buckets + _GROUP - 1) // _GROUP + 1) * dir_words(n_entries)
    w = s + block_bits(n_blocks) + CODE_BITS
    return n_dir, unary_bytes(n_entries, n_buckets) + (n_entries * w + 7) // 8


@nb.njit(nogil=True, cache=True)
def list_shift(n_entries, n_blocks, dim):
    """The s that minimises a plain list's bytes (plain_size; ties: the smaller s), among those
    with at most _MAX_FILL entries a bucket on average (s = 0 is always allowed)."""
    best_s, best = 0, -1
    for s in range(_MAX_SHIFT + 1):
        n_dir, n_bytes = plain_size(n_entries, n_blocks, s, dim)
        cost = 2 * n_dir + n_bytes
        if (best < 0 or cost < best) and (s == 0 or n_entries <= _MAX_FILL * (((dim - 1) >> s) + 1)):
            best_s, best = s, cost
    return best_s


@nb.njit(nogil=True, cache=True)
def plan_list(terms, mult, n_terms, n_entries, n_blocks, dim, grouping, bucket_bits):
    """(list_shift byte, directory words, key bytes) of one list of n_entries summary entries
    over the n_terms distinct terms terms[:n_terms] (any order), term t holding mult[t] of them.
    grouping: 0 auto, 1 never, 2 always (config.SUMMARY_GROUPS). bucket_bits: dim int64 of scratch."""
    bb = block_bits(n_blocks)
    s = list_shift(n_entries, n_blocks, dim)
    p_dir, p_bytes = plain_size(n_entries, n_blocks, s, dim)
    if grouping == 1 or n_entries == 0:
        return np.uint8(s), p_dir, p_bytes
    # grouped: the shift by an estimate (half a byte of padding a non-empty bucket), then the
    # exact bytes for that shift
    ew = bb + CODE_BITS + 1
    g, best = 0, -1
    for c in range(_MAX_SHIFT + 1):
        n_buckets = ((dim - 1) >> c) + 1
        if c > 0 and n_terms > _GROUP_FILL * n_buckets:
            continue
        bits = n_entries * ew + n_terms * c + 4 * min(n_buckets, n_terms)
        cost = (n_buckets + 1) * 16 * (1 if bits < 8 * _WIDE else 2) + bits
        if best < 0 or cost < best:
            g, best = c, cost
    n_buckets = ((dim - 1) >> g) + 1
    bucket_bits[:n_buckets] = 0
    for i in range(n_terms):
        t = terms[i]
        bucket_bits[t >> g] += g + mult[t] * ew
    g_bytes = 0
    for h in range(n_buckets):
        g_bytes += (bucket_bits[h] + 7) >> 3
    g_dir = (n_buckets + 1) * (1 if g_bytes < _WIDE else 2)
    if grouping == 2 or 2 * g_dir + g_bytes < 2 * p_dir + p_bytes:
        return np.uint8(GROUPED | g), g_dir, g_bytes
    return np.uint8(s), p_dir, p_bytes


@nb.njit(nogil=True, cache=True)
def plan_sorted(list_entry_ptr, list_block_ptr, entry_term, dim, grouping):
    """plan_list for every list of entries sorted by (term, block) within each list:
    (list_shift, n_dir, n_bytes)."""
    n_lists = list_entry_ptr.shape[0] - 1
    shift = np.zeros(n_lists, dtype=np.uint8)
    n_dir = np.zeros(n_lists, dtype=np.int64)
    n_bytes = np.zeros(n_lists, dtype=np.int64)
    mult = np.zeros(dim, dtype=np.int64)
    seen = np.empty(dim, dtype=np.int64)
    scratch = np.empty(dim, dtype=np.int64)
    for t in range(n_lists):
        e0, e1 = list_entry_ptr[t], list_entry_ptr[t + 1]
        n_seen = 0
        for i in range(e0, e1):
            term = np.int64(entry_term[i])
            if mult[term] == 0:
                seen[n_seen] = term
                n_seen += 1
            mult[term] += 1
        shift[t], n_dir[t], n_bytes[t] = plan_list(seen, mult, n_seen, e1 - e0,
                                                   list_block_ptr[t + 1] - list_block_ptr[t], dim,
                                                   grouping, scratch)
        for i in range(n_seen):
            mult[seen[i]] = 0
    return shift, n_dir, n_bytes


def layout_ptrs(n_dir, n_bytes):
    """(list_dir_ptr, list_key_ptr) from every list's directory words and key bytes."""
    return (np.concatenate(([0], np.cumsum(n_dir))).astype(np.int64),
            np.concatenate(([0], np.cumsum(n_bytes))).astype(np.int64))


@nb.njit(nogil=True, cache=True, inline="always")
def list_wide(shift, n_entries, n_bytes):
    """Whether a list's directory takes two words a bucket (plain lists: by entries, grouped
    lists: by key bytes, the unit of their directory)."""
    if shift & GROUPED:
        return n_bytes >= _WIDE
    return n_entries >= _WIDE


@nb.njit(nogil=True, cache=True, inline="always")
def read_dir(summary_dir, d0, h, wide):
    """Directory word h of a list whose directory starts at d0."""
    if wide:
        return np.int64(summary_dir[d0 + 2 * h]) | (np.int64(summary_dir[d0 + 2 * h + 1]) << 16)
    return np.int64(summary_dir[d0 + h])


@nb.njit(nogil=True, cache=True, inline="always")
def read_key(keys, base, i, w):
    """Field i (w <= 32 bits) of the packed keys starting at byte `base` (an 8-byte
    little-endian load, as the C++ kernel does)."""
    return read_bits(keys, base, i * w, w)


@nb.njit(nogil=True, cache=True, inline="always")
def read_bits(keys, base, bit, w):
    """The w (<= 32) bits at bit offset `bit` of the packed bytes starting at byte `base`."""
    p = base + (bit >> 3)
    x = np.uint64(0)
    for j in range(8):
        x |= np.uint64(keys[p + j]) << np.uint64(8 * j)
    return np.int64((x >> np.uint64(bit & 7)) & np.uint64((1 << w) - 1))


@nb.njit(nogil=True, cache=True, inline="always")
def bucket_entries(summary_dir, d0, wide, keys, k0, h):
    """Entries [i0, i1) of bucket h of a plain list (summary layout 5) whose directory starts at
    word d0 and bytes at k0: the directory word of h's group (h // _GROUP) counts the entries
    before the group, so the group's unary sizes start at bit base + _GROUP * group; bucket h
    starts after h % _GROUP of their zeros and runs to the next zero."""
    g = h // _GROUP
    base = read_dir(summary_dir, d0, g, wide)
    pos = base + _GROUP * g
    j = h - _GROUP * g
    ones = 0
    while j > 0:
        bit = (keys[k0 + (pos >> 3)] >> (pos & 7)) & 1
        ones += bit
        j -= 1 - bit
        pos += 1
    n = 0
    while (keys[k0 + ((pos + n) >> 3)] >> ((pos + n) & 7)) & 1:
        n += 1
    return base + ones, base + ones + n


@nb.njit(nogil=True, cache=True, inline="always")
def _put_dir(summary_dir, d0, g, wide, v):
    if wide:
        summary_dir[d0 + 2 * g] = v & 0xFFFF
        summary_dir[d0 + 2 * g + 1] = v >> 16
    else:
        summary_dir[d0 + g] = v


@nb.njit(nogil=True, cache=True, inline="always")
def _put_bits(entry_key, k0, bit, v):
    """Or v into the zero-initialised packed bytes from byte k0, at bit offset `bit` (fields do
    not overlap, so or-ing them in is writing them)."""
    p = k0 + (bit >> 3)
    v = v << (bit & 7)
    while v:
        entry_key[p] |= np.uint8(v & 255)
        v >>= 8
        p += 1


@nb.njit(nogil=True, cache=True)
def encode_list(terms, blocks, codes, s, bb, dim, summary_dir, d0, entry_key, k0):
    """Directory, unary bucket sizes and packed keys of one plain list whose entries are sorted
    by (term, block) (summary layout 5)."""
    n_buckets = ((dim - 1) >> s) + 1
    e = terms.shape[0]
    wide = dir_words(e) == 2
    j = 0
    bit = 0
    for h in range(n_buckets):
        if h % _GROUP == 0:
            _put_dir(summary_dir, d0, h // _GROUP, wide, j)
        while j < e and (np.int64(terms[j]) >> s) == h:
            entry_key[k0 + (bit >> 3)] |= np.uint8(1 << (bit & 7))
            bit += 1
            j += 1
        bit += 1  # the bucket's zero
    if j != e:
        raise ValueError("plain summary list: terms out of order or out of range")
    _put_dir(summary_dir, d0, (n_buckets + _GROUP - 1) // _GROUP, wide, e)
    k1 = k0 + unary_bytes(e, n_buckets)
    w = s + bb + CODE_BITS
    lmask = (1 << s) - 1
    for i in range(e):
        key = ((((np.int64(terms[i]) & lmask) << bb) | np.int64(blocks[i])) << CODE_BITS) \
            | np.int64(codes[i])
        _put_bits(entry_key, k1, i * w, key)


@nb.njit(nogil=True, cache=True)
def encode_grouped(terms, blocks, codes, g, bb, dim, summary_dir, d0, entry_key, k0, n_bytes):
    """Directory (byte offsets) and records of one grouped list whose entries are sorted by
    (term, block); returns the bytes written (n_bytes, as planned)."""
    n_buckets = ((dim - 1) >> g) + 1
    wide = n_bytes >= _WIDE
    ew = bb + CODE_BITS + 1
    gmask = (1 << g) - 1
    e = terms.shape[0]
    j = 0
    byte = 0
    for h in range(n_buckets + 1):
        if wide:
            summary_dir[d0 + 2 * h] = byte & 0xFFFF
            summary_dir[d0 + 2 * h + 1] = byte >> 16
        else:
            summary_dir[d0 + h] = byte
        if h == n_buckets:
            break
        bit = byte * 8
        while j < e and (np.int64(terms[j]) >> g) == h:
            t = terms[j]
            _put_bits(entry_key, k0, bit, np.int64(t) & gmask)
            bit += g
            while True:
                more = np.int64(j + 1 < e and terms[j + 1] == t)
                _put_bits(entry_key, k0, bit,
                          (((np.int64(blocks[j]) << CODE_BITS) | np.int64(codes[j])) << 1) | more)
                bit += ew
                j += 1
                if not more:
                    break
        byte = (bit + 7) >> 3
    return byte


@nb.njit(nogil=True, cache=True)
def quantize_block(vals):
    """(levels, codes): the block's LEVELS dequantisation levels, ascending, and the code of
    every value, with levels[codes] >= vals elementwise (see the module docstring)."""
    levels = np.zeros(LEVELS, dtype=np.float32)
    codes = np.zeros(vals.shape[0], dtype=np.uint8)
    _quantize_into(vals, np.empty(vals.shape[0], dtype=np.float32), levels, codes)
    return levels, codes


@nb.njit(nogil=True, cache=True)
def _select(a, lo, hi, r):
    """Quickselect: reorder a[lo:hi] so that a[r] holds the value of rank r (lo <= r < hi),
    nothing larger left of it, nothing smaller right of it. Median-of-three pivots."""
    while hi - lo > 16:
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi - 1]
        pivot = max(min(x, y), min(max(x, y), z))
        i, j = lo, hi - 1
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if r <= j:
            hi = j + 1
        elif r >= i:
            lo = i
        else:  # j < r < i: a[r] == pivot, in place
            return
    for i in range(lo + 1, hi):  # a short range: insertion sort
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@nb.njit(nogil=True, cache=True, inline="always")
def _quantize_into(vals, scratch, levels, codes):
    """quantize_block into caller-owned arrays (levels[:LEVELS], codes[:n], scratch[:n]):
    the build quantises millions of blocks and allocates nothing per block."""
    n = vals.shape[0]
    if n == 0:
        levels[:] = 0.0
        return
    srt = scratch[:n]
    srt[:] = vals
    lo = 0
    for k in range(LEVELS):
        # level k: the largest value of the k-th of LEVELS groups of equal count, nudged up.
        # Order statistics by selection, not a sort (a sort was ~40 % of filling the summaries):
        # after selecting rank r, every rank above it lies right of r.
        r = ((k + 1) * n + LEVELS - 1) // LEVELS - 1
        if r >= lo:
            _select(srt, lo, n, r)
            lo = r + 1
        levels[k] = np.float32(srt[r] * _NUDGE)
    for i in range(n):  # the smallest k with levels[k] >= v: levels ascend, the last >= every v
        v = vals[i]
        q = 0
        for k in range(LEVELS - 1):  # counted, not searched: no branch to mispredict
            q += levels[k] < v
        codes[i] = q


def encode_entries(list_entry_ptr, list_block_ptr, entry_term, entry_block, entry_val, dim, grouping=0):
    """Entries sorted by (term, block) within each list, with float values (upper bounds) ->
    the arrays of summary layout 5: (block_levels, list_shift, list_dir_ptr, summary_dir,
    list_key_ptr, entry_key). Used to convert older layouts on load."""
    block_levels, codes = _quantize_entries(list_entry_ptr, list_block_ptr, entry_block, entry_val)
    return (block_levels,) + encode_coded(list_entry_ptr, list_block_ptr, entry_term, entry_block,
                                          codes, dim, grouping)


def encode_coded(list_entry_ptr, list_block_ptr, entry_term, entry_block, entry_code, dim, grouping=0):
    """Quantised entries sorted by (term, block) within each list -> (list_shift, list_dir_ptr,
    summary_dir, list_key_ptr, entry_key) of summary layout 5 (the block levels are unchanged)."""
    shift, n_dir, n_bytes = plan_sorted(list_entry_ptr, list_block_ptr, entry_term, dim, grouping)
    dir_ptr, key_ptr = layout_ptrs(n_dir, n_bytes)
    summary_dir, entry_key = _encode_coded(list_entry_ptr, list_block_ptr, entry_term, entry_block,
                                           entry_code, dim, shift, dir_ptr, key_ptr)
    return shift, dir_ptr, summary_dir, key_ptr, entry_key


@nb.njit(nogil=True, cache=True)
def encode_any(terms, blocks, codes, shift, n_blocks, dim, summary_dir, d0, entry_key, k0, n_bytes):
    """One list's entries, sorted by (term, block), in the encoding its shift byte names."""
    bb = block_bits(n_blocks)
    if shift & GROUPED:
        written = encode_grouped(terms, blocks, codes, np.int64(shift & SHIFT_MASK), bb, dim,
                                 summary_dir, d0, entry_key, k0, n_bytes)
        if written != n_bytes:
            raise ValueError("grouped summary list: bytes written differ from the plan")
    else:
        encode_list(terms, blocks, codes, np.int64(shift), bb, dim, summary_dir, d0, entry_key, k0)


@nb.njit(nogil=True, parallel=True, cache=True)
def _quantize_entries(list_entry_ptr, list_block_ptr, entry_block, entry_val):
    """(block_levels, codes) of float entries: each block's values quantised together."""
    n_lists = list_entry_ptr.shape[0] - 1
    block_levels = np.zeros(list_block_ptr[-1] * LEVELS, dtype=np.float32)
    codes = np.zeros(list_entry_ptr[-1], dtype=np.uint8)
    for t in nb.prange(n_lists):
        e0, e1 = list_entry_ptr[t], list_entry_ptr[t + 1]
        if e1 == e0:
            continue
        b0, nb_ = list_block_ptr[t], list_block_ptr[t + 1] - list_block_ptr[t]
        counts = np.zeros(nb_ + 1, dtype=np.int64)
        for i in range(e0, e1):
            counts[np.int64(entry_block[i]) + 1] += 1
        ptr = np.cumsum(counts)
        fill = ptr[:-1].copy()
        pos = np.empty(e1 - e0, dtype=np.int64)  # entries grouped by block, list order kept
        for i in range(e0, e1):
            j = np.int64(entry_block[i])
            pos[fill[j]] = i
            fill[j] += 1
        for j in range(nb_):
            if ptr[j + 1] == ptr[j]:
                continue
            members = pos[ptr[j]:ptr[j + 1]]
            lv, c = quantize_block(entry_val[members])
            block_levels[(b0 + j) * LEVELS:(b0 + j + 1) * LEVELS] = lv
            for m in range(members.shape[0]):
                codes[members[m]] = c[m]
    return block_levels, codes


@nb.njit(nogil=True, parallel=True, cache=True)
def _encode_coded(list_entry_ptr, list_block_ptr, entry_term, entry_block, entry_code, dim,
                  shift, dir_ptr, key_ptr):
    summary_dir = np.zeros(dir_ptr[-1], dtype=np.uint16)
    entry_key = np.zeros(key_ptr[-1] + KEY_PAD, dtype=np.uint8)
    for t in nb.prange(list_entry_ptr.shape[0] - 1):
        e0, e1 = list_entry_ptr[t], list_entry_ptr[t + 1]
        if e1 == e0:
            continue
        encode_any(entry_term[e0:e1], entry_block[e0:e1], entry_code[e0:e1], shift[t],
                   list_block_ptr[t + 1] - list_block_ptr[t], dim, summary_dir, dir_ptr[t],
                   entry_key, key_ptr[t], key_ptr[t + 1] - key_ptr[t])
    return summary_dir, entry_key


@nb.njit(nogil=True, parallel=True, cache=True)
def decode_layout4(list_entry_ptr, list_block_ptr, list_shift, list_dir_ptr, summary_dir,
                   list_key_ptr, entry_key, dim):
    """(entry_term, entry_block, entry_code, damaged) of summary layouts 3 and 4 (plain lists:
    a directory word per bucket; grouped lists as in layout 5). damaged[t]: list t's directory
    or records do not add up to its entries (nothing is read outside the list)."""
    n_lists = list_entry_ptr.shape[0] - 1
    n = list_entry_ptr[-1]
    term = np.zeros(n, dtype=np.int32)
    blk = np.zeros(n, dtype=np.int32)
    code = np.zeros(n, dtype=np.uint8)
    damaged = np.zeros(n_lists, dtype=np.bool_)
    for t in nb.prange(n_lists):
        e0, e1 = list_entry_ptr[t], list_entry_ptr[t + 1]
        e = e1 - e0
        if e == 0:
            continue
        sb = np.int64(list_shift[t])
        s = sb & SHIFT_MASK
        bb = block_bits(list_block_ptr[t + 1] - list_block_ptr[t])
        d0, k0 = list_dir_ptr[t], list_key_ptr[t]
        n_bytes = list_key_ptr[t + 1] - k0
        wide = list_wide(sb, e, n_bytes)
        n_buckets = ((dim - 1) >> s) + 1
        if (d0 + (n_buckets + 1) * (2 if wide else 1) > list_dir_ptr[t + 1] or s > _MAX_SHIFT
                or bb > 16):
            damaged[t] = True
            continue
        o = 0
        prev = np.int64(0)
        unit = n_bytes if sb & GROUPED else e  # a directory word counts bytes or entries
        for h in range(n_buckets + 1):
            d = read_dir(summary_dir, d0, h, wide)
            if d < prev or d > unit:
                damaged[t] = True
                break
            prev = d
        if damaged[t]:
            continue
        if sb & GROUPED:
            ew = bb + CODE_BITS + 1
            hw = s + ew
            for h in range(n_buckets):
                pos = 8 * read_dir(summary_dir, d0, h, wide)
                end = 8 * read_dir(summary_dir, d0, h + 1, wide)
                while pos + hw <= end and o < e:
                    f = read_bits(entry_key, k0, pos, hw)
                    low = f & ((1 << s) - 1)
                    ent = f >> s
                    pos += hw
                    while True:
                        term[e0 + o] = (h << s) | low
                        blk[e0 + o] = ent >> (CODE_BITS + 1)
                        code[e0 + o] = (ent >> 1) & ((1 << CODE_BITS) - 1)
                        o += 1
                        if (ent & 1) == 0 or o == e or pos + ew > end:
                            break
                        ent = read_bits(entry_key, k0, pos, ew)
                        pos += ew
            damaged[t] = o != e
        else:
            w = s + bb + CODE_BITS
            if (e * w + 7) // 8 > n_bytes or read_dir(summary_dir, d0, n_buckets, wide) != e:
                damaged[t] = True
                continue
            for h in range(n_buckets):
                for i in range(read_dir(summary_dir, d0, h, wide), read_dir(summary_dir, d0, h + 1, wide)):
                    key = read_key(entry_key, k0, i, w)
                    term[e0 + i] = (h << s) | (key >> (bb + CODE_BITS))
                    blk[e0 + i] = (key >> CODE_BITS) & ((1 << bb) - 1)
                    code[e0 + i] = key & ((1 << CODE_BITS) - 1)
    return term, blk, code, damaged


@nb.njit(nogil=True, parallel=True, cache=True)
def decode_layout2(list_entry_ptr, list_block_ptr, list_shift, list_dir_ptr, summary_dir,
                   list_key_ptr, entry_key, dim):
    """(entry_term, entry_block) of summary layout 2 (u32 directory, keys of s + bb bits)."""
    n = list_entry_ptr[-1]
    term = np.empty(n, dtype=np.int32)
    blk = np.empty(n, dtype=np.int32)
    for t in nb.prange(list_entry_ptr.shape[0] - 1):
        e0 = list_entry_ptr[t]
        if list_entry_ptr[t + 1] == e0:
            continue
        s = np.int64(list_shift[t])
        bb = block_bits(list_block_ptr[t + 1] - list_block_ptr[t])
        w = s + bb
        d0, k0 = list_dir_ptr[t], list_key_ptr[t]
        for h in range(((dim - 1) >> s) + 1):
            for i in range(np.int64(summary_dir[d0 + h]), np.int64(summary_dir[d0 + h + 1])):
                bit = i * w
                p = k0 + (bit >> 3)
                x = np.int64(0)
                for j in range(4):
                    if p + j < entry_key.shape[0]:
                        x |= np.int64(entry_key[p + j]) << (8 * j)
                key = (x >> (bit & 7)) & ((1 << w) - 1)
                term[e0 + i] = (h << s) | (key >> bb)
                blk[e0 + i] = key & ((1 << bb) - 1)
    return term, blk


@nb.njit(nogil=True, cache=True)
def _block_union(block_docs, fwd_ptr, fwd_terms, fwd_vals, maxv, touched):
    """Per-term maxima of a block into maxv; touched[:n] lists the terms in first-seen order."""
    # Branch-free: whether a term is new and whether a value is larger are coin flips that
    # the CPU mispredicts; a store that the next one may overwrite and a max() cost less
    # (the union was most of the build: 3.2x faster on SciFact, same result).
    n_t = 0
    for d in block_docs:
        for p in range(fwd_ptr[d], fwd_ptr[d + 1]):
            t = fwd_terms[p]
            old = maxv[t]
            touched[n_t] = t
            n_t += old == 0.0
            maxv[t] = max(old, fwd_vals[p])
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


@nb.njit(nogil=True, cache=True, inline="always")
def _keep(v, cut, ties_left):
    """(kept, ties_left after): the energy cut's rule for one value, as both passes apply it
    (branch-free: most terms are not kept, and which ones is a coin flip to the CPU)."""
    tie = v == cut
    keep = (v > cut) | (tie & (ties_left > 0))
    return keep, ties_left - (keep & tie & (cut > 0))


@nb.njit(nogil=True, parallel=True, cache=True)
def count_summaries(list_block_ptr, block_doc_ptr, block_docs, fwd_ptr, fwd_terms, fwd_vals,
                    dim, alpha, grouping):
    """Pass 1: energy cut of every block (threshold, ties), summary entries per list and each
    list's encoding (plan_list: list_shift byte, directory words, key bytes)."""
    n_lists = list_block_ptr.shape[0] - 1
    n_blocks = block_doc_ptr.shape[0] - 1
    thr = np.zeros(n_blocks, dtype=np.float32)
    ties = np.zeros(n_blocks, dtype=np.int64)
    n_entries = np.zeros(n_lists, dtype=np.int64)
    shift = np.zeros(n_lists, dtype=np.uint8)
    n_dir = np.zeros(n_lists, dtype=np.int64)
    n_bytes = np.zeros(n_lists, dtype=np.int64)
    n_chunks = (n_lists + _CHUNK - 1) // _CHUNK
    for ch in nb.prange(n_chunks):
        maxv = np.zeros(dim, dtype=np.float32)
        touched = np.empty(dim, dtype=np.int32)
        vals = np.empty(dim, dtype=np.float32)
        mult = np.zeros(dim, dtype=np.int64)  # a list's entries a term ...
        seen = np.empty(dim, dtype=np.int64)  # ... and its distinct terms
        scratch = np.empty(dim, dtype=np.int64)
        for t in range(ch * _CHUNK, min(n_lists, (ch + 1) * _CHUNK)):
            n_seen = 0
            for b in range(list_block_ptr[t], list_block_ptr[t + 1]):
                n_t = _block_union(block_docs[block_doc_ptr[b]:block_doc_ptr[b + 1]],
                                   fwd_ptr, fwd_terms, fwd_vals, maxv, touched)
                thr[b], kept, ties[b] = _energy_cut(maxv, touched, n_t, alpha, vals)
                n_entries[t] += kept
                cut, ties_left = thr[b], ties[b]
                for i in range(n_t):
                    term = touched[i]
                    keep, ties_left = _keep(maxv[term], cut, ties_left)
                    maxv[term] = 0.0
                    seen[n_seen] = term
                    n_seen += keep & (mult[term] == 0)
                    mult[term] += keep
            shift[t], n_dir[t], n_bytes[t] = plan_list(seen, mult, n_seen, n_entries[t],
                                                       list_block_ptr[t + 1] - list_block_ptr[t],
                                                       dim, grouping, scratch)
            for i in range(n_seen):
                mult[seen[i]] = 0
    return thr, ties, n_entries, shift, n_dir, n_bytes


@nb.njit(nogil=True, parallel=True, cache=True)
def fill_summaries(list_block_ptr, block_doc_ptr, block_docs, fwd_ptr, fwd_terms, fwd_vals,
                   dim, thr, ties, list_entry_ptr, shift, dir_ptr, key_ptr):
    """Pass 2: quantised summaries in the packed per-list layout that pass 1 planned (no
    second sort: the cut found by pass 1 is applied as a threshold). Returns (block_levels,
    summary_dir, entry_key).

    Per chunk of lists, every scratch array is allocated once (dim-sized): millions of blocks
    allocate nothing of their own, and a list's entries are put in (term, block) order by a
    counting sort on the term (blocks are visited in order, so it is stable) instead of a
    merge sort. Same arrays as the merge-sort version, bit for bit (compared on SciFact and
    synthetic-20k when it changed)."""
    n_lists = list_block_ptr.shape[0] - 1
    n_blocks = block_doc_ptr.shape[0] - 1
    block_levels = np.zeros(n_blocks * LEVELS, dtype=np.float32)
    summary_dir = np.zeros(dir_ptr[-1], dtype=np.uint16)
    entry_key = np.zeros(key_ptr[-1] + KEY_PAD, dtype=np.uint8)
    n_chunks = (n_lists + _CHUNK - 1) // _CHUNK
    for ch in nb.prange(n_chunks):
        maxv = np.zeros(dim, dtype=np.float32)
        touched = np.empty(dim, dtype=np.int32)
        kv = np.empty(dim, dtype=np.float32)  # a block's kept values ...
        kt = np.empty(dim, dtype=np.int32)  # ... their terms
        kc = np.empty(dim, dtype=np.uint8)  # ... their codes
        qs = np.empty(dim, dtype=np.float32)  # quantisation's sort buffer
        lv = np.empty(LEVELS, dtype=np.float32)
        start = np.zeros(dim, dtype=np.int64)  # counting sort: entries a term, then its offset
        seen = np.empty(dim, dtype=np.int32)  # the list's distinct summary terms
        for t in range(ch * _CHUNK, min(n_lists, (ch + 1) * _CHUNK)):
            e0, e1 = list_entry_ptr[t], list_entry_ptr[t + 1]
            if e1 == e0:
                continue
            tri_t = np.empty(e1 - e0, dtype=np.int32)
            tri_b = np.empty(e1 - e0, dtype=np.uint8)
            tri_v = np.empty(e1 - e0, dtype=np.uint8)
            o = 0
            n_seen = 0
            b0 = list_block_ptr[t]
            for b in range(b0, list_block_ptr[t + 1]):
                n_t = _block_union(block_docs[block_doc_ptr[b]:block_doc_ptr[b + 1]],
                                   fwd_ptr, fwd_terms, fwd_vals, maxv, touched)
                n_k = 0
                ties_left = ties[b]
                cut = thr[b]
                for i in range(n_t):  # branch-free, as the union: most terms are not kept
                    term = touched[i]
                    v = maxv[term]
                    maxv[term] = 0.0
                    keep, ties_left = _keep(v, cut, ties_left)
                    kt[n_k] = term
                    kv[n_k] = v
                    n_k += keep
                _quantize_into(kv[:n_k], qs, lv, kc)
                block_levels[b * LEVELS:(b + 1) * LEVELS] = lv
                for i in range(n_k):
                    term = kt[i]
                    tri_t[o] = term
                    tri_b[o] = b - b0
                    tri_v[o] = kc[i]
                    o += 1
                    if start[term] == 0:
                        seen[n_seen] = term
                        n_seen += 1
                    start[term] += 1
            terms = seen[:n_seen]
            terms.sort()
            pos = 0
            for j in range(n_seen):  # counts -> first slot of each term
                c = start[terms[j]]
                start[terms[j]] = pos
                pos += c
            srt_t = np.empty(e1 - e0, dtype=np.int32)
            srt_b = np.empty(e1 - e0, dtype=np.uint8)
            srt_v = np.empty(e1 - e0, dtype=np.uint8)
            for i in range(e1 - e0):
                term = tri_t[i]
                p = start[term]
                srt_t[p] = term
                srt_b[p] = tri_b[i]
                srt_v[p] = tri_v[i]
                start[term] = p + 1
            for j in range(n_seen):
                start[terms[j]] = 0
            encode_any(srt_t, srt_b, srt_v, shift[t], list_block_ptr[t + 1] - b0, dim, summary_dir,
                       dir_ptr[t], entry_key, key_ptr[t], key_ptr[t + 1] - key_ptr[t])
    return block_levels, summary_dir, entry_key
