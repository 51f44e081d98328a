#!/usr/bin/env python3
"""Benchmark of encryption at rest (issue #4), measured in one run on one machine: the
same 1,048,567-row Kaggle-layout file

  * `bankpipe run` into an empty SQLite warehouse with a folder lake, stored in clear,
    against the same run with BANKPIPE_MASTER_KEY set (chunked AES-256-GCM);
  * `bankpipe verify` of the landed object, in clear against encrypted (decrypt +
    authenticate + SHA-256), and `sha256sum` of the file as the floor of any verify.

Rounds alternate; medians are reported. Usage:
python3 bench/lake_encryption.py [--rounds N] [--keep DIR]
"""

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import tempfile
import time

ROWS = 1_048_567
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bankpipe")


def timed(cmd, env=None):
    """Wall seconds and peak RSS (KiB) of a whole process, via GNU time."""
    with tempfile.NamedTemporaryFile("r") as t:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name] + cmd, check=True,
                       stdout=subprocess.DEVNULL, env=env)
        wall = time.perf_counter() - start
        return wall, int(t.read().strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = args.keep or tempfile.mkdtemp(prefix="bankpipe-bench-enc-")
    os.makedirs(work, exist_ok=True)
    csv = os.path.join(work, "bank_transactions.csv")
    if not os.path.exists(csv):
        subprocess.run([BIN, "generate", "--rows", str(ROWS), "--out", csv, "--seed", "7",
                        "--defects", "0"], check=True, stderr=subprocess.DEVNULL)
    print(f"input: {ROWS:,} rows, {os.path.getsize(csv) / 1e6:.1f} MB; "
          f"machine: {os.cpu_count()} cores; rounds: {args.rounds}")

    clear_env = {k: v for k, v in os.environ.items() if not k.startswith("BANKPIPE_")}
    enc_env = dict(clear_env, BANKPIPE_MASTER_KEY=base64.b64encode(os.urandom(32)).decode())
    runs = {"clear": [], "encrypted": []}
    verifies = {"clear": [], "encrypted": []}
    rss = {"clear": [], "encrypted": []}
    sums = []
    for _ in range(args.rounds):
        for kind, env in (("clear", clear_env), ("encrypted", enc_env)):
            data = os.path.join(work, "data-" + kind)
            shutil.rmtree(data, ignore_errors=True)
            os.makedirs(os.path.join(data, "inbox"))
            os.link(csv, os.path.join(data, "inbox", "bank_transactions.csv"))
            wall, peak = timed([BIN, "--data-dir", data, "-q", "run"], env)
            runs[kind].append(wall)
            rss[kind].append(peak)
            verifies[kind].append(timed([BIN, "--data-dir", data, "-q", "verify"], env)[0])
        start = time.perf_counter()
        subprocess.run(["sha256sum", csv], check=True, stdout=subprocess.DEVNULL)
        sums.append(time.perf_counter() - start)

    med = {k: statistics.median(v) for k, v in runs.items()}
    vmed = {k: statistics.median(v) for k, v in verifies.items()}
    print("\n== run (land + validate + load), median of rounds")
    for k in ("clear", "encrypted"):
        print(f"{k:<10}: {med[k]:6.2f} s  {ROWS / med[k]:10,.0f} rows/s  peak RSS {max(rss[k]) / 1024:.0f} MB")
    print(f"encrypted / clear time: {med['encrypted'] / med['clear']:.2f}x")
    print("\n== verify (read back the landed object), median of rounds")
    print(f"sha256sum of the file : {statistics.median(sums):6.2f} s")
    for k in ("clear", "encrypted"):
        print(f"bankpipe verify {k:<10}: {vmed[k]:6.2f} s")
    print(f"encrypted / clear time: {vmed['encrypted'] / vmed['clear']:.2f}x")
    print(f"all rounds: {runs} verify {verifies}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
