"""Crash-point injection: a workload runs in a forked child that exits at its N-th durable step
(indexer/crashpoints.py), for N = 1, 2, ... until a run finishes without crashing. After each
crash the collections and the snapshot are reopened and must hold exactly the acknowledged
operations, plus possibly the one in flight: nothing acknowledged lost, nothing else gained."""
import functools
import json
import os
import shutil
import tempfile
import traceback
from pathlib import Path

import pytest

from indexer import crashpoints
from indexer.collection import Collection

from .collection_helpers import CRASH_DIM, doc_terms, doc_vectors

FIELDS = {"sparse": {"kind": "sparse", "dim": CRASH_DIM}}
# tiny thresholds: a flush every few upserts, a merge every other flush, tombstones from deletes
OPTIONS = dict(flush_docs=6, max_segments=3, merge_small_docs=10)
SNAPSHOT = ("snaps", "s")
MIN_CRASH_POINTS = 300
# steps the workload must reach: flush, merge, tombstones, snapshot, restore, create and drop
REQUIRED_STEPS = {"segment.rename", "merge.remove_segment", "commit.remove_tombstones",
                  "snapshot.rename", "restore.rename", "collection.create.rename",
                  "collection.drop.rename", "wal.fsync", "install.segment_written"}


def _workload() -> list[tuple]:
    """Operations (kind, collection, ids): new documents, re-upserts and deletes on "c", a
    snapshot, more writes, a restore of the snapshot as "r" written to, and a dropped "x"."""
    ops = [("create", "c", []), ("create", "x", [])]
    for i in range(16):
        ops.append(("upsert", "c", [f"d{3 * i}", f"d{3 * i + 1}", f"d{3 * i + 2}"]))
        if i % 3 == 2:
            ops.append(("upsert", "c", [f"d{3 * i - 4}", f"d{3 * i - 6}"]))  # new versions
        if i % 4 == 3:
            ops.append(("delete", "c", [f"d{3 * i - 1}", f"d{3 * i - 8}"]))
    # bulk batches (install_segment): new ids and new versions of old ones, then the same
    # batch again, which must change nothing (a rerun after a crash)
    ops += [("install", "c", ["b1", "b2", "d1", "d3"]), ("delete", "c", ["b2"]),
            ("install", "c", ["b1", "b2", "d1", "d3"])]
    ops += [("snapshot", "c", []), ("upsert", "c", ["d0", "e1"]), ("delete", "c", ["d4"]),
            ("restore", "r", []), ("upsert", "r", ["d0", "f1"]), ("delete", "r", ["d7"]),
            ("flush", "r", []), ("drop", "x", [])]
    return ops


def _expected_states(ops: list[tuple]) -> list[dict]:
    """states[k]: {collection or snapshot name: {id: text}} after the first k operations."""
    state, states, installed = {}, [{}], set()
    for i, (kind, name, ids) in enumerate(ops):
        state = {k: dict(v) for k, v in state.items()}
        if kind == "create":
            state[name] = {}
        elif kind == "upsert":
            state[name].update({d: f"{d}@{i}" for d in ids})
        elif kind == "install":
            if tuple(ids) not in installed:
                installed.add(tuple(ids))
                state[name].update({d: f"{d}@bulk" for d in ids})
        elif kind == "delete":
            for d in ids:
                state[name].pop(d, None)
        elif kind == "snapshot":
            state["/".join(SNAPSHOT)] = dict(state[name])
        elif kind == "restore":
            state[name] = dict(state["/".join(SNAPSHOT)])
        elif kind == "drop":
            del state[name]
        states.append(state)
    return states


def _execute(root: Path, ack_fd: int, ops: list[tuple]) -> None:
    """Run the workload; after each operation returns, acknowledge it with one line."""
    data, snap = root / "data", root.joinpath(*SNAPSHOT)
    open_ = {}
    for i, (kind, name, ids) in enumerate(ops):
        if kind == "create":
            # inline flushes and merges: the same durable steps, in a repeatable order
            open_[name] = Collection.create(data, name, FIELDS, maintenance=False, **OPTIONS)
        elif kind == "upsert":
            open_[name].upsert(ids, doc_vectors(ids), texts=[f"{d}@{i}" for d in ids])
        elif kind == "delete":
            open_[name].delete(ids)
        elif kind == "install":  # the key names the batch: the same ids, the same key
            open_[name].install_segment("-".join(ids), ids, doc_vectors(ids), texts=[f"{d}@bulk" for d in ids])
        elif kind == "flush":
            open_[name].flush()
        elif kind == "snapshot":
            open_[name].snapshot(snap)
        elif kind == "restore":
            open_[name] = Collection.restore(snap, data, name, maintenance=False)
        elif kind == "drop":
            open_.pop(name).close()
            Collection.drop(data, name)
        os.write(ack_fd, f"{i}\n".encode())


def _run_child(root: Path, work, crash_at: int) -> int:
    """Fork and run work(root, ack_fd) armed to crash at step crash_at; the child's exit code."""
    root.mkdir()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            err = os.open(root / "stderr", os.O_WRONLY | os.O_CREAT, 0o644)
            os.dup2(err, 2)
            ack = os.open(root / "acks", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            crashpoints.arm(crash_at)
            work(root, ack)
            code = 0
        except BaseException:
            os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _read(parent: Path, name: str) -> dict:
    """{id: text} of a collection, checking its invariants, and that a second open agrees."""
    with Collection.open(parent, name, maintenance=False) as coll:
        state = {d: coll.get(d).text for d in coll.ids()}
        st = coll.stats()
        assert st["documents"] == len(state) == sum(st["segment_documents"]) + st["buffer_documents"]
        for d in state:
            assert d in [h.id for h in coll.search(list(doc_terms(d)), [1.0, 1.0], k=5)], d
        listed = json.loads((coll.path / "MANIFEST.json").read_text())["segments"]
        assert sorted(p.name for p in (coll.path / "segments").iterdir()) == \
            sorted(f"seg-{i:06d}" for i in listed)
    with Collection.open(parent, name, maintenance=False) as coll:
        assert {d: coll.get(d).text for d in coll.ids()} == state
    return state


def _actual_state(root: Path) -> dict:
    data, snap = root / "data", root.joinpath(*SNAPSHOT)
    state = {name: _read(data, name) for name in Collection.list(data)}
    if snap.exists():
        state["/".join(SNAPSHOT)] = _read(snap.parent, snap.name)
    return state


def _lost(before: dict, after: dict, actual: dict) -> int:
    """Acknowledged documents (id and version) missing from the reopened state, where the
    operation in flight does not explain it."""
    return sum(actual.get(name, {}).get(d) not in (text, after.get(name, {}).get(d))
               for name, docs in before.items() for d, text in docs.items())


@pytest.fixture
def scratch(tmp_path):
    """A directory on tmpfs when there is one: crash points are process crashes, so fsync
    buys nothing here and costs most of the time on a disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="lsr-crash-", dir=shm))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_every_crash_point_loses_no_acknowledged_write(scratch, record_property):
    ops = _workload()
    states = _expected_states(ops)
    names, bad, lost, crash_at = set(), [], 0, 0
    while True:
        crash_at += 1
        assert crash_at < 5000, "the workload never finished"
        root = scratch / f"crash-{crash_at}"
        code = _run_child(root, functools.partial(_execute, ops=ops), crash_at)
        err = (root / "stderr").read_text()
        if code == 0:
            break
        assert code == crashpoints.EXIT_CODE, err
        step = err.split(": ", 1)[1].strip()
        names.add(step)
        acked = len((root / "acks").read_text().split())  # the child creates it before arming
        try:
            actual = _actual_state(root)
        except Exception as exc:
            raise AssertionError(f"after a crash at step {crash_at} ({step}) during {ops[acked]}") from exc
        before, after = states[acked], states[acked + 1]
        lost += _lost(before, after, actual)
        if actual not in (before, after):
            bad.append(f"crash at step {crash_at} ({step}) during {ops[acked]}: {actual}")
        shutil.rmtree(root)
    assert _actual_state(root) == states[-1]
    points = crash_at - 1
    record_property("reliability:crash points (every durable step)", points)
    record_property("reliability:crash points (every durable step):lost", lost)
    print(f"\n{points} crash points ({len(names)} kinds of step), {lost} acknowledged documents "
          f"lost, {len(bad)} bad states")
    assert not bad and lost == 0, (lost, bad[:5])
    assert points >= MIN_CRASH_POINTS and REQUIRED_STEPS <= names, sorted(names)


def _submit_and_cancel_a_job(root: Path, ack_fd: int) -> None:
    from service.jobs import JobManager
    source = root / "source.jsonl"
    source.write_text('{"id": "a", "text": "x"}\n')
    jobs = JobManager(store=None, state_dir=root / "jobs", import_dir=root)  # no worker started
    job = jobs.submit("c", source.name, "jsonl")
    os.write(ack_fd, f"{job.id}\n".encode())
    jobs.cancel(job.id)
    os.write(ack_fd, b"cancelled\n")


def test_every_crash_point_of_a_job_checkpoint_keeps_the_job(tmp_path):
    """A job's checkpoint file is replaced atomically: after a crash at any step the job is
    there in its last acknowledged state or the one in flight, never damaged and skipped."""
    from service.jobs import JobManager
    crash_at = 0
    while True:
        crash_at += 1
        root = tmp_path / f"crash-{crash_at}"
        code = _run_child(root, _submit_and_cancel_a_job, crash_at)
        if code == 0:
            break
        assert code == crashpoints.EXIT_CODE, (root / "stderr").read_text()
        acks = (root / "acks").read_text().split()
        jobs = JobManager(store=None, state_dir=root / "jobs").list()
        assert len(jobs) == len(list((root / "jobs").glob("*.json")))  # none skipped as damaged
        if not acks:
            assert [j.status for j in jobs] in ([], ["queued"])
        else:
            assert [(j.id, j.status) for j in jobs] in ([(acks[0], "queued")], [(acks[0], "cancelled")])
    assert crash_at - 1 >= 4  # two checkpoints, each a write and a rename
