"""Build parameters of a Seismic index, in one typed, documented object."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..errors import InvalidInputError

SUMMARY_GROUPS = ("auto", "never", "always")  # summary_groups; the kernels take the index
DOC_ORDERS = ("top_term", "input")  # doc_order (ordering.py)
FORWARD_LAYOUTS = ("records", "arrays")  # forward_layout (forward.py)


@dataclass(frozen=True)
class SeismicParams:
    """How a Seismic index is built (Bruch et al., SIGIR 2024, section 4).

    pruning:            "global" keeps the n_postings * dim largest postings of the whole
                        collection, each list capped at max_fraction * n_postings (the paper's
                        global-threshold variant, pyseismic-lsr's default); "fixed" keeps the
                        top n_postings of every list; "none" keeps everything.
    n_postings:         λ, the posting budget per term.
    max_fraction:       per-list cap of the global variant, as a multiple of n_postings.
    centroid_fraction:  blocks per list = centroid_fraction * list length (random centroids).
    min_cluster_size:   clusters with at most this many documents are dissolved and their
                        documents re-assigned to the remaining centroids.
    doc_cut:            documents are assigned to centroids using only their doc_cut largest terms.
    cluster_rounds:     Lloyd steps after that assignment: each makes the clusters' means (over
                        their documents' doc_cut terms) the centroids and assigns every document
                        again (dissolving small clusters as before); 0 is the paper's shallow
                        clustering. One step gave blocks whose documents agree more with their
                        mean and faster queries at the same recall on the synthetic generators
                        (BENCHMARKS.md), for about the same summary bytes.
    max_blocks_per_list: cap on the blocks of one list (at most 256, so a block id fits one byte
                        in the summaries); lists long enough to reach it get larger blocks.
    summary_energy:     α: a block summary keeps its largest per-term maxima until they hold
                        this fraction of the summary's L1 mass (1.0 keeps every term).
    summary_groups:     how a list's summary entries are stored (summaries.py): "auto"
                        (default) grouped by term where that takes fewer bytes (rare since
                        summary layout 5), "never", "always". Storage only: the same entries,
                        the same results.
    forward_dtype:      "float16" or "float32" values in the forward index.
    forward_layout:     how the forward index is stored (forward.py): "records" (default), one
                        byte record a document with Elias-Fano-coded term ids (3.1 bytes an
                        entry with f16 values instead of 4); "arrays", separate term id and
                        value arrays. Storage only: the same results. A vocabulary larger than
                        65,536 terms always uses "arrays".
    doc_order:          how documents are numbered inside the index (ordering.py): "top_term"
                        (default) groups them by their largest term, so that block members sit
                        together in the forward index; "input" keeps the input order. Results
                        are always input row numbers.
    seed:               seed of the centroid sampling; builds are deterministic.
    knn:                κ: neighbours stored per document in a κ-NN graph (Bruch et al., CIKM
                        2024), which a search with knn_expand > 0 uses to score the neighbours
                        of its top hits; 0 stores no graph.
    knn_source:         how the graph finds a document's neighbours (knn.build_graph):
                        "blocks" (default), the best κ of its block-mates in the lists of its
                        3 largest terms, scored exactly; "search", the index's own approximate
                        top-κ for the document as a query, searched with knn_query_cut and
                        knn_heap_factor (on synthetic-100k, κ = 10, query_cut 3 / heap_factor
                        1.0 took 16 CPU s against 42 for 10 / 0.8, recall within 0.001).
                        Block-mates cost a fraction of the search at scale for the same
                        recall after expansion (knn.block_graph).
    """

    pruning: str = "global"
    n_postings: int = 3500
    max_fraction: float = 1.5
    centroid_fraction: float = 0.1
    min_cluster_size: int = 2
    doc_cut: int = 15
    cluster_rounds: int = 1
    max_blocks_per_list: int = 256
    summary_energy: float = 0.4
    summary_groups: str = "auto"
    forward_dtype: str = "float16"
    forward_layout: str = "records"
    doc_order: str = "top_term"
    seed: int = 42
    knn: int = 0
    knn_source: str = "blocks"
    knn_query_cut: int = 3
    knn_heap_factor: float = 1.0

    def __post_init__(self):
        for f in fields(self):  # strict: no bool for int, no NaN, no strings for numbers
            v = getattr(self, f.name)
            if f.type == "int" and (isinstance(v, bool) or not isinstance(v, int)):
                raise InvalidInputError(f"{f.name} must be an integer, got {v!r}")
            if f.type == "float" and (isinstance(v, bool) or not isinstance(v, (int, float))
                                      or not math.isfinite(v)):
                raise InvalidInputError(f"{f.name} must be a finite number, got {v!r}")
            if f.type == "str" and not isinstance(v, str):
                raise InvalidInputError(f"{f.name} must be a string, got {v!r}")
        if self.pruning not in ("global", "fixed", "none"):
            raise InvalidInputError(f"pruning must be 'global', 'fixed' or 'none', got {self.pruning!r}")
        if self.n_postings <= 0:
            raise InvalidInputError(f"n_postings must be positive, got {self.n_postings}")
        if self.max_fraction <= 0:
            raise InvalidInputError(f"max_fraction must be positive, got {self.max_fraction}")
        if not 0 < self.centroid_fraction <= 1:
            raise InvalidInputError(f"centroid_fraction must be in (0, 1], got {self.centroid_fraction}")
        if self.min_cluster_size < 0:
            raise InvalidInputError(f"min_cluster_size must be >= 0, got {self.min_cluster_size}")
        if self.doc_cut <= 0:
            raise InvalidInputError(f"doc_cut must be positive, got {self.doc_cut}")
        if not 0 <= self.cluster_rounds <= 10:
            raise InvalidInputError(f"cluster_rounds must be in [0, 10], got {self.cluster_rounds}")
        if not 1 <= self.max_blocks_per_list <= 256:
            raise InvalidInputError(f"max_blocks_per_list must be in [1, 256], got {self.max_blocks_per_list}")
        if not 0 < self.summary_energy <= 1:
            raise InvalidInputError(f"summary_energy must be in (0, 1], got {self.summary_energy}")
        if self.knn < 0:
            raise InvalidInputError(f"knn must be >= 0, got {self.knn}")
        if self.knn_source not in ("blocks", "search"):
            raise InvalidInputError(f"knn_source must be 'blocks' or 'search', got {self.knn_source!r}")
        if self.knn_query_cut <= 0:
            raise InvalidInputError(f"knn_query_cut must be positive, got {self.knn_query_cut}")
        if not 0 < self.knn_heap_factor <= 1:
            raise InvalidInputError(f"knn_heap_factor must be in (0, 1], got {self.knn_heap_factor}")
        if self.summary_groups not in SUMMARY_GROUPS:
            raise InvalidInputError(f"summary_groups must be one of {SUMMARY_GROUPS}, got {self.summary_groups!r}")
        if self.doc_order not in DOC_ORDERS:
            raise InvalidInputError(f"doc_order must be one of {DOC_ORDERS}, got {self.doc_order!r}")
        if self.forward_layout not in FORWARD_LAYOUTS:
            raise InvalidInputError(f"forward_layout must be one of {FORWARD_LAYOUTS}, got {self.forward_layout!r}")
        if self.forward_dtype not in ("float16", "float32"):
            raise InvalidInputError(f"forward_dtype must be 'float16' or 'float32', got {self.forward_dtype!r}")

    @classmethod
    def from_dict(cls, params: dict) -> "SeismicParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidInputError(f"unknown Seismic parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**params)

    def to_dict(self) -> dict:
        return asdict(self)
