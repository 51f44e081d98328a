#!/usr/bin/env python3
"""Benchmark of issue #2, measured in one run on one machine:

1. load: `bankpipe run` of the 1,048,567-row Kaggle-layout file into an empty SQLite
   warehouse, against the sqlite3 shell's `.import --csv` of the same file into an
   equivalent table with a primary key;
2. check: `bankpipe check` of that file as a whole process, against a whole Python
   process reading it with Polars (column types set, both date columns parsed);
3. memory: peak resident memory of `bankpipe run` on a 10,000,000-row file (--big).

Rounds alternate the contenders so that machine noise hits both alike; medians are
reported. Usage: python3 bench/ingest_sqlite.py [--rounds N] [--big] [--keep DIR]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROWS = 1_048_567
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bankpipe")

IMPORT_SQL = """CREATE TABLE t (
  TransactionID TEXT PRIMARY KEY, CustomerID TEXT, CustomerDOB TEXT, CustGender TEXT,
  CustLocation TEXT, CustAccountBalance TEXT, TransactionDate TEXT, TransactionTime TEXT,
  TransactionAmount TEXT);
.import --csv --skip 1 {csv} t
"""

POLARS = """
import sys, polars as pl
df = pl.read_csv(sys.argv[1], schema={
    "TransactionID": pl.Utf8, "CustomerID": pl.Utf8, "CustomerDOB": pl.Utf8,
    "CustGender": pl.Utf8, "CustLocation": pl.Utf8, "CustAccountBalance": pl.Float64,
    "TransactionDate": pl.Utf8, "TransactionTime": pl.Int64,
    "TransactionAmount (INR)": pl.Float64})
df = df.with_columns(
    pl.col("CustomerDOB").str.to_date("%d/%m/%y", strict=False),
    pl.col("TransactionDate").str.to_date("%d/%m/%y", strict=False))
print(df.height)
"""


def timed(cmd, **kw):
    """Wall seconds and peak RSS (KiB) of a whole process, via GNU time."""
    with tempfile.NamedTemporaryFile("r") as t:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name] + cmd, check=True,
                       stdout=subprocess.DEVNULL, **kw)
        wall = time.perf_counter() - start
        return wall, int(t.read().strip().splitlines()[-1])


def ensure_polars():
    try:
        import polars  # noqa: F401
        return True
    except ImportError:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "polars"])
        return r.returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--big", action="store_true", help="also measure RSS on 10M rows")
    ap.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = args.keep or tempfile.mkdtemp(prefix="bankpipe-bench-")
    os.makedirs(work, exist_ok=True)
    csv = os.path.join(work, "bank_transactions.csv")
    if not os.path.exists(csv):
        subprocess.run([BIN, "generate", "--rows", str(ROWS), "--out", csv, "--seed", "7",
                        "--defects", "0"], check=True, stderr=subprocess.DEVNULL)
    size = os.path.getsize(csv)
    print(f"input: {ROWS:,} rows, {size / 1e6:.1f} MB ({csv})")
    print(f"machine: {os.cpu_count()} cores; rounds: {args.rounds}")

    load_bp, load_sq, rss_bp = [], [], []
    for _ in range(args.rounds):
        db = os.path.join(work, "import.db")
        if os.path.exists(db):
            os.remove(db)
        sql = IMPORT_SQL.format(csv=csv)
        start = time.perf_counter()
        subprocess.run(["sqlite3", db], input=sql.encode(), check=True,
                       stdout=subprocess.DEVNULL)
        load_sq.append(time.perf_counter() - start)

        data = os.path.join(work, "data")
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(os.path.join(data, "inbox"))
        os.link(csv, os.path.join(data, "inbox", "bank_transactions.csv"))
        wall, rss = timed([BIN, "--data-dir", data, "-q", "run"])
        load_bp.append(wall)
        rss_bp.append(rss)

    m_bp, m_sq = statistics.median(load_bp), statistics.median(load_sq)
    print("\n== load into SQLite (median of rounds)")
    print(f"sqlite3 .import --csv : {m_sq:6.2f} s  {ROWS / m_sq:10,.0f} rows/s")
    print(f"bankpipe run          : {m_bp:6.2f} s  {ROWS / m_bp:10,.0f} rows/s"
          f"  peak RSS {max(rss_bp) / 1024:.0f} MB")
    print(f"ratio (sqlite3 time / bankpipe time): {m_sq / m_bp:.2f}x")
    print(f"all rounds: sqlite3 {['%.2f' % x for x in load_sq]} bankpipe {['%.2f' % x for x in load_bp]}")

    print("\n== check (validate only), whole process")
    chk = []
    for _ in range(args.rounds):
        chk.append(timed([BIN, "-q", "check", csv])[0])
    m_chk = statistics.median(chk)
    print(f"bankpipe check        : {m_chk:6.2f} s  {ROWS / m_chk:10,.0f} rows/s")
    if ensure_polars():
        script = os.path.join(work, "polars_read.py")
        with open(script, "w") as f:
            f.write(POLARS)
        pol = [timed([sys.executable, script, csv])[0] for _ in range(args.rounds)]
        m_pol = statistics.median(pol)
        print(f"python + polars       : {m_pol:6.2f} s  {ROWS / m_pol:10,.0f} rows/s")
        print(f"ratio (polars time / bankpipe time): {m_pol / m_chk:.2f}x")
    else:
        print("polars could not be installed; no peer figure")

    if args.big:
        big = os.path.join(work, "big")
        shutil.rmtree(big, ignore_errors=True)
        os.makedirs(os.path.join(big, "inbox"))
        path = os.path.join(big, "inbox", "big.csv")
        subprocess.run([BIN, "generate", "--rows", "10000000", "--out", path, "--seed", "9",
                        "--defects", "0.001"], check=True, stderr=subprocess.DEVNULL)
        wall, rss = timed([BIN, "--data-dir", big, "-q", "run"])
        print(f"\n== 10,000,000 rows ({os.path.getsize(path) / 1e6:.0f} MB)")
        print(f"bankpipe run          : {wall:6.2f} s  {10_000_000 / wall:10,.0f} rows/s"
              f"  peak RSS {rss / 1024:.0f} MB")
        wall, rss = timed([BIN, "-q", "check", path])
        print(f"bankpipe check        : {wall:6.2f} s  {10_000_000 / wall:10,.0f} rows/s"
              f"  peak RSS {rss / 1024:.0f} MB")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
