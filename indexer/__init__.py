"""Indexes over sparse vectors: Seismic (approximate) and exact, with on-disk persistence."""
from .collection import Collection, Hit, TermStats
from .exact import ExactIndex
from .seismic.config import SeismicParams
from .seismic.index import SeismicIndex
from .storage import IndexFormatError

__all__ = ["Collection", "ExactIndex", "Hit", "TermStats", "IndexFormatError", "SeismicIndex", "SeismicParams"]
