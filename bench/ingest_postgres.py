#!/usr/bin/env python3
"""Benchmark of issue #3, measured in one run on one machine: loading the 1,048,567-row
Kaggle-layout file into PostgreSQL

  * with psql's `\\copy` of the CSV (SET datestyle='ISO, DMY') into an equivalent typed
    table with a primary key, and
  * with `bankpipe run` into an empty bankpipe warehouse (validation, duplicates,
    landing the raw file, lineage, control totals included),

against the same throwaway PostgreSQL cluster (started here from the installed
binaries, as the `postgres` user when run as root). Rounds alternate; medians are
reported.

With --monthly, also three monthly files of 349,522 rows each (distinct ids): psql
`\\copy` of them one after the other and as three concurrent sessions, against
`bankpipe run` with --parallel 1 and --parallel 3 (files on pooled sessions).

Usage: python3 bench/ingest_postgres.py [--rounds N] [--monthly] [--keep DIR]
"""

import argparse
import glob
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

ROWS = 1_048_567
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bankpipe")

TABLE = """DROP TABLE IF EXISTS peer;
CREATE TABLE peer (
  TransactionID TEXT PRIMARY KEY, CustomerID TEXT, CustomerDOB DATE, CustGender TEXT,
  CustLocation TEXT, CustAccountBalance NUMERIC, TransactionDate DATE,
  TransactionTime INTEGER, TransactionAmount NUMERIC);"""


def pg_bin():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    if not dirs:
        raise SystemExit("PostgreSQL not found: apt-get install postgresql")
    return dirs[-1]


def as_pg(cmd):
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd, **kw):
    with tempfile.NamedTemporaryFile("r") as t:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name] + cmd, check=True,
                       stdout=subprocess.DEVNULL, **kw)
        return time.perf_counter() - start, int(t.read().strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", help="work folder to keep")
    ap.add_argument("--monthly", action="store_true",
                    help="also three monthly files: sequential and concurrent loads")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = args.keep or tempfile.mkdtemp(prefix="bankpipe-pgbench-")
    os.makedirs(work, exist_ok=True)
    csv = os.path.join(work, "bank_transactions.csv")
    if not os.path.exists(csv):
        subprocess.run([BIN, "generate", "--rows", str(ROWS), "--out", csv, "--seed", "7",
                        "--defects", "0"], check=True, stderr=subprocess.DEVNULL)
    os.chmod(work, 0o755)
    os.chmod(csv, 0o644)

    bindir = pg_bin()
    cluster = tempfile.mkdtemp(prefix="bpgb-")
    if os.geteuid() == 0:
        shutil.chown(cluster, "postgres", "postgres")
    port = free_port()
    data = os.path.join(cluster, "data")
    subprocess.run(as_pg([f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-N",
                          "-E", "UTF8", "--locale=C"]), check=True, stdout=subprocess.DEVNULL)
    subprocess.run(as_pg([f"{bindir}/pg_ctl", "-D", data, "-w", "-l", f"{cluster}/log", "-o",
                          f"-c port={port} -c listen_addresses=127.0.0.1 "
                          f"-c unix_socket_directories={cluster} -c max_wal_size=4GB "
                          f"-c shared_buffers=512MB", "start"]),
                   check=True, stdout=subprocess.DEVNULL)
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
            "-U", "postgres"]
    try:
        server = subprocess.run(psql + ["-At", "-c", "SHOW server_version"], check=True,
                                capture_output=True, text=True).stdout.strip()
        print(f"input: {ROWS:,} rows, {os.path.getsize(csv) / 1e6:.1f} MB; PostgreSQL {server}; "
              f"{os.cpu_count()} cores; rounds: {args.rounds}")
        peer, ours, rss = [], [], []
        for r in range(args.rounds):
            db = f"bench_{r}"
            subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {db}", "-c", f"CREATE DATABASE {db}"],
                           check=True)
            subprocess.run(psql + ["-d", db, "-c", TABLE], check=True)
            start = time.perf_counter()
            subprocess.run(psql + ["-d", db, "-c", "SET datestyle = 'ISO, DMY'", "-c",
                                   f"\\copy peer FROM '{csv}' WITH (FORMAT csv, HEADER true)"],
                           check=True)
            peer.append(time.perf_counter() - start)

            dd = os.path.join(work, "data")
            shutil.rmtree(dd, ignore_errors=True)
            os.makedirs(os.path.join(dd, "inbox"))
            os.link(csv, os.path.join(dd, "inbox", "bank_transactions.csv"))
            url = f"postgres://postgres@127.0.0.1:{port}/{db}?sslmode=disable"
            wall, peak = timed([BIN, "--data-dir", dd, "-q", "run"],
                               env=dict(os.environ, BANKPIPE_WAREHOUSE_URL=url))
            ours.append(wall)
            rss.append(peak)
            n = subprocess.run(psql + ["-d", db, "-At", "-c", "SELECT COUNT(*) FROM transactions"],
                               check=True, capture_output=True, text=True).stdout.strip()
            assert int(n) == ROWS, n
        mp, mo = statistics.median(peer), statistics.median(ours)
        print(f"psql \\copy (typed table + PK) : {mp:6.2f} s  {ROWS / mp:10,.0f} rows/s")
        print(f"bankpipe run                  : {mo:6.2f} s  {ROWS / mo:10,.0f} rows/s"
              f"  peak RSS {max(rss) / 1024:.0f} MB")
        print(f"ratio (psql time / bankpipe time): {mp / mo:.2f}x")
        print(f"all rounds: psql {['%.2f' % x for x in peer]} bankpipe {['%.2f' % x for x in ours]}")
        if args.monthly:
            monthly(args, work, psql, port)
    finally:
        subprocess.run(as_pg([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(cluster, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def monthly(args, work, psql, port):
    """Three monthly files: psql sequential / concurrent vs bankpipe --parallel 1 / 3."""
    per = ROWS // 3
    files = []
    for i, month in enumerate(["2016-08", "2016-09", "2016-10"]):
        f = os.path.join(work, f"{month}.csv")
        if not os.path.exists(f):
            subprocess.run([BIN, "generate", "--rows", str(per), "--out", f, "--seed", str(11 + i),
                            "--defects", "0", "--month", month, "--first-id", str(1 + i * per)],
                           check=True, stderr=subprocess.DEVNULL)
        os.chmod(f, 0o644)
        files.append(f)
    print(f"\n== three monthly files, {per:,} rows each ({3 * per:,} rows)")
    results = {"psql sequential": [], "psql 3 sessions": [], "bankpipe --parallel 1": [],
               "bankpipe --parallel 3": []}

    def fresh(db, peer_table):
        subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {db}", "-c", f"CREATE DATABASE {db}"],
                       check=True)
        if peer_table:
            subprocess.run(psql + ["-d", db, "-c", TABLE], check=True)

    def copy_cmd(db, f):
        return psql + ["-d", db, "-c", "SET datestyle = 'ISO, DMY'", "-c",
                       f"\\copy peer FROM '{f}' WITH (FORMAT csv, HEADER true)"]

    for r in range(args.rounds):
        db = f"monthly_{r}"
        fresh(db, True)
        start = time.perf_counter()
        for f in files:
            subprocess.run(copy_cmd(db, f), check=True)
        results["psql sequential"].append(time.perf_counter() - start)

        fresh(db, True)
        start = time.perf_counter()
        procs = [subprocess.Popen(copy_cmd(db, f)) for f in files]
        assert all(p.wait() == 0 for p in procs)
        results["psql 3 sessions"].append(time.perf_counter() - start)

        for parallel in ("1", "3"):
            fresh(db, False)
            dd = os.path.join(work, "data-monthly")
            shutil.rmtree(dd, ignore_errors=True)
            os.makedirs(os.path.join(dd, "inbox"))
            for f in files:
                os.link(f, os.path.join(dd, "inbox", os.path.basename(f)))
            url = f"postgres://postgres@127.0.0.1:{port}/{db}?sslmode=disable"
            wall, _ = timed([BIN, "--data-dir", dd, "-q", "run", "--parallel", parallel],
                            env=dict(os.environ, BANKPIPE_WAREHOUSE_URL=url))
            results[f"bankpipe --parallel {parallel}"].append(wall)
            n = subprocess.run(psql + ["-d", db, "-At", "-c", "SELECT COUNT(*) FROM transactions"],
                               check=True, capture_output=True, text=True).stdout.strip()
            assert int(n) == 3 * per, n
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in med.items():
        print(f"{k:<22}: {v:6.2f} s  {3 * per / v:10,.0f} rows/s")
    print(f"ratio psql sequential / bankpipe --parallel 1: "
          f"{med['psql sequential'] / med['bankpipe --parallel 1']:.2f}x")
    print(f"ratio psql sequential / bankpipe --parallel 3: "
          f"{med['psql sequential'] / med['bankpipe --parallel 3']:.2f}x")
    print(f"ratio psql 3 sessions / bankpipe --parallel 3: "
          f"{med['psql 3 sessions'] / med['bankpipe --parallel 3']:.2f}x")
    print("all rounds: " + "; ".join(f"{k} {['%.2f' % x for x in v]}" for k, v in results.items()))


if __name__ == "__main__":
    main()
