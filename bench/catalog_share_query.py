#!/usr/bin/env python3
"""Benchmark of issue #12: what the rejected-share histogram costs a catalog read.

The SQLite warehouse of bench/serve_metrics.py (10,000 loaded files, 2,000 runs;
`bankpipe migrate` from target/debug or target/release, then its `fill`) is queried
directly with Python's sqlite3, each statement 80 times, median and max printed:

1. the scan of `files` behind /metrics' figures, as it was before issue #12;
2. the same scan with the share histogram folded in (9 bucket counts, a count, a sum);
3. the share histogram as a query of its own (what bankpipe does);
4. a run-duration histogram over `runs` (julianday of both timestamps per run), which
   bankpipe does not do: its cost grows with every run ever recorded.

Usage: python3 bench/catalog_share_query.py
"""

import importlib.util
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARE = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
PROCESSING = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0]
RUNS = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0]


def counts(column, bounds):
    return ", ".join(f"COUNT(*) FILTER (WHERE {column} <= {b!r})" for b in bounds)


FILES = (
    "SELECT COUNT(*) FILTER (WHERE status = 'landing'), COUNT(*) FILTER (WHERE status = 'loaded'), "
    "COUNT(*) FILTER (WHERE status = 'failed'), CAST(COALESCE(SUM(rows_loaded), 0) AS BIGINT), "
    "CAST(COALESCE(SUM(rows_rejected), 0) AS BIGINT), CAST(COALESCE(SUM(rows_duplicate), 0) AS BIGINT), "
    "CAST(COALESCE(SUM(bytes) FILTER (WHERE status <> 'landing'), 0) AS BIGINT), "
    "COUNT(*) FILTER (WHERE status <> 'landing' AND lake_status = 'intact'), "
    "COUNT(*) FILTER (WHERE status <> 'landing' AND lake_status = 'missing'), "
    "COUNT(*) FILTER (WHERE status <> 'landing' AND lake_status = 'corrupt'), "
    "COUNT(*) FILTER (WHERE status <> 'landing' AND lake_status IS NULL), COUNT(d), COALESCE(SUM(d), 0.0), "
    + counts("d", PROCESSING) + "{extra} FROM (SELECT status, rows_loaded, rows_rejected, rows_duplicate, "
    "bytes, lake_status, CASE WHEN status <> 'landing' AND processed_at IS NOT NULL AND claimed_at IS NOT NULL "
    "THEN MAX(0.0, (julianday(processed_at) - julianday(claimed_at)) * 86400.0) END AS d{inner} FROM files) f"
)
BEFORE = FILES.format(extra="", inner="")
FOLDED = FILES.format(
    extra=", COUNT(s), " + counts("s", SHARE) + ", COALESCE(SUM(s), 0.0)",
    inner=", CASE WHEN status <> 'landing' AND rows_read > 0 THEN CAST(rows_rejected AS REAL) / rows_read END AS s",
)
SEPARATE = (
    f"SELECT COUNT(v), COALESCE(SUM(v), 0.0), {counts('v', SHARE)} FROM (SELECT CAST(rows_rejected AS REAL) "
    "/ rows_read AS v FROM files WHERE status <> 'landing' AND rows_read > 0) h"
)
RUN_DURATIONS = (
    f"SELECT COUNT(v), COALESCE(SUM(v), 0.0), {counts('v', RUNS)} FROM (SELECT MAX(0.0, "
    "(julianday(finished_at) - julianday(started_at)) * 86400.0) AS v FROM runs "
    "WHERE status IN ('ok', 'failed', 'interrupted') AND finished_at IS NOT NULL) h"
)


def main():
    spec = importlib.util.spec_from_file_location("serve_metrics", os.path.join(ROOT, "bench", "serve_metrics.py"))
    sm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sm)
    binary = next(p for p in (os.path.join(ROOT, "target", k, "bankpipe") for k in ("release", "debug"))
                  if os.path.exists(p))
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "w.db")
        subprocess.run([binary, "--data-dir", d, "migrate"], check=True, capture_output=True,
                       env={**os.environ, "BANKPIPE_WAREHOUSE_URL": "sqlite://" + db})
        sm.fill(db)
        c = sqlite3.connect(db)
        for name, q in [("files scan, before", BEFORE), ("files scan with the share folded in", FOLDED),
                        ("share histogram alone (bankpipe)", SEPARATE), ("run durations over runs (not done)", RUN_DURATIONS)]:
            ms = []
            for _ in range(80):
                t = time.perf_counter()
                c.execute(q).fetchone()
                ms.append((time.perf_counter() - t) * 1000)
            print(f"{name:40} median {statistics.median(ms):6.2f} ms  max {max(ms):6.2f} ms")
        c.close()


if __name__ == "__main__":
    main()
