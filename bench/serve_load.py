#!/usr/bin/env python3
"""Benchmark of issue #11: `bankpipe serve` under load (wrk) and its resident memory.

A SQLite data folder is made the way a user makes one: `bankpipe demo` (1,048,567 rows
in three monthly files, with their rejects), then `--runs` more runs of one generated
file each (5,000 rows, 2% defects), so that `/api/runs` answers a full page of real runs
with their counts. Then `bankpipe serve` (release build) is measured:

1. without a `[schedule]`: VmRSS/VmHWM/threads 2 s after start and after `--idle`
   seconds idle; `wrk --latency` for `--duration` seconds with `--connections`
   connections on `/health`, then on `/api/runs` (latency percentiles, requests/s,
   non-2xx answers and socket errors, which must be 0); memory after the load and after
   another minute idle;
2. with a `[schedule]` (`ingest` every minute, `verify` every two): memory 2 s after
   start and after `--idle` seconds, the jobs having run meanwhile.

Prints the load average (1 min) before each step: the machine is shared.

Needs `wrk` (Debian package `wrk`). Usage:
  python3 bench/serve_load.py [--duration 30] [--connections 50] [--threads 2]
                              [--idle 180] [--runs 60] [--keep DIR]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bankpipe")


def bankpipe(work, *args):
    subprocess.run([BIN, "--data-dir", work, "-q", *args], check=True,
                   stdout=subprocess.DEVNULL)


def make_warehouse(work, runs):
    demo = os.path.join(work, "demo")
    subprocess.run([BIN, "-q", "demo", "--dir", demo], check=True, stdout=subprocess.DEVNULL)
    inbox = os.path.join(demo, "inbox")
    for n in range(runs):
        subprocess.run([BIN, "-q", "generate", "--rows", "5000", "--defects", "0.02",
                        "--first-id", str(10_000_000 + n * 10_000), "--seed", str(n),
                        "--out", os.path.join(inbox, f"extra-{n:03}.csv")],
                       check=True, stdout=subprocess.DEVNULL)
        bankpipe(demo, "run")
    return demo


def memory(pid):
    status = open(f"/proc/{pid}/status").read()
    field = lambda name: int(re.search(rf"^{name}:\s+(\d+)", status, re.M).group(1))
    return {"rss_mib": field("VmRSS") / 1024, "hwm_mib": field("VmHWM") / 1024,
            "threads": field("Threads")}


def show_memory(label, pid):
    m = memory(pid)
    print(f"  {label:<38} VmRSS {m['rss_mib']:6.1f} MiB   VmHWM {m['hwm_mib']:6.1f} MiB"
          f"   threads {m['threads']}")
    return m


def start(data_dir, config=None):
    log = open(os.path.join(data_dir, f"serve-{time.time_ns()}.log"), "w+")
    args = [BIN, "--data-dir", data_dir, "--log-format", "json"]
    if config:
        args += ["--config", config]
    serve = subprocess.Popen(args + ["serve", "--listen", "127.0.0.1:0"], stderr=log,
                             stdout=subprocess.DEVNULL,
                             env=dict(os.environ, BANKPIPE_LOG="info"))
    for _ in range(300):
        time.sleep(0.1)
        log.seek(0)
        for line in log:
            v = json.loads(line)
            if v["fields"].get("message") == "Serving.":
                return serve, v["fields"]["addr"], log
        if serve.poll() is not None:
            break
    log.seek(0)
    raise SystemExit(f"serve did not start:\n{log.read()}")


def load():
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def wrk(addr, path, args):
    out = subprocess.run(["wrk", "--latency", "-t", str(args.threads), "-c",
                          str(args.connections), "-d", f"{args.duration}s",
                          f"http://{addr}{path}"],
                         check=True, capture_output=True, text=True).stdout
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(x) for x in sock.groups()) if sock else 0
    print(f"  wrk {path:<10} {total} requests, {rps:.0f}/s, p50 {pct['50']}, p75 {pct['75']},"
          f" p90 {pct['90']}, p99 {pct['99']}; non-2xx {int(non2xx.group(1)) if non2xx else 0},"
          f" socket errors {errors}")
    return out


def stop(serve):
    serve.terminate()
    serve.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--idle", type=int, default=180)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--keep")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    work = args.keep or tempfile.mkdtemp(prefix="bench-serve-load-")
    try:
        os.makedirs(work, exist_ok=True)
        demo = os.path.join(work, "demo")
        if not os.path.exists(os.path.join(demo, "warehouse.db")):
            t = time.perf_counter()
            make_warehouse(work, args.runs)
            print(f"warehouse: bankpipe demo + {args.runs} runs of one 5,000-row file"
                  f" ({time.perf_counter() - t:.0f} s)")
        print(f"binary: {BIN}")

        print(f"without [schedule] ({load()})")
        serve, addr, _ = start(demo)
        try:
            time.sleep(2)
            show_memory("2 s after start", serve.pid)
            page = json.load(urllib.request.urlopen(f"http://{addr}/api/runs"))
            print(f"  /api/runs answers {len(page['runs'])} runs,"
                  f" {len(json.dumps(page))} bytes of JSON")
            time.sleep(args.idle)
            show_memory(f"after {args.idle} s idle", serve.pid)
            for path in ["/health", "/api/runs"]:
                print(f"  ({load()})")
                wrk(addr, path, args)
                show_memory(f"after wrk {path}", serve.pid)
            time.sleep(60)
            show_memory("after the load and 60 s idle", serve.pid)
        finally:
            stop(serve)

        config = os.path.join(work, "bankpipe.toml")
        with open(config, "w") as f:
            f.write('[schedule]\ningest = "* * * * *"\nverify = "*/2 * * * *"\n')
        print(f"with [schedule] ingest every minute, verify every two ({load()})")
        serve, addr, log = start(demo, config)
        try:
            time.sleep(2)
            show_memory("2 s after start", serve.pid)
            time.sleep(args.idle)
            show_memory(f"after {args.idle} s (jobs ran)", serve.pid)
            log.seek(0)
            ran = sum(1 for line in log if "Job finished." in line)
            print(f"  jobs finished meanwhile: {ran}")
        finally:
            stop(serve)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
