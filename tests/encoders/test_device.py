"""The accelerator code paths, checked on the CPU: the chunked torch SPLADE head that a GPU runs
(scatter-max per chunk) equals the CPU reference, in float32 whatever the states' dtype; and
the GPU check script's comparison."""
import numpy as np
import scipy.sparse as sp
import torch

from encoders.sparse_head import _chunked_max, _indexed_max


def test_indexed_max_equals_the_chunked_reference():
    torch.manual_seed(0)
    lengths = [5, 1, 0, 17, 3]
    states = torch.randn(sum(lengths), 16)
    weight = torch.randn(50, 16)
    starts = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    ref = _chunked_max(states, starts, weight, chunk_tokens=4)
    for chunk in (1, 4, 7, 1024):
        got = _indexed_max(states, lengths, weight, chunk)
        keep = torch.tensor([n > 0 for n in lengths])
        assert torch.allclose(got[keep], ref[keep], atol=1e-5), chunk
        assert torch.isinf(got[~keep]).all()  # max_pool zeroes empty texts afterwards
    half = _indexed_max(states.to(torch.bfloat16), lengths, weight, 8)
    assert half.dtype == torch.float32


def test_gpu_check_agreement_measure():
    from benchmarks.gpu_check import sparse_agreement
    a = sp.csr_matrix(np.array([[0, 1, 2, 0], [3, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    b = sp.csr_matrix(np.array([[0, 1, 2.001, 0], [0, 3, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    out = sparse_agreement(a, b, top=1)
    assert out["cosine_min"] == 0.0 and out["top10_differs"] == 1
    assert sparse_agreement(a, a)["cosine_min"] == 1.0
