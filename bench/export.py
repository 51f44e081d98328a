#!/usr/bin/env python3
"""Benchmark of issue #10, measured in one run on one machine: `bankpipe export` of
2016Q3 from the demo-size warehouse (1,048,567 generated rows over August-October 2016),
a first export (fresh copy of the warehouse, fresh folder), whole process, against a
whole Python process computing the same three tables with Polars from the same rows.

The peer reads the warehouse's rows from a Parquet dump of `transactions` (written once,
untimed: Polars cannot read the SQLite file by itself without extra packages), computes
the point-in-time history by sorting and shifting within customers (no `over()` windows
for the running sums), the customer and daily tables by group-by, pseudonymises ids with
Python's hmac (Polars has no HMAC), and writes three zstd Parquet files. It skips what
bankpipe does besides: control totals, reconciliation, drift, manifest, quarter tables.

Rounds alternate the contenders; medians are reported. `--bin PATH` (repeatable)
measures the given bankpipe binaries instead of building `target/release/bankpipe`, each
in every round (to compare a change against its base on a busy machine: the load moves
between rounds, not within one).
Usage: python3 bench/export.py [--rounds N] [--keep DIR] [--bin PATH]...
"""

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bankpipe")
KEY = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="  # bytes 1..32, base64

POLARS = r'''
import base64, hashlib, hmac, sys, polars as pl
rows, out = sys.argv[1], sys.argv[2]
key = base64.b64decode(sys.argv[3])
start, end, prev_start = "2016-07-01 00:00:00", "2016-10-01 00:00:00", "2016-04-01 00:00:00"
last_day = pl.date(2016, 9, 30)
df = (pl.read_parquet(rows)
      .filter(pl.col("transaction_at") < end)
      .with_columns(pl.col("transaction_at").str.to_datetime("%Y-%m-%d %H:%M:%S"),
                    pl.col("customer_dob").str.to_date("%Y-%m-%d"),
                    (pl.col("amount").str.replace(".", "", literal=True).cast(pl.Int64)).alias("minor"),
                    pl.col("account_balance").cast(pl.Float64))
      .sort(["customer_id", "transaction_at", "transaction_id"]))
c = pl.col("customer_id")
same = c == c.shift(1)
df = df.with_columns(
    pl.int_range(pl.len()).alias("i"),
    pl.when(same).then(None).otherwise(pl.int_range(pl.len())).forward_fill().alias("first_i"),
    pl.when(same).then((pl.col("transaction_at") - pl.col("transaction_at").shift(1)).dt.total_seconds()).alias("seconds_since_prev"),
    (pl.col("minor").cum_sum() - pl.col("minor")).alias("before"),
)
df = df.with_columns(
    (pl.col("i") - pl.col("first_i")).alias("prior_count"),
    (pl.col("before") - pl.when(same).then(None).otherwise(pl.col("before")).forward_fill()).alias("prior_sum"),
    pl.struct("customer_id", "location").is_first_distinct().alias("loc_first"),
)
q = df.filter(pl.col("transaction_at") >= pl.lit(start).str.to_datetime())
q = q.with_columns(
    (pl.col("minor") / 100).alias("amount"),
    pl.col("transaction_at").dt.hour().cast(pl.Int32).alias("hour"),
    (pl.col("transaction_at").dt.weekday() - 1).cast(pl.Int32).alias("weekday"),
    pl.when(pl.col("prior_count") > 0).then(pl.col("prior_sum") / pl.col("prior_count") / 100).alias("prior_amount_mean"),
    pl.when(pl.col("location").is_not_null() & (pl.col("prior_count") > 0)).then(pl.col("loc_first")).alias("location_is_new"),
)
q = q.with_columns(
    (pl.col("weekday") >= 5).alias("is_weekend"),
    pl.when(pl.col("prior_amount_mean") != 0).then(pl.col("amount") / pl.col("prior_amount_mean")).alias("amount_to_prior_mean"),
    pl.when(pl.col("account_balance") != 0).then(pl.col("amount") / pl.col("account_balance")).alias("amount_to_balance"),
    ((pl.col("transaction_at").dt.date() - pl.col("customer_dob")).dt.total_days() // 365.2425).cast(pl.Int32).alias("age_years"),
)
def keys(kind, ids):
    return [hmac.new(key, (kind + ":" + i).encode(), hashlib.sha256).hexdigest()[:32] for i in ids]
cust = q.select(pl.col("customer_id").unique())
cust = cust.with_columns(pl.Series("customer_key", keys("customer", cust["customer_id"].to_list())))
q = q.join(cust, on="customer_id").with_columns(pl.Series("transaction_key", keys("transaction", q["transaction_id"].to_list())))
q.select("transaction_key", "customer_key", "transaction_at", "amount", "hour", "weekday", "is_weekend", "age_years",
         "gender", "location", "account_balance", "prior_count", "prior_amount_mean", "seconds_since_prev",
         "amount_to_prior_mean", "amount_to_balance", "location_is_new"
         ).sort("transaction_at", "transaction_key").write_parquet(f"{out}/transactions.parquet", compression="zstd")
first = df.group_by("customer_id").agg(pl.col("transaction_at").min().alias("first_ever"))
loc = (q.filter(pl.col("location").is_not_null()).group_by("customer_id", "location")
       .agg(pl.len().alias("n"), pl.col("i").max().alias("last"))
       .sort("n", "last", descending=True).group_by("customer_id").agg(pl.col("location").first().alias("home_location")))
customers = (q.group_by("customer_id").agg(
        pl.col("customer_key").first(), pl.len().alias("txn_count"), (pl.col("minor").sum() / 100).alias("amount_sum"),
        pl.col("amount").mean().alias("amount_mean"), pl.col("amount").min().alias("amount_min"),
        pl.col("amount").max().alias("amount_max"), pl.col("amount").std().alias("amount_std"),
        pl.col("transaction_at").min().alias("first_txn_at"), pl.col("transaction_at").max().alias("last_txn_at"),
        pl.col("transaction_at").dt.date().n_unique().cast(pl.Int32).alias("active_days"),
        pl.col("location").drop_nulls().n_unique().cast(pl.Int32).alias("distinct_locations"),
        pl.col("gender").drop_nulls().last().alias("gender"), pl.col("customer_dob").drop_nulls().last().alias("dob"),
        pl.col("account_balance").drop_nulls().last().alias("balance_last"),
        (pl.col("hour") < 6).mean().alias("night_share"), pl.col("is_weekend").mean().alias("weekend_share"),
        pl.col("prior_count").min().alias("prior_txn_count"))
    .join(first, on="customer_id").join(loc, on="customer_id", how="left")
    .with_columns(pl.lit("2016Q3").alias("quarter"),
                  (last_day - pl.col("last_txn_at").dt.date()).dt.total_days().cast(pl.Int32).alias("recency_days"),
                  (last_day - pl.col("first_ever").dt.date()).dt.total_days().cast(pl.Int32).alias("tenure_days"),
                  ((last_day - pl.col("dob")).dt.total_days() // 365.2425).cast(pl.Int32).alias("age_years"))
    .drop("customer_id", "first_ever", "dob").sort("customer_key"))
customers.write_parquet(f"{out}/customers.parquet", compression="zstd")
firsts = first.filter(pl.col("first_ever") >= pl.lit(start).str.to_datetime()).group_by(pl.col("first_ever").dt.date().alias("date")).agg(pl.len().alias("new_customers"))
daily = (pl.DataFrame({"date": pl.date_range(pl.date(2016, 7, 1), last_day, eager=True)})
         .join(q.group_by(pl.col("transaction_at").dt.date().alias("date")).agg(
               pl.len().alias("txn_count"), (pl.col("minor").sum() / 100).alias("amount_sum"),
               pl.col("amount").mean().alias("amount_mean"), pl.col("amount").quantile(0.5, "linear").alias("amount_p50"),
               pl.col("amount").quantile(0.95, "linear").alias("amount_p95"),
               pl.col("customer_id").n_unique().alias("unique_customers")), on="date", how="left")
         .join(firsts, on="date", how="left").sort("date"))
daily.write_parquet(f"{out}/daily.parquet", compression="zstd")
print(q.height, customers.height, daily.height)
'''


def timed(cmd, **kw):
    """Wall seconds and peak RSS (KiB) of a whole process, via GNU time."""
    with tempfile.NamedTemporaryFile("r") as t:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name] + cmd, check=True,
                       stdout=subprocess.DEVNULL, **kw)
        wall = time.perf_counter() - start
        return wall, int(t.read().strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", help="work in this folder and keep it")
    ap.add_argument("--bin", action="append", help="a bankpipe binary to measure (repeatable)")
    args = ap.parse_args()
    bins = [os.path.abspath(b) for b in args.bin] if args.bin else [BIN]
    try:
        import polars  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        sys.exit("needs polars and pyarrow: pip install polars pyarrow")
    if not args.bin:
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    work = args.keep or tempfile.mkdtemp(prefix="bankpipe-bench-export-")
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, BANKPIPE_PSEUDONYM_KEY=KEY, BANKPIPE_LOG="warn")
    env.pop("BANKPIPE_EXPORT_URL", None)
    demo = os.path.join(work, "bankpipe-demo")
    if not os.path.exists(os.path.join(demo, "warehouse.db")):
        subprocess.run([bins[0], "demo"], cwd=work, check=True, env=env, stdout=subprocess.DEVNULL)
    rows = os.path.join(work, "transactions.parquet")
    if not os.path.exists(rows):
        import pyarrow as pa
        import pyarrow.parquet as pq
        con = sqlite3.connect(os.path.join(demo, "warehouse.db"))
        cols = ["transaction_id", "customer_id", "customer_dob", "gender", "location",
                "account_balance", "transaction_at", "amount"]
        data = list(zip(*con.execute(f"SELECT {', '.join(cols)} FROM transactions")))
        pq.write_table(pa.table({c: list(v) for c, v in zip(cols, data)}), rows)
    script = os.path.join(work, "polars_export.py")
    with open(script, "w") as f:
        f.write(POLARS)
    out = os.path.join(work, "polars-out")
    os.makedirs(out, exist_ok=True)
    # Each bankpipe round exports a fresh copy of the warehouse as it was before any
    # export (copied untimed), to a fresh folder: a quarter's first export, the normal case.
    pristine = os.path.join(work, "pristine.db")
    if not os.path.exists(pristine):
        shutil.copy(os.path.join(demo, "warehouse.db"), pristine)
        con = sqlite3.connect(pristine)
        con.executescript("DELETE FROM quarter_customers; DELETE FROM quarter_daily; "
                          "DELETE FROM exports; VACUUM;")
        con.close()
    bp, pl_ = {b: [] for b in bins}, []
    for r in range(args.rounds):
        line = f"round {r + 1}:"
        for b in bins:
            db = os.path.join(work, "round.db")
            shutil.copy(pristine, db)
            dest = os.path.join(work, "bankpipe-out")
            shutil.rmtree(dest, ignore_errors=True)
            round_env = dict(env, BANKPIPE_WAREHOUSE_URL="sqlite://" + db)
            bp[b].append(timed([b, "--data-dir", demo, "export", "--quarter", "2016Q3",
                                "--allow-partial", "--out", dest, "-q"], env=round_env, cwd=work))
            line += f" {os.path.basename(b)} {bp[b][-1][0]:.2f} s ({bp[b][-1][1] // 1024} MB),"
        pl_.append(timed([sys.executable, script, rows, out, KEY], cwd=work))
        print(f"{line} polars {pl_[-1][0]:.2f} s ({pl_[-1][1] // 1024} MB)", flush=True)
    p = statistics.median(w for w, _ in pl_)
    for b in bins:
        m = statistics.median(w for w, _ in bp[b])
        print(f"median: {os.path.basename(b)} export {m:.2f} s "
              f"(peak {max(k for _, k in bp[b]) // 1024} MB), "
              f"polars {p:.2f} s (peak {max(k for _, k in pl_) // 1024} MB): "
              f"bankpipe is {p / m:.2f}x Polars' speed")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
