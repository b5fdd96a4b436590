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


def assert_topk_up_to_ties(hits, truth, k, tol=1e-4):
    """hits = [(id, score)] is the top k of truth = {id: exact score}: scores match, best first,
    and nothing left out scores higher, all up to tol (float rounding; near-ties may swap)."""
    assert len(hits) == min(k, len(truth)) and len({i for i, _ in hits}) == len(hits)
    np.testing.assert_allclose([s for _, s in hits], [truth[i] for i, _ in hits], rtol=tol, atol=tol)
    assert all(a[1] >= b[1] - tol for a, b in zip(hits, hits[1:]))
    weakest = min(truth[i] for i, _ in hits)
    left_out = [s for i, s in truth.items() if i not in dict(hits)]
    assert not left_out or max(left_out) <= weakest + tol
