"""Bulk install (Collection.install_segment): a batch becomes a sealed segment in one manifest
commit, keyed so that a rerun adds nothing twice, ordered as one upsert made when it started."""
import numpy as np
import pytest

import indexer.collection as collection_module
from indexer.collection import Collection
from indexer.errors import InvalidInputError

from .collection_helpers import CRASH_DIM, doc_terms, doc_vectors

FIELDS = {"sparse": {"kind": "sparse", "dim": CRASH_DIM}}


def _texts(coll) -> dict:
    return {d: coll.get(d).text for d in coll.ids()}


def _found(coll, doc_id) -> bool:
    return doc_id in [h.id for h in coll.search(list(doc_terms(doc_id)), [1.0, 1.0], k=5)]


def test_installed_batch_is_searchable_counted_and_replaces_older_versions(tmp_path):
    with Collection.create(tmp_path, "c", FIELDS, maintenance=False) as coll:
        coll.upsert(["a", "b"], doc_vectors(["a", "b"]), texts=["a@1", "b@1"])
        ids = ["b", "c", "d"]
        assert coll.install_segment("batch-0", ids, doc_vectors(ids), texts=["b@bulk", "c@bulk", "d@bulk"],
                                    metadata=[{"n": 1}, None, {"n": 3}])
        assert _texts(coll) == {"a": "a@1", "b": "b@bulk", "c": "c@bulk", "d": "d@bulk"}
        assert all(_found(coll, d) for d in "abcd")
        assert coll.get("d").metadata == {"n": 3}
        st = coll.stats()
        assert st["documents"] == 4 and st["tombstones"] == 0  # the old "b" was in the buffer
        ts = coll.term_stats("sparse")
        assert ts.n_docs == 4 and int(ts.df[doc_terms("c")[0]]) >= 1
        # the same key again: nothing changes, even with other content
        assert not coll.install_segment("batch-0", ["z"], doc_vectors(["z"]), texts=["z"])
        assert "z" not in coll and coll.installed() == {"batch-0"}
        coll.upsert(["c"], doc_vectors(["c"]), texts=["c@2"])  # a later write wins
        assert coll.get("c").text == "c@2"
    with Collection.open(tmp_path, "c", maintenance=False) as coll:
        assert _texts(coll) == {"a": "a@1", "b": "b@bulk", "c": "c@2", "d": "d@bulk"}
        assert coll.installed() == {"batch-0"} and coll.term_stats("sparse").n_docs == 4


def test_replayed_older_write_does_not_override_an_installed_version(tmp_path):
    """An upsert still in the WAL (not flushed) is older than a batch installed after it: after
    a restart its replay must leave the installed version live."""
    with Collection.create(tmp_path, "c", FIELDS, maintenance=False) as coll:
        coll.upsert(["x", "y"], doc_vectors(["x", "y"]), texts=["x@wal", "y@wal"])
        coll.install_segment("k", ["x"], doc_vectors(["x"]), texts=["x@bulk"])
    with Collection.open(tmp_path, "c", maintenance=False) as coll:
        assert _texts(coll) == {"x": "x@bulk", "y": "y@wal"}
        assert coll.term_stats("sparse").n_docs == 2 and _found(coll, "x")
        coll.flush()
        coll.merge(force=True)
    with Collection.open(tmp_path, "c", maintenance=False) as coll:
        assert _texts(coll) == {"x": "x@bulk", "y": "y@wal"} and coll.installed() == {"k"}


def test_writes_made_while_a_batch_builds_are_newer(tmp_path, monkeypatch):
    """An upsert and a delete of the batch's ids that happen while its segment is being built
    win over the batch, whose rows for them are dead when it is installed."""
    real = collection_module.write_segment
    with Collection.create(tmp_path, "c", FIELDS, maintenance=False) as coll:
        coll.upsert(["old"], doc_vectors(["old"]), texts=["old@1"])

        def meanwhile(*args, **kwargs):
            coll.upsert(["p"], doc_vectors(["p"]), texts=["p@later"])
            coll.delete(["q", "old"])  # "q" is not there yet: deleted all the same
            return real(*args, **kwargs)
        monkeypatch.setattr(collection_module, "write_segment", meanwhile)
        ids = ["p", "q", "r", "old"]
        assert coll.install_segment("k", ids, doc_vectors(ids), texts=[f"{d}@bulk" for d in ids])
        monkeypatch.setattr(collection_module, "write_segment", real)
        assert _texts(coll) == {"p": "p@later", "r": "r@bulk"}
        assert coll.term_stats("sparse").n_docs == 2
        coll.flush()
    with Collection.open(tmp_path, "c", maintenance=False) as coll:
        assert _texts(coll) == {"p": "p@later", "r": "r@bulk"}


def test_follower_sees_an_installed_batch(tmp_path):
    with Collection.create(tmp_path, "c", FIELDS, maintenance=False) as coll:
        follower = Collection.open(tmp_path, "c", read_only=True)
        ids = [f"d{i}" for i in range(20)]
        coll.install_segment("k", ids, doc_vectors(ids), texts=ids)
        assert follower.refresh()
        assert sorted(follower.ids()) == sorted(ids) and _found(follower, "d7")
        assert follower.installed() == {"k"}
        with pytest.raises(Exception, match="read-only"):
            follower.install_segment("k2", ["e"], doc_vectors(["e"]))
        follower.close()


@pytest.mark.parametrize("key", ["", None, "x" * 1025])
def test_bad_key_or_batch_is_refused_and_stores_nothing(tmp_path, key):
    with Collection.create(tmp_path, "c", FIELDS, maintenance=False) as coll:
        with pytest.raises(InvalidInputError, match="key"):
            coll.install_segment(key, ["a"], doc_vectors(["a"]))
        with pytest.raises(InvalidInputError, match="twice"):
            coll.install_segment("k", ["a", "a"], doc_vectors(["a", "a"]))
        assert len(coll) == 0 and coll.installed() == set()
        assert np.array_equal(sorted(p.name for p in (coll.path / "segments").iterdir()), [])
