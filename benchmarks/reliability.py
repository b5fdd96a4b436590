"""The "Reliability" section of BENCHMARKS.md: what the failure tests exercised, and what was lost.

    python -m benchmarks.reliability [--no-write]

Runs the tests that crash, kill, fuzz, corrupt and fill the disk (the same tests CI runs) and
adds up the counts they record (pytest's record_property, names "reliability:<what>"; a
"<what>:lost" property counts acknowledged documents missing afterwards). Every one of those
tests asserts that nothing acknowledged is lost, so the section is written only when all pass.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter

from .report import ROOT, machine, write_section

TESTS = [
    "tests/indexer/test_crash_points.py",
    "tests/indexer/test_collection_durability.py",
    "tests/indexer/test_wal_recovery.py",
    "tests/indexer/test_disk_full.py",
    "tests/service/test_reliability.py",
    "tests/service/test_schema.py",
    "tests/service/test_fuzz.py",
    "tests/service/test_jobs.py",
]
PREFIX = "reliability:"


def collect(junit_xml: str) -> tuple[Counter, Counter, int, int]:
    """(cases per kind, documents lost per kind, tests passed, tests failed)."""
    cases, lost = Counter(), Counter()
    root = ET.parse(junit_xml).getroot()
    passed = failed = 0
    for tc in root.iter("testcase"):
        if tc.find("failure") is not None or tc.find("error") is not None:
            failed += 1
            continue
        if tc.find("skipped") is not None:
            continue
        passed += 1
        for prop in tc.iter("property"):
            name = prop.get("name", "")
            if not name.startswith(PREFIX):
                continue
            kind = name[len(PREFIX):]
            if kind.endswith(":lost"):
                lost[kind[:-len(":lost")]] += int(prop.get("value"))
            else:
                cases[kind] += int(prop.get("value"))
    return cases, lost, passed, failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "junit.xml")
        t0 = time.time()
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              f"--junitxml={xml}", *TESTS], cwd=ROOT)
        elapsed = time.time() - t0
        cases, lost, passed, failed = collect(xml)
    if run.returncode != 0 or failed:
        print(f"{failed} failure tests failed: not writing the section", file=sys.stderr)
        return 1
    rows = "\n".join(f"| {kind} | {n:,} | {lost[kind]} |" for kind, n in sorted(cases.items()))
    body = f"""## Reliability

`python -m benchmarks.reliability` — {passed} tests passed in {elapsed:.0f} s; {machine()},
load average {os.getloadavg()[0]:.2f}. Each row is what the failure tests exercised in that run,
and how many acknowledged documents were missing afterwards (each test asserts 0).

| what | cases | documents lost |
|---|---:|---:|
{rows}

- Crash points: the workload (upserts, deletes, flush, merge, tombstones, snapshot, restore,
  create, drop) runs in a forked child that exits at its N-th durable step (every write, fsync
  and rename, `indexer/crashpoints.py`), for N = 1, 2, ... until it completes; after each crash
  the collection must reopen in the acknowledged state (or that plus the operation in flight).
- Damaged files: a flipped byte, truncation, deletion or a foreign format version in every file
  kind (collection config, manifest, segment manifest and arrays, document store, tombstones,
  first and last WAL record): each is reported as damage naming the file and the failed check —
  HTTP 503, `"state": "damaged"`, `/readyz` "degraded" — never as "not found", and the
  collection is restored from a snapshot with every document the snapshot holds.
- Schema fuzzing: schemathesis over the whole OpenAPI document with every check (status codes,
  content types, headers, response schemas, Allow, auth, positive and negative data).
"""
    print(body)
    if not args.no_write:
        write_section("reliability", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
