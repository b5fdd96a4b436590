"""encoders.query_states: one computation per text across concurrent callers, bounded memory."""
import threading

import pytest
import torch

from encoders.query_states import QueryStates


def _states(n_tokens: int) -> torch.Tensor:
    return torch.full((n_tokens, 4), float(n_tokens))


def test_concurrent_callers_of_a_text_compute_it_once():
    qs = QueryStates()
    started, release = threading.Event(), threading.Event()
    calls: list[list[str]] = []

    def slow(texts):
        calls.append(list(texts))
        started.set()
        assert release.wait(10)
        return [_states(len(t)) for t in texts]

    got = {}
    first = threading.Thread(target=lambda: got.setdefault("a", qs.get(["abc", "de"], slow)))
    first.start()
    assert started.wait(10)
    # the second caller asks for one text in flight and one new one: it computes only the new one
    second = threading.Thread(target=lambda: got.setdefault("b", qs.get(["de", "fghi"], slow)))
    second.start()
    while len(calls) < 2:
        threading.Event().wait(0.01)
    release.set()
    first.join(10)
    second.join(10)
    assert sorted(map(sorted, calls)) == [["abc", "de"], ["fghi"]]
    assert [s.shape[0] for s in got["a"]] == [3, 2] and [s.shape[0] for s in got["b"]] == [2, 4]
    assert got["a"][1] is got["b"][0]  # the same tensor, not a recomputation
    assert qs.computed == 3 and qs.reused == 1
    # a later caller reuses it too, without computing
    assert qs.get(["abc"], lambda texts: pytest.fail("computed again"))[0] is got["a"][0]


def test_a_failed_computation_reaches_every_waiter_and_is_not_kept():
    qs = QueryStates()

    def boom(texts):
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        qs.get(["x"], boom)
    assert len(qs) == 0
    assert qs.get(["x"], lambda texts: [_states(1) for _ in texts])[0].shape == (1, 4)


def test_bounded_by_entries_and_by_tokens_oldest_first():
    qs = QueryStates(max_entries=3, max_tokens=10)
    make = lambda texts: [_states(len(t)) for t in texts]  # noqa: E731
    qs.get(["a", "bb", "ccc"], make)
    assert len(qs) == 3
    qs.get(["a"], make)  # "a" is now the most recent
    qs.get(["dd"], make)  # 4 entries > 3: the oldest ("bb") goes
    recomputed = []
    qs.get(["bb"], lambda texts: recomputed.extend(texts) or make(texts))
    assert recomputed == ["bb"]
    qs.get(["eeeeeeeee"], make)  # 9 tokens: over 10 in all, the oldest go until it fits
    assert qs._total <= 10 and len(qs) >= 1
    assert qs.get(["eeeeeeeee"], lambda texts: pytest.fail("evicted the newest"))[0].shape[0] == 9
