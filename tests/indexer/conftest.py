import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.synthetic import SyntheticSplade


def random_csr(n, dim, density, seed, dtype=np.float32):
    return sp.random(n, dim, density=density, format="csr", random_state=seed, dtype=dtype)


@pytest.fixture(scope="session")
def synthetic():
    """A small SPLADE-like collection (2,000 docs over the BERT vocabulary) and 30 queries."""
    gen = SyntheticSplade(n_topics=40, topic_size=200, seed=3)
    return gen.documents(2000, mean_nnz=60), gen.queries(30, mean_nnz=20)
