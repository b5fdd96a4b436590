"""SeismicIndex: build (Numba), search (C++ kernel, Numba fallback), save/load."""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..exact import default_threads
from ..native import native_module, resolve_backend
from ..query import DEFAULTS
from ..storage import load_arrays, save_arrays
from ..validation import (as_document_csr, as_query, as_query_csr, check_k, check_knn_expand, check_search_params,
                          native_ready)
from . import knn as knn_graph
from . import search_numba
from .blocking import block_lists, compact_block_sizes, top_terms
from .ordering import inverse, permute_rows, top_term_order, transpose
from .config import SUMMARY_GROUPS, SeismicParams
from .forward import MAX_DIM, check_records, decode_records, encode_records
from .pruning import prune_postings
from .summaries import (KEY_PAD, SUMMARY_LAYOUT, count_summaries, decode_layout2, decode_layout4, encode_coded,
                        encode_entries, fill_summaries,
                        layout_ptrs)

DOC_IDS = "doc_ids"  # internal number -> input row, u32 (indexes built with doc_order "top_term")
_U16_DOCS = 65536  # posting lists of an index of at most this many documents hold u16 ids
# The forward index's arrays by forward_layout (forward.py), then the rest of an index, in the
# order the Numba kernel takes them (it reads the forward index as plain arrays: forward()).
_FORWARD_ARRAYS = {"arrays": ("fwd_ptr", "fwd_terms", "fwd_vals"), "records": ("fwd_off", "fwd_rec")}
_LIST_ARRAYS = ("list_block_ptr", "block_doc_ptr", "block_docs", "block_levels", "list_entry_ptr", "list_shift",
                "list_dir_ptr", "summary_dir", "list_key_ptr", "entry_key")
_SUMMARY_ARRAYS = ("block_levels", "list_entry_ptr", "list_shift", "list_dir_ptr",
                   "summary_dir", "list_key_ptr", "entry_key")
# arrays of summary layouts 1 and 2 that layout 3 (and later) replaces
_OLD_SUMMARY_ARRAYS = ("entry_term", "entry_block", "entry_value", "block_scale", "list_shift", "list_dir_ptr",
                       "summary_dir", "list_key_ptr", "entry_key")


class SeismicIndex:
    """Approximate top-k by dot product over non-negative sparse vectors (Seismic).

    >>> idx = SeismicIndex.build(csr, n_postings=1000, summary_energy=0.4)
    >>> ids, scores = idx.search(q_indices, q_values, k=10, query_cut=10, heap_factor=0.7)
    """

    KIND = "seismic"

    def __init__(self, arrays: dict[str, np.ndarray], n_docs: int, dim: int, params: SeismicParams,
                 build_seconds: float | None = None):
        self.arrays = arrays
        self.n_docs = int(n_docs)
        self.dim = int(dim)
        self.params = params
        self.build_seconds = build_seconds
        nblocks = np.diff(arrays["list_block_ptr"])
        self.max_blocks_per_list = int(nblocks.max()) if nblocks.size else 0
        self.knn = knn_graph.stored_k(arrays, self.n_docs)
        self.doc_ids = arrays.get(DOC_IDS)  # None: internal numbers are input rows
        self.forward_layout = "records" if "fwd_rec" in arrays else "arrays"
        self._doc_pos = None
        self._kernel = None
        self._forward = None
        self._f32_values = None

    # ---------------------------------------------------------------- build
    @classmethod
    def build(cls, csr, **params) -> "SeismicIndex":
        """Build from a CSR matrix (rows = documents, non-negative float values)."""
        p = SeismicParams.from_dict(params)
        t0 = time.perf_counter()
        docs = as_document_csr(csr, copy=False)  # only read here: no copy of a canonical input
        n_docs, dim = docs.shape
        # Peak memory: the build keeps only the forward index in its stored types (u16 term ids
        # where they fit), f32 copies of its values and one structure per step, each freed as
        # soon as the next step has what it needs.
        term_dtype = np.uint16 if dim <= 65536 else np.uint32
        order = (top_term_order(docs.indptr, docs.indices, docs.data, dim) if p.doc_order == "top_term"
                 else np.arange(n_docs, dtype=np.int64))
        fwd_ptr, fwd_terms, build_vals = permute_rows(docs.indptr, docs.indices, docs.data, order, term_dtype)
        del docs  # (a copy of the input's, if one was made) freed before the posting lists
        col_ptr, col_docs, col_vals = transpose(fwd_ptr, fwd_terms, build_vals, dim)
        list_ptr, list_docs = prune_postings(col_ptr, col_docs, col_vals, p)
        del col_ptr, col_docs, col_vals
        # Build-time structures from here on use the stored values (f16 where it is the forward
        # dtype, as f32): summaries are maxima of the stored values, so they bound the scores
        # the kernel computes from the forward index.
        stored_vals = build_vals.astype(p.forward_dtype)
        if stored_vals.dtype != np.float32:
            np.copyto(build_vals, stored_vals)
        else:
            build_vals = stored_vals

        cut_t, cut_v = top_terms(fwd_ptr, fwd_terms, build_vals, p.doc_cut)
        block_docs, n_blocks, sizes = block_lists(list_ptr, list_docs, fwd_ptr, fwd_terms, build_vals,
                                                  cut_t, cut_v, dim, p.centroid_fraction,
                                                  p.min_cluster_size, p.max_blocks_per_list, p.seed,
                                                  p.cluster_rounds)
        del cut_t, cut_v, list_docs
        list_block_ptr, block_doc_ptr = compact_block_sizes(list_ptr, n_blocks, sizes)
        del list_ptr, n_blocks, sizes
        thr, ties, n_entries, list_shift, n_dir, n_bytes = count_summaries(
            list_block_ptr, block_doc_ptr, block_docs, fwd_ptr, fwd_terms, build_vals, dim,
            p.summary_energy, SUMMARY_GROUPS.index(p.summary_groups))
        list_entry_ptr = np.concatenate(([0], np.cumsum(n_entries))).astype(np.int64)
        list_dir_ptr, list_key_ptr = layout_ptrs(n_dir, n_bytes)
        block_levels, summary_dir, entry_key = fill_summaries(
            list_block_ptr, block_doc_ptr, block_docs, fwd_ptr, fwd_terms, build_vals, dim, thr, ties,
            list_entry_ptr, list_shift, list_dir_ptr, list_key_ptr)
        del build_vals, thr, ties, n_dir, n_bytes

        if n_docs <= _U16_DOCS:  # half the posting bytes of a small index (SciFact: 5.9 -> 3.0 MB)
            block_docs = block_docs.astype(np.uint16)
        if p.forward_layout == "records" and dim > MAX_DIM:
            p = dataclasses.replace(p, forward_layout="arrays")  # a high part must fit a byte
        if p.forward_layout == "records":
            fwd_off, fwd_rec = encode_records(fwd_ptr, fwd_terms, stored_vals, dim)
            forward = {"fwd_off": fwd_off, "fwd_rec": fwd_rec}
        else:
            forward = {"fwd_ptr": fwd_ptr, "fwd_terms": fwd_terms, "fwd_vals": stored_vals}
        del fwd_ptr, fwd_terms, stored_vals
        arrays = {
            **forward,
            "list_block_ptr": list_block_ptr, "block_doc_ptr": block_doc_ptr,
            "block_docs": block_docs, "block_levels": block_levels,
            "list_entry_ptr": list_entry_ptr, "list_shift": list_shift, "list_dir_ptr": list_dir_ptr,
            "summary_dir": summary_dir, "list_key_ptr": list_key_ptr, "entry_key": entry_key,
        }
        if p.doc_order == "top_term":
            arrays[DOC_IDS] = order.astype(np.uint32)
        idx = cls(arrays, n_docs, dim, dataclasses.replace(p, knn=0))
        if p.knn:
            idx = idx.with_knn_graph(p.knn, p.knn_query_cut, p.knn_heap_factor, source=p.knn_source)
        idx.build_seconds = time.perf_counter() - t0
        return idx

    def with_knn_graph(self, knn: int, query_cut: int | None = None, heap_factor: float | None = None,
                       n_threads: int | None = None, source: str | None = None) -> "SeismicIndex":
        """This index plus a κ-NN graph of knn neighbours a document (knn.py; source "blocks" or
        "search", default the index's knn_source); the other arrays are shared, not copied."""
        p = dataclasses.replace(self.params, knn=knn,
                                knn_source=self.params.knn_source if source is None else source,
                                knn_query_cut=self.params.knn_query_cut if query_cut is None else query_cut,
                                knn_heap_factor=self.params.knn_heap_factor if heap_factor is None else heap_factor)
        base = SeismicIndex({n: a for n, a in self.arrays.items() if n != knn_graph.ARRAY},
                            self.n_docs, self.dim, dataclasses.replace(p, knn=0))
        base._forward = self._forward  # decoded records, if any, shared too
        arrays = dict(base.arrays)
        if knn:
            arrays[knn_graph.ARRAY] = knn_graph.build_graph(base, knn, p.knn_query_cut, p.knn_heap_factor,
                                                            n_threads, source=p.knn_source)
        return SeismicIndex(arrays, self.n_docs, self.dim, p)

    # ---------------------------------------------------------------- info
    def __len__(self) -> int:
        return self.n_docs

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))

    def space_usage(self) -> dict[str, int]:
        """Bytes per component: forward index, posting lists (blocks), summaries."""
        a = self.arrays
        groups = {"forward": _FORWARD_ARRAYS[self.forward_layout],
                  "postings": ("list_block_ptr", "block_doc_ptr", "block_docs"),
                  "summaries": _SUMMARY_ARRAYS, "knn": (knn_graph.ARRAY,)}
        out = {f"{g}_bytes": int(sum(a[n].nbytes for n in names if n in a)) for g, names in groups.items()}
        out["total_bytes"] = sum(out.values())
        return out

    def stats(self) -> dict:
        a = self.arrays
        return {"documents": self.n_docs, "dim": self.dim, "postings": int(a["block_docs"].shape[0]),
                "blocks": int(a["list_block_ptr"][-1]),
                "summary_entries": int(a["list_entry_ptr"][-1]), "knn": self.knn, **self.space_usage()}

    def forward(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The forward index as plain arrays (ptr int64, terms, vals as stored), in the
        index's numbering; records are decoded once, on first use (the Numba kernel, merges,
        κ-NN graphs)."""
        if self._forward is None:
            a = self.arrays
            if self.forward_layout == "records":
                self._forward = decode_records(a["fwd_off"], a["fwd_rec"], self.dim, self.params.forward_dtype)
            else:
                self._forward = (a["fwd_ptr"], a["fwd_terms"], a["fwd_vals"])
        return self._forward

    # ---------------------------------------------------------------- numbering
    def positions(self, rows):
        """Input rows -> the index's internal numbers (rows of its forward index arrays)."""
        if self.doc_ids is None:
            return rows
        if self._doc_pos is None:
            self._doc_pos = inverse(np.asarray(self.doc_ids))
        return self._doc_pos[rows]

    def input_rows(self, internal):
        """The index's internal numbers -> input rows (negative padding kept)."""
        if self.doc_ids is None:
            return internal
        internal = np.asarray(internal, dtype=np.int64)
        # only the looked-up ids are widened (no int64 copy of the whole map per call)
        return np.where(internal >= 0, self.doc_ids[np.maximum(internal, 0)].astype(np.int64), internal)

    def neighbours(self) -> np.ndarray:
        """The κ-NN graph in input rows, int64 [n_docs, κ]: row r holds document r's
        neighbours, best first, padded with r itself where it has fewer than κ."""
        if not self.knn:
            raise ValueError("this index stores no κ-NN graph (build it with knn > 0)")
        g = np.asarray(self.arrays[knn_graph.ARRAY]).reshape(self.n_docs, self.knn).astype(np.int64)
        if self.doc_ids is None:
            return g
        ids = np.asarray(self.doc_ids, dtype=np.int64)
        out = np.empty_like(g)
        out[ids] = ids[g]
        return out

    # ---------------------------------------------------------------- search
    def _native(self):
        if self._kernel is None:
            # the kernel maps its results to input rows itself (doc_ids), off the GIL
            names = (_FORWARD_ARRAYS[self.forward_layout] + _LIST_ARRAYS + ((knn_graph.ARRAY,) if self.knn else ())
                     + ((DOC_IDS,) if self.doc_ids is not None else ()))
            arrays = {n: self.arrays[n] for n in names}
            if self.forward_layout == "records":
                arrays["fwd_value_bytes"] = np.dtype(self.params.forward_dtype).itemsize
            self._kernel = native_module().SeismicKernel(arrays, self.n_docs, self.dim, self.max_blocks_per_list)
        return self._kernel

    def _numba_arrays(self):
        # The Numba kernel reads f32 values (f16 -> f32 is exact, so scores are unchanged).
        ptr, terms, vals = self.forward()
        if self._f32_values is None:
            self._f32_values = np.asarray(vals, dtype=np.float32)
        graph = self.arrays[knn_graph.ARRAY] if self.knn else np.zeros(0, np.uint32)
        return ((ptr, terms, self._f32_values) + tuple(self.arrays[n] for n in _LIST_ARRAYS)
                + (graph, np.int64(self.knn)))

    def _knn_expand(self, knn_expand) -> int:
        return min(check_knn_expand(knn_expand), self.knn)

    def search(self, q_indices, q_values, k: int = DEFAULTS.k, query_cut: int = DEFAULTS.query_cut,
               heap_factor: float = DEFAULTS.heap_factor, backend: str = "auto",
               knn_expand: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k: (ids int64, scores float32), sorted by score descending.
        knn_expand: after the inverted-index phase, also score the first knn_expand stored κ-NN
        neighbours of each top-k hit (capped at the neighbours stored; 0 or no graph: none)."""
        k = check_k(k)
        query_cut, heap_factor = check_search_params(query_cut, heap_factor)
        kx = self._knn_expand(knn_expand)
        if resolve_backend(backend) == "native":
            kernel = self._native()
            # hot path: the kernel validates canonical int32/float32 queries in one C++ pass
            if native_ready(q_indices, q_values):
                out = kernel.search(q_indices, q_values, k, query_cut, heap_factor, kx)
                if out is not None:
                    return out
            qi, qv = as_query(q_indices, q_values, self.dim)
            return kernel.search(qi, qv, k, query_cut, heap_factor, kx)
        qi, qv = as_query(q_indices, q_values, self.dim)
        q_dense = np.zeros(self.dim, np.float32)
        visited = np.zeros(self.n_docs, np.bool_)
        dots = np.empty(max(1, self.max_blocks_per_list), np.float32)
        ids, scores = search_numba.search_one(qi, qv, k, query_cut, np.float32(heap_factor),
                                              q_dense, visited, dots, *self._numba_arrays(), np.int64(kx))
        return self.input_rows(ids.astype(np.int64)), scores

    def search_batch(self, queries, k: int = DEFAULTS.k, query_cut: int = DEFAULTS.query_cut,
                     heap_factor: float = DEFAULTS.heap_factor, n_threads: int | None = None,
                     backend: str = "auto", knn_expand: int = 0):
        """Queries as CSR rows -> (ids [nq, k] padded with -1, scores [nq, k] padded with -inf)."""
        k = check_k(k)
        query_cut, heap_factor = check_search_params(query_cut, heap_factor)
        kx = self._knn_expand(knn_expand)
        q = as_query_csr(queries, self.dim)
        ptr, terms, vals = q.indptr.astype(np.int64), q.indices.astype(np.int32), q.data
        if resolve_backend(backend) == "native":
            ids, scores = self._native().search_batch(ptr, terms, vals, k, query_cut, heap_factor,
                                                      n_threads or default_threads(), kx)
        else:
            ids, scores = search_numba.search_batch(
                ptr, terms, vals, k, query_cut, np.float32(heap_factor), self.dim, self.n_docs,
                self.max_blocks_per_list, *self._numba_arrays(), np.int64(kx))
            return self.input_rows(ids), scores
        return ids.astype(np.int64), scores

    # ---------------------------------------------------------------- persistence
    def save(self, path) -> None:
        save_arrays(path, self.KIND, self.arrays,
                    {"n_docs": self.n_docs, "dim": self.dim, "params": self.params.to_dict(),
                     "summary_layout": SUMMARY_LAYOUT})

    @classmethod
    def load(cls, path, mmap: bool = True) -> "SeismicIndex":
        arrays, manifest = load_arrays(path, cls.KIND, mmap=mmap)
        layout = manifest.get("summary_layout", 1)
        if layout in (1, 2):
            _convert_old_summaries(path, arrays, layout, int(manifest["dim"]))
        elif layout in (3, 4):  # layout 3 is layout 4 without grouped lists
            groups = manifest.get("params", {}).get("summary_groups", "never")
            if groups not in SUMMARY_GROUPS:
                from ..storage import IndexFormatError
                raise IndexFormatError(f"{path} is damaged: its manifest names summary_groups {groups!r}, "
                                       f"not one of {SUMMARY_GROUPS}", path=path, check="consistency")
            _convert_layout4(path, arrays, int(manifest["dim"]), SUMMARY_GROUPS.index(groups))
        elif layout != SUMMARY_LAYOUT:
            from ..storage import IndexFormatError
            raise IndexFormatError(f"{path} has Seismic summary layout {layout!r}; this version of "
                                   f"lsr-search reads layouts 1 to {SUMMARY_LAYOUT}. Rebuild the index "
                                   f"from its documents.", path=path, check="format version")
        params = dict(manifest["params"])
        params.setdefault("forward_layout", "arrays")  # written before forward records
        fwd_layout = params["forward_layout"]
        missing = set(_FORWARD_ARRAYS.get(fwd_layout, ()) + _LIST_ARRAYS) - set(arrays)
        if missing or fwd_layout not in _FORWARD_ARRAYS:
            from ..storage import IndexFormatError
            raise IndexFormatError(f"{path} lacks index arrays {sorted(missing)}" if missing else
                                   f"{path} is damaged: its manifest names forward_layout {fwd_layout!r}",
                                   path=path, check="missing file" if missing else "consistency")
        if fwd_layout == "records":
            vb = np.dtype(params.get("forward_dtype", "float16")).itemsize
            problem = check_records(arrays["fwd_off"], arrays["fwd_rec"], int(manifest["n_docs"]),
                                    int(manifest["dim"]), vb)
            if problem:
                from ..storage import IndexFormatError
                raise IndexFormatError(f"{path} is damaged: {problem}", path=path, check="consistency")
        knn_graph.check_graph(path, arrays, int(manifest["n_docs"]))
        params.setdefault("knn_source", "search")  # written before block-mate graphs: searched
        params.setdefault("doc_order", "input")  # written before documents were reordered
        params.setdefault("cluster_rounds", 0)  # written before blocks had a Lloyd step
        pos = _check_doc_ids(path, arrays, int(manifest["n_docs"]), params["doc_order"])
        index = cls(arrays, manifest["n_docs"], manifest["dim"], SeismicParams.from_dict(params))
        index._doc_pos = pos  # the check built positions()'s map already
        return index


def _check_doc_ids(path, arrays: dict, n_docs: int, doc_order: str):
    """A reordered index's map must be a permutation of its rows: the kernels return its values.
    Returns its inverse (input row -> internal number), or None for an index in input order."""
    from ..storage import IndexFormatError
    ids = arrays.get(DOC_IDS)
    if ids is None:
        if doc_order == "top_term":
            raise IndexFormatError(f"{path} lacks index array {DOC_IDS!r} (its documents are reordered)",
                                   path=path, check="missing file")
        return None
    pos = None
    if ids.dtype == np.uint32 and ids.shape == (n_docs,) and (not n_docs or int(ids.max()) < n_docs):
        pos = inverse(np.asarray(ids))
    if pos is None or (pos < 0).any():
        raise IndexFormatError(f"{path} is damaged: its document id map is not a permutation of its "
                               f"{n_docs} documents", path=path, check="consistency")
    return pos


def _convert_old_summaries(path, arrays: dict, layout: int, dim: int) -> None:
    """Summary layouts 1 and 2 (u8 codes with a per-block scale) -> layout 5, in memory (the
    rest stays mapped). The codes are re-quantised from their dequantised values, which are
    upper bounds, so every bound is kept."""
    from ..storage import IndexFormatError
    need = {1: ("entry_term", "entry_block", "entry_value", "block_scale", "list_entry_ptr"),
            2: ("entry_value", "block_scale", "list_entry_ptr", "list_shift", "list_dir_ptr",
                "summary_dir", "list_key_ptr", "entry_key")}[layout]
    missing = sorted(set(need + ("list_block_ptr",)) - set(arrays))
    if missing:
        raise IndexFormatError(f"{path} (summary layout {layout}) lacks index arrays {missing}",
                               path=path, check="missing file")
    lep, lbp = np.asarray(arrays["list_entry_ptr"]), np.asarray(arrays["list_block_ptr"])
    codes = np.asarray(arrays["entry_value"])
    n_lists = lbp.shape[0] - 1
    if (lep.shape[0] != n_lists + 1 or lep[0] != 0 or np.any(np.diff(lep) < 0)
            or lep[-1] != codes.shape[0]):
        raise IndexFormatError(f"{path} is damaged: its summary entry pointers do not match its "
                               f"{codes.shape[0]} entries", path=path, check="consistency")
    if layout == 1:
        terms, blocks = np.asarray(arrays["entry_term"]), np.asarray(arrays["entry_block"])
    else:
        kp, dp = np.asarray(arrays["list_key_ptr"]), np.asarray(arrays["list_dir_ptr"])
        if (kp.shape[0] != n_lists + 1 or dp.shape[0] != n_lists + 1 or kp[-1] > arrays["entry_key"].shape[0]
                or dp[-1] > arrays["summary_dir"].shape[0]):
            raise IndexFormatError(f"{path} is damaged: its summary directory does not match its "
                                   f"lists", path=path, check="consistency")
        terms, blocks = decode_layout2(lep, lbp, np.asarray(arrays["list_shift"]), dp,
                                       np.asarray(arrays["summary_dir"]), kp,
                                       np.asarray(arrays["entry_key"]), dim)
    lists = np.repeat(np.arange(n_lists), np.diff(lep))
    scale = np.asarray(arrays["block_scale"], dtype=np.float32)
    if (terms.shape[0] != codes.shape[0] or blocks.shape[0] != codes.shape[0]
            or (codes.size and (int(terms.max()) >= dim or
                                np.any(blocks.astype(np.int64) >= np.diff(lbp)[lists])))):
        raise IndexFormatError(f"{path} is damaged: summary entries out of range", path=path,
                               check="consistency")
    values = codes.astype(np.float32) * scale[lbp[lists] + blocks.astype(np.int64)]
    for name in _OLD_SUMMARY_ARRAYS:
        arrays.pop(name, None)
    (arrays["block_levels"], arrays["list_shift"], arrays["list_dir_ptr"],
     arrays["summary_dir"], arrays["list_key_ptr"], arrays["entry_key"]) = encode_entries(
        lep, lbp, terms, blocks, values, dim)


def _convert_layout4(path, arrays: dict, dim: int, grouping: int) -> None:
    """Summary layouts 3 and 4 (a u16 directory word per bucket of a plain list) -> layout 5, in
    memory (the rest stays mapped). The entries keep their codes and blocks their levels, so the
    converted index answers exactly as the old one did."""
    from ..storage import IndexFormatError
    need = ("list_entry_ptr", "list_block_ptr", "list_shift", "list_dir_ptr", "summary_dir",
            "list_key_ptr", "entry_key")
    missing = sorted(set(need) - set(arrays))
    if missing:
        raise IndexFormatError(f"{path} (summary layout 3 or 4) lacks index arrays {missing}", path=path,
                               check="missing file")
    lep, lbp = np.asarray(arrays["list_entry_ptr"]), np.asarray(arrays["list_block_ptr"])
    dp, kp = np.asarray(arrays["list_dir_ptr"]), np.asarray(arrays["list_key_ptr"])
    n_lists = lbp.shape[0] - 1
    ptrs_ok = all(p.shape == (n_lists + 1,) and p[0] == 0 and not np.any(np.diff(p) < 0)
                  for p in (lep, dp, kp))
    if (not ptrs_ok or arrays["list_shift"].shape != (n_lists,) or dp[-1] > arrays["summary_dir"].shape[0]
            or kp[-1] + KEY_PAD > arrays["entry_key"].shape[0]):
        raise IndexFormatError(f"{path} is damaged: its summary directory does not match its lists",
                               path=path, check="consistency")
    terms, blocks, codes, damaged = decode_layout4(lep, lbp, np.asarray(arrays["list_shift"]), dp,
                                                   np.asarray(arrays["summary_dir"]), kp,
                                                   np.asarray(arrays["entry_key"]), dim)
    if damaged.any():
        raise IndexFormatError(f"{path} is damaged: the summaries of {int(damaged.sum())} posting lists "
                               f"(first: term {int(np.argmax(damaged))}) do not decode to their entries",
                               path=path, check="consistency")
    (arrays["list_shift"], arrays["list_dir_ptr"], arrays["summary_dir"], arrays["list_key_ptr"],
     arrays["entry_key"]) = encode_coded(lep, lbp, terms, blocks, codes, dim, grouping)
