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

With --realistic (issue #8), the files users actually send: the demo's three monthly
files with their defects (`bankpipe generate --defects 0.004`, seeds and ids as `bankpipe
demo` makes them: in-file duplicate ids, conflicting rows, bad dates...) plus a fourth
file whose first 10% repeats the last 10% of the October file (identical rows: a resent
overlap), so every file goes through the merge path. Against: psql `\\copy` of the same
four files, each line whole into a one-column TEXT table (the defects stop `\\copy` into a
typed table, and even into nine TEXT columns), and `bankpipe run` of four clean files of the same sizes
(the optimistic path), to show what the merge path costs per row.

Usage: python3 bench/ingest_postgres.py [--rounds N] [--monthly] [--realistic] [--keep DIR]
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
    ap.add_argument("--realistic", action="store_true",
                    help="also the demo's files with defects plus a 10%% overlap (merge path)")
    ap.add_argument("--only-realistic", action="store_true",
                    help="skip the single-file comparison (with --realistic)")
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
        for r in range(0 if args.only_realistic else args.rounds):
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
        if peer:
            mp, mo = statistics.median(peer), statistics.median(ours)
            print(f"psql \\copy (typed table + PK) : {mp:6.2f} s  {ROWS / mp:10,.0f} rows/s")
            print(f"bankpipe run                  : {mo:6.2f} s  {ROWS / mo:10,.0f} rows/s"
                  f"  peak RSS {max(rss) / 1024:.0f} MB")
            print(f"ratio (psql time / bankpipe time): {mp / mo:.2f}x")
            print(f"all rounds: psql {['%.2f' % x for x in peer]} bankpipe {['%.2f' % x for x in ours]}")
        if args.monthly:
            monthly(args, work, psql, port)
        if args.realistic:
            realistic(args, work, psql, port)
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


# The defects (rows with a wrong field count, broken quotes) stop psql's \\copy even into
# nine TEXT columns, so the peer lands each line whole in one TEXT column (a CSV with
# delimiter and quote characters the files never contain): raw ingest, nothing checked.
TEXT_TABLE = """DROP TABLE IF EXISTS peer_text; CREATE TABLE peer_text (line TEXT);"""
TEXT_COPY = "WITH (FORMAT csv, HEADER true, DELIMITER E'\\x01', QUOTE E'\\x02')"


def realistic(args, work, psql, port):
    """The demo's three files with defects + a 10% overlap: psql \\copy (TEXT, no key) vs
    bankpipe (merge path), and bankpipe on clean files of the same sizes (optimistic path)."""
    per = ROWS // 3
    months = [("2016-08", 349_523), ("2016-09", 349_522), ("2016-10", 349_522)]
    real, clean, first = [], [], 1
    for month, rows in months:
        for defects, out in (("0.004", real), ("0", clean)):
            f = os.path.join(work, f"{month}-{'defects' if defects != '0' else 'clean'}.csv")
            if not os.path.exists(f):
                seed = 2016 * 100 + int(month[-2:])
                subprocess.run([BIN, "generate", "--rows", str(rows), "--out", f, "--seed", str(seed),
                                "--defects", defects, "--month", month, "--first-id", str(first)],
                               check=True, stderr=subprocess.DEVNULL)
            os.chmod(f, 0o644)
            out.append(f)
        first += rows
    # The fourth file: the last 10% of October again (identical rows), then new rows.
    overlap = os.path.join(work, "2016-11-overlap.csv")
    tail_rows = per // 10
    fresh_rows = per - tail_rows
    nov_clean = os.path.join(work, "2016-11-clean.csv")
    for defects, f, rows in (("0.004", overlap + ".new", fresh_rows), ("0", nov_clean, per)):
        if not os.path.exists(f):
            subprocess.run([BIN, "generate", "--rows", str(rows), "--out", f, "--seed", "201611",
                            "--defects", defects, "--month", "2016-11", "--first-id", str(first)],
                           check=True, stderr=subprocess.DEVNULL)
    if not os.path.exists(overlap):
        with open(real[2]) as oct_file:
            oct_lines = oct_file.readlines()
        with open(overlap + ".new") as new_file:
            new_lines = new_file.readlines()
        with open(overlap, "w") as out:
            out.write(new_lines[0])
            out.writelines(oct_lines[-tail_rows:])
            out.writelines(new_lines[1:])
    for f in (overlap, nov_clean):
        os.chmod(f, 0o644)
    real.append(overlap)
    clean.append(nov_clean)
    total = sum(sum(1 for _ in open(f)) - 1 for f in real)
    clean_total = sum(sum(1 for _ in open(f)) - 1 for f in clean)
    print(f"\n== realistic: the demo's 3 files with defects + a file overlapping 10% of the last "
          f"({total:,} rows); clean files of the same sizes ({clean_total:,} rows)")
    PEER = "psql \\copy (lines as TEXT)"
    results = {PEER: [], "bankpipe run, realistic": [],
               "bankpipe run, clean": []}

    def fresh(db):
        subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {db}", "-c", f"CREATE DATABASE {db}"],
                       check=True)

    def ours(db, inputs, key):
        dd = os.path.join(work, "data-realistic")
        shutil.rmtree(dd, ignore_errors=True)
        os.makedirs(os.path.join(dd, "inbox"))
        for i, f in enumerate(inputs):  # names keep the order: the overlap comes last
            os.link(f, os.path.join(dd, "inbox", f"{i}-{os.path.basename(f)}"))
        url = f"postgres://postgres@127.0.0.1:{port}/{db}?sslmode=disable"
        start = time.perf_counter()
        # The demo's defects stay under the default reject share; allow more anyway so a
        # timing never depends on a file failing.
        subprocess.run([BIN, "--data-dir", dd, "-q", "run", "--max-reject-share", "0.5"],
                       env=dict(os.environ, BANKPIPE_WAREHOUSE_URL=url), check=True,
                       stdout=subprocess.DEVNULL)
        results[key].append(time.perf_counter() - start)
        return subprocess.run(psql + ["-d", db, "-At", "-c",
                                      "SELECT SUM(rows_read), SUM(rows_loaded), SUM(rows_duplicate), "
                                      "SUM(rows_rejected) FROM files"],
                              check=True, capture_output=True, text=True).stdout.strip()

    counts = None
    for r in range(args.rounds):
        db = f"realistic_{r}"
        fresh(db)
        subprocess.run(psql + ["-d", db, "-c", TEXT_TABLE], check=True)
        start = time.perf_counter()
        for f in real:
            subprocess.run(psql + ["-d", db, "-c", f"\\copy peer_text FROM '{f}' {TEXT_COPY}"],
                           check=True)
        results[PEER].append(time.perf_counter() - start)
        fresh(db)
        counts = ours(db, real, "bankpipe run, realistic")
        fresh(db)
        ours(db, clean, "bankpipe run, clean")
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in med.items():
        n = clean_total if k.endswith("clean") else total
        print(f"{k:<28}: {v:6.2f} s  {n / v:10,.0f} rows/s")
    print(f"bankpipe realistic: read|loaded|duplicate|rejected = {counts}")
    print(f"ratio psql / bankpipe realistic: "
          f"{med[PEER] / med['bankpipe run, realistic']:.2f}x")
    per_row = (med["bankpipe run, realistic"] / total) / (med["bankpipe run, clean"] / clean_total)
    print(f"bankpipe per-row cost, realistic (merge path) / clean (optimistic path): {per_row:.2f}x")
    print("all rounds: " + "; ".join(f"{k} {['%.2f' % x for x in v]}" for k, v in results.items()))


if __name__ == "__main__":
    main()
