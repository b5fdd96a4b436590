"""The portable builds of the C++ kernels: which one loads, and that each agrees with the others.

The variant modules come from a portable build, which `make install` does not make:
    cmake -S . -B /tmp/lsr-portable -G Ninja -DLSR_PORTABLE=ON -DPython_EXECUTABLE=$PWD/.venv/bin/python
    cmake --build /tmp/lsr-portable
    PYTHONPATH=/tmp/lsr-portable .venv/bin/python -m pytest tests/indexer/test_native_variants.py
"""
import importlib

import numpy as np
import pytest

import encoders.native as loader
from indexer import ExactIndex, SeismicIndex, exact
from indexer.native import native_module
from indexer.seismic import index as seismic_index

V2_ONLY = {"fpu", "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3", "avx", "xsave"}
V3 = V2_ONLY | {"avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe"}


def test_flags_come_from_the_first_flags_line():
    cpuinfo = ["processor\t: 0", "model name\t: Some CPU", "flags\t\t: fpu sse4_2 avx2",
               "bugs\t\t: spectre_v1", "", "processor\t: 1", "flags\t\t: fpu"]
    assert loader.cpu_flags(cpuinfo) == {"fpu", "sse4_2", "avx2"}
    # aarch64 names them "Features": no x86 level can be claimed
    assert loader.cpu_flags(["processor\t: 0", "Features\t: fp asimd"]) == frozenset()


@pytest.mark.parametrize("flags,expected", [
    (V3, ["native", "x86-64-v3", "x86-64-v2"]),
    (V2_ONLY, ["native", "x86-64-v2"]),  # AVX without AVX2 (Sandy Bridge): not v3
    (V3 - {"bmi2"}, ["native", "x86-64-v2"]),  # every v3 feature is needed, not just AVX2
    (V3 - {"xsave"}, ["native", "x86-64-v2"]),  # AVX state not enabled by the OS
    (V2_ONLY - {"popcnt"}, ["native"]),  # pre-v2 CPU: only a build made on it is safe
    (frozenset(), ["native"]),  # unknown flags (no /proc/cpuinfo)
])
def test_variant_choice_from_flags(flags, expected):
    assert [v for _, v in loader.candidates("x86_64", frozenset(flags))] == expected


def test_non_x86_tries_only_its_own_build():
    assert loader.candidates("aarch64", frozenset(V3)) == [("lsr_native", "native")]


def _fake_modules(monkeypatch, flags, present):
    monkeypatch.setattr(loader.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(loader, "_host_flags", lambda: frozenset(flags))

    def import_module(name):
        if name not in present:
            raise ImportError(f"No module named {name!r}")
        return f"module {name}"
    monkeypatch.setattr(loader.importlib, "import_module", import_module)


@pytest.mark.parametrize("flags,present,module,variant", [
    (V3, {"lsr_native", "lsr_native_v3", "lsr_native_v2"}, "lsr_native", "native"),
    (V3, {"lsr_native_v3", "lsr_native_v2"}, "lsr_native_v3", "x86-64-v3"),
    (V3, {"lsr_native_v2"}, "lsr_native_v2", "x86-64-v2"),
    (V2_ONLY, {"lsr_native_v3", "lsr_native_v2"}, "lsr_native_v2", "x86-64-v2"),  # v3 unsafe
])
def test_load_takes_the_best_importable_variant(monkeypatch, flags, present, module, variant):
    _fake_modules(monkeypatch, flags, present)
    assert loader._load() == (f"module {module}", variant, None)


def test_load_reports_every_failure_when_nothing_loads(monkeypatch):
    _fake_modules(monkeypatch, V2_ONLY - {"popcnt"}, {"lsr_native_v2"})
    module, variant, error = loader._load()
    assert module is None and variant is None
    assert "lsr_native" in error and "lsr_native_v2" not in error  # v2 was not even tried


# ------------------------------------------------------------ real variant modules


def _variant_module(name: str, level: str):
    if level not in [v for _, v in loader.candidates("x86_64", loader._host_flags())]:
        pytest.skip(f"this CPU lacks {level} features: importing {name} could die of SIGILL")
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} not importable: build with -DLSR_PORTABLE=ON and put it on "
                    "PYTHONPATH (see this module's docstring)")


def _all_results(idx, queries, backend):
    singles = [idx.search(q.indices, q.data, k=10, query_cut=5, heap_factor=0.8, backend=backend)
               for q in queries]
    return singles + [idx.search_batch(queries, k=10, query_cut=5, heap_factor=0.8, n_threads=2,
                                       backend=backend)]


@pytest.mark.parametrize("name,level", [("lsr_native_v2", "x86-64-v2"),
                                        ("lsr_native_v3", "x86-64-v3")])
@pytest.mark.parametrize("index_cls", [SeismicIndex, ExactIndex])
def test_variant_matches_native_and_numba_bit_for_bit(synthetic, monkeypatch, name, level,
                                                      index_cls):
    module = _variant_module(name, level)
    docs, queries = synthetic
    # Numba is the reference that every C++ build must match exactly (-ffp-contract=off).
    references = [_all_results(index_cls.build(docs), queries, "numba")]
    if native_module() is not None:
        references.append(_all_results(index_cls.build(docs), queries, "native"))
    for where in (seismic_index, exact):
        monkeypatch.setattr(where, "native_module", lambda: module)
    idx = index_cls.build(docs)
    got = _all_results(idx, queries, "native")
    assert type(idx._native()).__module__ == name  # the variant really ran
    for ref in references:
        for (ids, scores), (ref_ids, ref_scores) in zip(got, ref, strict=True):
            np.testing.assert_array_equal(ids, ref_ids)
            np.testing.assert_array_equal(scores, ref_scores)


@pytest.mark.parametrize("name,level", [("lsr_native_v2", "x86-64-v2"),
                                        ("lsr_native_v3", "x86-64-v3")])
def test_variant_splade_head_matches_the_torch_reference(monkeypatch, name, level):
    module = _variant_module(name, level)
    torch = pytest.importorskip("torch")
    from encoders import sparse_head
    monkeypatch.setattr(sparse_head, "_native", module)
    g = torch.Generator().manual_seed(0)
    w, bias = torch.randn(37, 24, generator=g), torch.randn(37, generator=g)
    lengths = [13, 0, 6]
    states = torch.randn(sum(lengths), 24, generator=g)
    fused = sparse_head.max_pool(states, lengths, w, bias, packed=sparse_head.pack_weight(w))
    ref = sparse_head.max_pool(states, lengths, w, bias, chunk_tokens=4)
    # v3 sums with FMA intrinsics, v2 without: close to the reference, not bit-equal
    assert torch.allclose(fused, ref, atol=1e-5, rtol=0), (fused - ref).abs().max()
