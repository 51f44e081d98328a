#!/usr/bin/env python3
"""Benchmark of issue #11: `/metrics` latency of `bankpipe serve` on a large catalog.

A SQLite warehouse created by `bankpipe migrate` is filled directly with a synthetic
catalog: 10,000 loaded files (with their per-file rejects by rule, warnings and
amounts, and claim/processing times), 2,000 runs, and 1,000,000 rows in
`rejected_rows`. Then `bankpipe serve` (release build) is scraped:

1. fresh: one scrape every 2.2 s, so that each one finds the cached reading older than
   2 s and waits for a new catalog read (the worst case of a scrape);
2. cached: back-to-back scrapes, as Prometheus servers scraping at once would.

The same is measured with `rejected_rows` emptied: equal times show the scrape does not
read it. Latencies are whole HTTP requests on loopback. Prints p50/p99/max per case.

Usage: python3 bench/serve_metrics.py [--fresh N] [--cached N] [--keep DIR]
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bankpipe")
FILES = 10_000
RUNS = 2_000
REJECTED = 1_000_000
RULES = ["invalid_amount", "invalid_transaction_date", "missing_customer_id",
         "negative_amount", "conflicting_duplicate", "invalid_currency"]
WARNINGS = ["missing_location", "placeholder_dob", "missing_balance"]


def fill(db):
    c = sqlite3.connect(db)
    rnd = random.Random(11)
    c.execute("BEGIN")
    c.executemany(
        "INSERT INTO runs (run_id, started_at, finished_at, status) VALUES (?, ?, ?, ?)",
        [(f"run-{i}", "2026-01-01T00:00:00.000Z", "2026-01-01T00:01:00.000Z",
          "ok" if i % 10 else "failed") for i in range(RUNS)])
    files, rejects, warnings, amounts = [], [], [], []
    for f in range(1, FILES + 1):
        loaded, rejected = rnd.randint(1000, 200_000), rnd.randint(0, 500)
        files.append((f, f"{f:064x}", f"f{f}.csv", loaded * 80, "kaggle-bank", "csv", "none",
                      f"raw/{f}", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z",
                      f"2026-01-01T00:00:{rnd.randint(1, 59):02d}.{rnd.randint(0, 999):03d}Z",
                      f"run-{f % RUNS}", "loaded", loaded + rejected, loaded, rejected, 0,
                      "0.00", f"{loaded * 25}.00", "0.00", "0.00"))
        left = rejected
        for rule in RULES:
            n = min(left, rnd.randint(0, 200))
            if n:
                rejects.append((f, rule, n))
                left -= n
        for rule in WARNINGS:
            warnings.append((f, rule, rnd.randint(0, 50)))
        amounts.append((f, "INR", loaded, f"{loaded * 25}.00"))
    c.executemany(
        "INSERT INTO files (file_id, sha256, original_name, bytes, profile, format, compression,"
        " lake_key, received_at, claimed_at, processed_at, run_id, status, rows_read,"
        " rows_loaded, rows_rejected, rows_duplicate, amount_read, amount_loaded,"
        " amount_rejected, amount_duplicate) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", files)
    c.executemany("INSERT INTO file_rejects VALUES (?, ?, ?)", rejects)
    c.executemany("INSERT INTO file_warnings VALUES (?, ?, ?)", warnings)
    c.executemany("INSERT INTO file_amounts VALUES (?, ?, ?, ?)", amounts)
    c.executemany(
        "INSERT INTO rejected_rows (file_id, line_no, rule, detail, raw) VALUES (?, ?, ?, ?, ?)",
        ((1 + i % FILES, i, RULES[i % len(RULES)], "synthetic", "T1,C1,,,,,,,x")
         for i in range(REJECTED)))
    c.execute("COMMIT")
    c.close()


def get(addr, path):
    host, port = addr.rsplit(":", 1)
    start = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    elapsed = time.perf_counter() - start
    assert data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200"), data[:100]
    return elapsed, data


def measure(data_dir, fresh, cached):
    log = open(os.path.join(data_dir, "serve.log"), "w+")
    env = dict(os.environ, BANKPIPE_LOG="info")
    serve = subprocess.Popen([BIN, "--data-dir", data_dir, "--log-format", "json", "serve",
                              "--listen", "127.0.0.1:0"], stderr=log, env=env)
    try:
        addr = None
        for _ in range(100):
            time.sleep(0.1)
            log.seek(0)
            for line in log:
                v = json.loads(line)
                if v["fields"].get("message") == "Serving.":
                    addr = v["fields"]["addr"]
            if addr:
                break
        time.sleep(1)
        _, body = get(addr, "/metrics")
        assert b'bankpipe_files_total{status="loaded"} 10000' in body, body[:2000]
        slow = []
        for _ in range(fresh):
            time.sleep(2.2)
            slow.append(get(addr, "/metrics")[0])
        quick = [get(addr, "/metrics")[0] for _ in range(cached)]
        rss = int(open(f"/proc/{serve.pid}/status").read().split("VmRSS:")[1].split()[0])
        return slow, quick, rss
    finally:
        serve.terminate()
        serve.wait()


def summary(name, xs):
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
    print(f"{name:<44} n={len(xs):<5} p50 {statistics.median(xs) * 1000:7.1f} ms"
          f"   p99 {p99 * 1000:7.1f} ms   max {xs[-1] * 1000:7.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fresh", type=int, default=30)
    ap.add_argument("--cached", type=int, default=1000)
    ap.add_argument("--keep")
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="bench-serve-")
    try:
        os.makedirs(work, exist_ok=True)
        subprocess.run([BIN, "--data-dir", work, "migrate"], check=True,
                       stdout=subprocess.DEVNULL)
        os.makedirs(os.path.join(work, "lake"), exist_ok=True)
        db = os.path.join(work, "warehouse.db")
        t = time.perf_counter()
        fill(db)
        print(f"catalog: {FILES} files, {RUNS} runs, {REJECTED} rejected rows "
              f"(filled in {time.perf_counter() - t:.0f} s)")
        slow, quick, rss = measure(work, args.fresh, args.cached)
        summary("/metrics, fresh catalog read each scrape", slow)
        summary("/metrics, cached reading", quick)
        print(f"serve RSS after the scrapes: {rss / 1024:.1f} MiB")
        c = sqlite3.connect(db)
        c.execute("DELETE FROM rejected_rows")
        c.commit()
        c.close()
        slow, quick, _ = measure(work, args.fresh, args.cached)
        summary("/metrics, fresh, rejected_rows emptied", slow)
        summary("/metrics, cached, rejected_rows emptied", quick)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
