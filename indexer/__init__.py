"""Indexes over sparse vectors: Seismic (approximate) and exact, with on-disk persistence."""
from .collection import Collection
from .exact import ExactIndex
from .searcher import Hit
from .seismic.config import SeismicParams
from .seismic.index import SeismicIndex
from .storage import IndexFormatError
from .term_stats import TermStats

__all__ = ["Collection", "ExactIndex", "Hit", "TermStats", "IndexFormatError", "SeismicIndex", "SeismicParams"]
