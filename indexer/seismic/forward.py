"""The forward index stored as one byte record a document (forward_layout "records").

A document's entries (term ids ascending, values) are one contiguous record:

    [ values | low bytes | unary high parts | padding ]

- the n values (f16 or f32, little-endian); every record starts at a multiple of the value
  size (records are padded to one), so the values are aligned;
- term = high << 8 | low: the n low bytes, then the high parts as in Elias-Fano: bit
  high_i + i is set for entry i, so there are n ones and Z = ((dim - 1) >> 8) + 1 zeros,
  padded to a byte ((n + Z + 7) >> 3 bytes); high_i is the number of zeros before entry i's one.

An entry costs its value, 8 bits and a unary bit instead of the value and a u16 term id: 3.1
bytes instead of 4 with f16 values (synthetic-1m forward index 486.8 -> 398.0 MB). A document's
entries are one run of bytes, so the scorer requests one run of cache lines (with separate
term and value arrays it spans two). `fwd_off` (int64, n_docs + 1) holds each record's first
byte; a record's entry count follows from its size (record_entries), so the index keeps no
separate entry pointers. The C++ kernel decodes the unary part with one `vpcompressb` per 64
bits where AVX-512 VBMI2 exists, else one table lookup a byte (native/forward.hpp); the Numba
reference and Python consumers decode the whole forward index once into plain arrays
(decode_records).

Only for dim <= 65536 (a high part fits a byte); larger vocabularies keep "arrays".
"""
from __future__ import annotations

import numba as nb
import numpy as np

RECORD_PAD = 64  # zero bytes after the last record: the decoder reads whole 8-byte words
MAX_DIM = 65536  # a high part (term >> 8) must fit a byte


def zeros_per_record(dim: int) -> int:
    """Z: the unary zeros of a record, one per possible high part."""
    return ((int(dim) - 1) >> 8) + 1


def record_bytes(n, dim: int, value_bytes: int):
    """Bytes of a record of n entries (n may be an array), padded to a multiple of the value size."""
    raw = n * (1 + value_bytes) + (n + zeros_per_record(dim) + 7) // 8
    return (raw + value_bytes - 1) // value_bytes * value_bytes


def record_entries(size, dim: int, value_bytes: int):
    """Entries of a record of `size` bytes, the inverse of record_bytes (a size that no entry
    count has gives a count whose record_bytes differs: see check_records). With c = 1 + vb,
    8 size - Z lies in [(8c + 1) n, (8c + 1) n + 8 vb - 1] (8 ceil((n + Z) / 8) adds up to 7, the
    padding up to 8 (vb - 1)), which holds one multiple of 8c + 1 > 8 vb - 1."""
    return (8 * size - zeros_per_record(dim)) // (8 * (1 + value_bytes) + 1)


@nb.njit(nogil=True, parallel=True, cache=True)
def _encode(ptr, terms, vals_bytes, vb, off, rec):
    n_docs = ptr.shape[0] - 1
    for d in nb.prange(n_docs):
        a, n = ptr[d], ptr[d + 1] - ptr[d]
        o = off[d]
        for j in range(n * vb):
            rec[o + j] = vals_bytes[a * vb + j]
        lo = o + n * vb
        u = lo + n  # rec is zeros: only the ones are set
        for i in range(n):
            t = np.int64(terms[a + i])
            rec[lo + i] = np.uint8(t & 0xFF)
            bit = (t >> 8) + i
            rec[u + (bit >> 3)] |= np.uint8(1 << (bit & 7))


def encode_records(ptr: np.ndarray, terms: np.ndarray, vals: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(fwd_off int64 [n_docs + 1], fwd_rec u8) of a forward index (terms ascending in each row,
    < dim <= 65536; vals f16 or f32)."""
    if dim > MAX_DIM:
        raise ValueError(f"forward records need dim <= {MAX_DIM}, got {dim}")
    vals = np.ascontiguousarray(vals)
    vb = vals.dtype.itemsize
    sizes = record_bytes(np.diff(ptr), dim, vb)
    off = np.zeros(ptr.shape[0], np.int64)
    np.cumsum(sizes, out=off[1:])
    rec = np.zeros(int(off[-1]) + RECORD_PAD, np.uint8)
    _encode(ptr, terms, vals.view(np.uint8), vb, off, rec)
    return off, rec


@nb.njit(nogil=True, parallel=True, cache=True)
def _decode(off, rec, ptr, vb, z, dim, terms, vals_bytes, damaged):
    n_docs = off.shape[0] - 1
    for d in nb.prange(n_docs):
        a, n = ptr[d], ptr[d + 1] - ptr[d]
        o = off[d]
        for j in range(n * vb):
            vals_bytes[a * vb + j] = rec[o + j]
        lo = o + n * vb
        u = lo + n
        i = 0
        zeros = 0
        for bit in range(8 * ((n + z + 7) >> 3)):
            if i == n:
                break
            if (rec[u + (bit >> 3)] >> (bit & 7)) & 1:
                t = ((zeros & 0xFF) << 8) | np.int64(rec[lo + i])
                if t >= dim or (i > 0 and t <= terms[a + i - 1]):
                    damaged[d] = True
                terms[a + i] = np.uint16(min(t, dim - 1))
                i += 1
            else:
                zeros += 1
        for j in range(i, n):  # fewer ones than entries
            damaged[d] = True
            terms[a + j] = 0


def record_ptr(off: np.ndarray, dim: int, value_bytes: int) -> np.ndarray:
    """Entry pointers (int64, CSR indptr) of the records at `off`."""
    ptr = np.zeros(off.shape[0], np.int64)
    np.cumsum(record_entries(np.diff(off), dim, value_bytes), out=ptr[1:])
    return ptr


def decode_records(off: np.ndarray, rec: np.ndarray, dim: int, value_dtype) -> tuple[np.ndarray, ...]:
    """(ptr int64, terms u16, vals) of the forward index stored as records. Raises ValueError
    naming the first damaged record (term ids not ascending or not below dim, or missing)."""
    value_dtype = np.dtype(value_dtype)
    ptr = record_ptr(np.asarray(off), dim, value_dtype.itemsize)
    terms = np.empty(int(ptr[-1]), np.uint16)
    vals = np.empty(int(ptr[-1]), value_dtype)
    damaged = np.zeros(ptr.shape[0] - 1, np.bool_)
    _decode(np.asarray(off), np.asarray(rec), ptr, value_dtype.itemsize, zeros_per_record(dim), dim, terms,
            vals.view(np.uint8), damaged)
    if damaged.any():
        raise ValueError(f"{int(damaged.sum())} forward records (first: document {int(np.argmax(damaged))}) "
                         f"do not decode to ascending term ids below {dim}")
    return ptr, terms, vals


def check_records(off: np.ndarray, rec: np.ndarray, n_docs: int, dim: int, value_bytes: int) -> str | None:
    """What is wrong with the record pointers (None: they are consistent): the kernel trusts
    them to stay inside fwd_rec. The records' bytes are covered by the files' checksums."""
    off = np.asarray(off)
    if off.dtype != np.int64 or off.shape != (n_docs + 1,):
        return f"its record offsets are not {n_docs + 1} int64 values"
    if dim > MAX_DIM:
        return f"it stores forward records for dim {dim} > {MAX_DIM}"
    if n_docs and (off[0] != 0 or off[-1] + RECORD_PAD > rec.shape[0]):
        return "its record offsets run past its records"
    sizes = np.diff(off)
    if np.any(sizes < 0):
        return "its record offsets decrease"
    n = record_entries(sizes, dim, value_bytes)  # negative for a size below an empty record's
    if np.any(n < 0) or np.any(record_bytes(n, dim, value_bytes) != sizes):
        return "a record's size fits no number of entries"
    return None
