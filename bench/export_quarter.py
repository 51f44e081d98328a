#!/usr/bin/env python3
"""Benchmark of issue #10, measured in one run on one machine:

1. export: `bankpipe export --quarter 2016Q3` of a demo-size SQLite warehouse (three
   monthly files, July to September 2016, 1,048,567 rows read with the demo's defect
   rate) as a whole process, against a whole Python process running a tuned Polars
   script (bench/export_polars.py) that computes the same three tables from the same
   loaded rows (dumped once from the warehouse to CSV, untimed) and writes them as zstd
   Parquet. The peer skips the pseudonymisation (HMAC keys), which favours it.
2. memory: peak resident memory of `bankpipe export` of a 10,000,000-row quarter (--big).

Rounds alternate the contenders so that machine noise hits both alike; medians are
reported. Usage: python3 bench/export_quarter.py [--rounds N] [--big] [--keep DIR]
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROWS = 1_048_567
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bankpipe")
PEER = os.path.join(ROOT, "bench", "export_polars.py")
MONTHS = ["2016-07", "2016-08", "2016-09"]


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


def warehouse(data, rows, seed):
    """Generates three monthly files of the quarter into data/inbox and loads them."""
    inbox = os.path.join(data, "inbox")
    if os.path.exists(os.path.join(data, "warehouse.db")):
        return
    os.makedirs(inbox, exist_ok=True)
    per = [rows // 3 + (1 if i < rows % 3 else 0) for i in range(3)]
    first = 1
    for month, n in zip(MONTHS, per):
        out = os.path.join(inbox, f"bank_transactions_{month.replace('-', '_')}.csv")
        subprocess.run([BIN, "generate", "--rows", str(n), "--out", out, "--month", month,
                        "--seed", str(seed + first), "--first-id", str(first),
                        "--defects", "0.004"], check=True, stderr=subprocess.DEVNULL)
        first += n
    subprocess.run([BIN, "--data-dir", data, "-q", "run", "--max-reject-share", "0.2"],
                   check=True, stdout=subprocess.DEVNULL)


def dump(data, csv_path):
    """The loaded rows as the peer reads them (untimed)."""
    con = sqlite3.connect(os.path.join(data, "warehouse.db"))
    with open(csv_path, "w") as f:
        f.write("transaction_id,customer_id,customer_dob,gender,location,"
                "account_balance,transaction_at,amount\n")
        cur = con.execute("SELECT transaction_id, customer_id, customer_dob, gender, "
                          "location, account_balance, transaction_at, amount "
                          "FROM transactions")
        for row in cur:
            f.write(",".join("" if v is None else
                             ('"' + str(v).replace('"', '""') + '"'
                              if any(c in str(v) for c in ',"\n') else str(v))
                             for v in row) + "\n")
    return con.execute("SELECT COUNT(*) FROM transactions").fetchone()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--big", action="store_true", help="also measure RSS on 10M rows")
    ap.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = args.keep or tempfile.mkdtemp(prefix="bankpipe-bench-")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    warehouse(data, ROWS, 2016)
    csv_path = os.path.join(work, "rows.csv")
    loaded = dump(data, csv_path)
    print(f"warehouse: {ROWS:,} rows read, {loaded:,} loaded, quarter 2016Q3 ({work})")
    print(f"machine: {os.cpu_count()} cores; rounds: {args.rounds}")
    if not ensure_polars():
        sys.exit("polars could not be installed; no peer figure")

    out_bp = os.path.join(work, "exports")
    out_pl = os.path.join(work, "polars")
    os.makedirs(out_pl, exist_ok=True)
    bp, pl, rss_bp, rss_pl = [], [], [], []
    for _ in range(args.rounds):
        shutil.rmtree(out_bp, ignore_errors=True)
        wall, rss = timed([BIN, "--data-dir", data, "-q", "export", "--quarter", "2016Q3",
                           "--out", out_bp])
        bp.append(wall)
        rss_bp.append(rss)
        wall, rss = timed([sys.executable, PEER, csv_path, "2016Q3", out_pl])
        pl.append(wall)
        rss_pl.append(rss)
    with open(os.path.join(out_bp, "quarter=2016Q3", "manifest.json")) as f:
        manifest = json.load(f)
    peer = subprocess.run([sys.executable, PEER, csv_path, "2016Q3", out_pl], check=True,
                          capture_output=True, text=True).stdout.split()
    rows = {f["name"]: f["rows"] for f in manifest["files"]}
    print(f"rows written: bankpipe {rows}, polars transactions/customers/daily {peer}")

    m_bp, m_pl = statistics.median(bp), statistics.median(pl)
    print("\n== quarterly export, whole process (median of rounds)")
    print(f"python + polars       : {m_pl:6.2f} s  peak RSS {max(rss_pl) / 1024:.0f} MB")
    print(f"bankpipe export       : {m_bp:6.2f} s  peak RSS {max(rss_bp) / 1024:.0f} MB")
    print(f"ratio (polars time / bankpipe time): {m_pl / m_bp:.2f}x")
    print(f"all rounds: polars {['%.2f' % x for x in pl]} bankpipe {['%.2f' % x for x in bp]}")

    if args.big:
        big = os.path.join(work, "big")
        warehouse(big, 10_000_000, 9)
        wall, rss = timed([BIN, "--data-dir", big, "-q", "export", "--quarter", "2016Q3",
                           "--out", os.path.join(big, "exports"), "--force"])
        print("\n== 10,000,000-row quarter")
        print(f"bankpipe export       : {wall:6.2f} s  peak RSS {rss / 1024:.0f} MB")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
