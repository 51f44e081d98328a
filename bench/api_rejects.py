#!/usr/bin/env python3
"""Benchmark of issue #11: what a page of `GET /api/rejects?rule=X` costs on SQLite with
1,000,000 rejected rows, with the index on `rejected_rows (rule)` that schema versions
1-13 have and with `(rule, file_id, line_no)` that migration 0014 puts in its place.

A SQLite warehouse made by `bankpipe migrate` is filled directly: 1,000 loaded files of
1,000 rejected rows each (Kaggle-layout raw text of ~100 bytes), 900,000 of them under
one rule (`invalid_amount`, a feed gone bad) and 20,000 under each of five others. Then
`bankpipe serve` (release build) is asked for pages over loopback (whole HTTP requests):

- `?rule=invalid_amount&limit=100`: `--pages` pages from the start following
  `next_cursor` (the start is the dearest place without the index: the rule's rows after
  the position are sorted for each page), and `--pages` from the middle (a cursor
  half-way through the files);
- `?rule=negative_amount&limit=100` (a rule of 20,000 rows), `limit=1000`, and the
  unfiltered listing for comparison.

Each case runs with the index as migrated (0014), then with the index of versions 1-13
put back by hand (`DROP INDEX rejected_rows_rule_file_line; CREATE INDEX
rejected_rows_rule ON rejected_rows (rule)`): the same binary, only the index differs.
What the index costs elsewhere is measured too: `bankpipe status` (its `GROUP BY rule`
reads the index) and a `bankpipe run` of a 1,000,000-row file with 30% defects (the
index is written for every rejected row). Prints p50/p99/max per case and the load
average (the machine is shared).

Usage: python3 bench/api_rejects.py [--pages 100] [--runs 3] [--keep DIR] [--load-only]
"""

import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bankpipe")
FILES = 1_000
PER_FILE = 1_000
BIG_RULE = "invalid_amount"
SMALL_RULES = ["negative_amount", "invalid_transaction_date", "missing_customer_id",
               "invalid_currency", "malformed_row"]
OLD = ["DROP INDEX IF EXISTS rejected_rows_rule_file_line",
       "CREATE INDEX IF NOT EXISTS rejected_rows_rule ON rejected_rows (rule)"]
NEW = ["DROP INDEX IF EXISTS rejected_rows_rule",
       "CREATE INDEX IF NOT EXISTS rejected_rows_rule_file_line"
       " ON rejected_rows (rule, file_id, line_no)"]


def fill(db):
    c = sqlite3.connect(db)
    rnd = random.Random(14)
    rules = [BIG_RULE] * 45 + SMALL_RULES  # 90% / 2% each
    c.execute("BEGIN")
    c.executemany(
        "INSERT INTO files (file_id, sha256, original_name, bytes, profile, format, compression,"
        " lake_key, received_at, claimed_at, processed_at, run_id, status, rows_read,"
        " rows_loaded, rows_rejected, rows_duplicate, amount_read, amount_loaded,"
        " amount_rejected, amount_duplicate) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(f, f"{f:064x}", f"feed-{f:04}.csv", 10_000_000, "kaggle-bank", "csv", "none",
          f"raw/{f}", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z",
          "2026-01-01T00:00:01.000Z", "run-1", "loaded", 100_000, 100_000 - PER_FILE,
          PER_FILE, 0, "0.00", "0.00", "0.00", "0.00") for f in range(1, FILES + 1)])
    c.execute("INSERT INTO runs (run_id, started_at, finished_at, status) VALUES"
              " ('run-1', '2026-01-01T00:00:00.000Z', '2026-01-01T01:00:00.000Z', 'ok')")

    def rows():
        for f in range(1, FILES + 1):
            lines = sorted(rnd.sample(range(2, 100_002), PER_FILE))
            for line in lines:
                rule = rules[rnd.randrange(len(rules))]
                yield (f, line, rule, "amount", f"\"{rnd.randint(1, 99)}e3\" is not a plain decimal",
                       f"T{f}{line},C{line % 99991},10/1/94,F,JAMSHEDPUR,17819.05,2/8/16,143207,"
                       f"{rnd.randint(1, 99)}e3")
    c.executemany("INSERT INTO rejected_rows (file_id, line_no, rule, field, detail, raw)"
                  " VALUES (?, ?, ?, ?, ?, ?)", rows())
    c.execute("COMMIT")
    n = dict(c.execute("SELECT rule, count(*) FROM rejected_rows GROUP BY rule").fetchall())
    c.close()
    return n


def set_index(db, statements):
    c = sqlite3.connect(db)
    for s in statements:
        c.execute(s)
    c.commit()
    c.close()


def get(addr, path):
    host, port = addr.rsplit(":", 1)
    start = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    elapsed = time.perf_counter() - start
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"), data[:300]
    return elapsed, json.loads(body)


def pages(addr, query, n, cursor=None):
    times = []
    for _ in range(n):
        path = "/api/rejects?" + query + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        t, page = get(addr, path)
        times.append(t)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return times


def start(data_dir):
    log = open(os.path.join(data_dir, "serve.log"), "w+")
    serve = subprocess.Popen([BIN, "--data-dir", data_dir, "--log-format", "json", "serve",
                              "--listen", "127.0.0.1:0"], stderr=log,
                             env=dict(os.environ, BANKPIPE_LOG="warn,bankpipe::serve=info"))
    for _ in range(300):
        time.sleep(0.1)
        log.seek(0)
        for line in log:
            v = json.loads(line)
            if v["fields"].get("message") == "Serving.":
                return serve, v["fields"]["addr"]
    raise SystemExit("serve did not start")


def summary(name, xs):
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
    print(f"  {name:<48} n={len(xs):<4} p50 {statistics.median(xs) * 1000:8.1f} ms"
          f"   p99 {p99 * 1000:8.1f} ms   max {xs[-1] * 1000:8.1f} ms", flush=True)


def measure(work, n):
    serve, addr = start(work)
    try:
        get(addr, "/api/rejects?limit=1")  # sessions opened, pages warm
        mid = f"{FILES // 2}.1.1"
        summary(f"rule={BIG_RULE} limit=100, from the start",
                pages(addr, f"rule={BIG_RULE}&limit=100", n))
        summary(f"rule={BIG_RULE} limit=100, from the middle",
                pages(addr, f"rule={BIG_RULE}&limit=100", n, mid))
        summary(f"rule={BIG_RULE} limit=1000, from the start",
                pages(addr, f"rule={BIG_RULE}&limit=1000", max(1, n // 5)))
        summary(f"rule={SMALL_RULES[0]} limit=100, from the start",
                pages(addr, f"rule={SMALL_RULES[0]}&limit=100", n))
        summary("no filter, limit=100, from the start", pages(addr, "limit=100", n))
    finally:
        serve.terminate()
        serve.wait()


def timed(args, cwd=None):
    t = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=cwd)
    return time.perf_counter() - t


def load_cost(work, runs):
    """`bankpipe run` of one file with many rejects, into fresh warehouses that differ
    only by the index."""
    big = os.path.join(work, "defects.csv")
    subprocess.run([BIN, "-q", "generate", "--rows", "1000000", "--defects", "0.3",
                    "--out", big], check=True, stdout=subprocess.DEVNULL)
    times = {"old": [], "new": []}
    for r in range(runs):
        for variant, statements in (("old", OLD), ("new", NEW)):
            d = os.path.join(work, f"load-{variant}-{r}")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(os.path.join(d, "inbox"))
            subprocess.run([BIN, "--data-dir", d, "-q", "migrate"], check=True,
                           stdout=subprocess.DEVNULL)
            set_index(os.path.join(d, "warehouse.db"), statements)
            os.link(big, os.path.join(d, "inbox", "defects.csv"))
            # 30% rejected: the file must not fail on its reject share.
            times[variant].append(timed([BIN, "--data-dir", d, "-q", "run",
                                         "--max-reject-share", "0.5"]))
            if r == 0:
                c = sqlite3.connect(os.path.join(d, "warehouse.db"))
                rejected = c.execute("SELECT count(*) FROM rejected_rows").fetchone()[0]
                c.close()
            shutil.rmtree(d)
    print(f"  run of a 1,000,000-row file with {rejected} rejected rows (load average "
          f"{os.getloadavg()[0]:.1f}):")
    for variant in ("old", "new"):
        xs = times[variant]
        print(f"    index {'(rule)' if variant == 'old' else '(rule, file_id, line_no)':<26}"
              f" median {statistics.median(xs):.2f} s  (runs: "
              f"{', '.join(f'{x:.2f}' for x in xs)})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep")
    ap.add_argument("--load-only", action="store_true", help="only the load's cost")
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="bench-api-rejects-")
    try:
        os.makedirs(work, exist_ok=True)
        db = os.path.join(work, "warehouse.db")
        if not os.path.exists(db):
            subprocess.run([BIN, "--data-dir", work, "-q", "migrate"], check=True,
                           stdout=subprocess.DEVNULL)
            os.makedirs(os.path.join(work, "lake"), exist_ok=True)
            t = time.perf_counter()
            n = fill(db)
            print(f"catalog: {FILES} files, {sum(n.values())} rejected rows {n}"
                  f" (filled in {time.perf_counter() - t:.0f} s)")
        variants = () if args.load_only else (("(rule, file_id, line_no) [0014]", NEW),
                                              ("(rule) [versions 1-13]", OLD))
        for variant, statements in variants:
            set_index(db, statements)
            print(f"index {variant} (load average {os.getloadavg()[0]:.1f} on"
                  f" {os.cpu_count()} cores)", flush=True)
            measure(work, args.pages)
            timed([BIN, "--data-dir", work, "status"])  # the new index read once
            status = [timed([BIN, "--data-dir", work, "status"]) for _ in range(10)]
            summary("bankpipe status (whole process)", status)
        set_index(db, NEW)
        load_cost(work, args.runs)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
