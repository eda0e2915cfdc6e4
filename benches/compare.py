#!/usr/bin/env python3
"""Ask DuckDB and polars the questions of `benches/lake.rs` over the same Parquet files.

Usage (after `cargo bench --workspace --bench lake` has built the lake):

    /work/main/.venv/bin/python benches/compare.py [--lake target/bench-lake-10m]

Questions (the keys are drawn with the same splitmix64 streams as the Rust bench, so both
sides ask exactly the same things):

  get_1_all       SELECT * ... WHERE _m1key IN (k)              one random key, all columns
  get_100_all     SELECT * ... WHERE _m1key IN (k1, ..., k100)  100 random keys, all columns
                  (DuckDB: IN (SELECT unnest([k1, ..., k100])), its fastest form)
  range_100k_3    SELECT _m1key, country, age, score ... WHERE _m1key >= a AND _m1key < a+100000
  range_100k_all  SELECT * ... WHERE _m1key >= a AND _m1key < a+100000

Each question is warmed up, then timed call by call; the median (p50) and p99 in microseconds
are printed and written as JSON to target/bench-results/compare.json. If
target/bench-results/m1-lake.json exists (written by the Rust bench), a table with m1's figures
and the ratios engine / m1 is printed too.

Each engine runs in its best form:
  * DuckDB: one persistent connection, parquet_metadata_cache on (footers decoded once),
    hive partitioning off (so `SELECT *` has the same columns as m1), all cores.
  * polars: scan_parquet (lazy) with the filter and projection pushed down into the scan,
    hive partitioning off, all cores.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

M64 = (1 << 64) - 1
RANGE_KEYS = 100_000
RANGE_PROPS = ["country", "age", "score"]
STREAM_GET1, STREAM_GET100, STREAM_RANGE = 1, 2, 3


def mix(z):
    """splitmix64, as in benches/lake.rs."""
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def key(stream, n, rows):
    return mix((stream * 1_000_003 + n) & M64) % rows


def get1_keys(n, rows):
    return [key(STREAM_GET1, n, rows)]


def get100_keys(n, rows):
    return [key(STREAM_GET100, n * 100 + j, rows) for j in range(100)]


def range_start(n, rows):
    return key(STREAM_RANGE, n, max(rows - RANGE_KEYS, 1))


def measure(fn, warmup, reps, budget_s):
    """Warm up, then time `fn(n)` call by call for `reps` calls or until `budget_s` runs out
    (at least 10 calls). Warm-up and measured calls use the same key indices as the Rust bench."""
    for i in range(warmup):
        fn(1_000_000 + i)
    times = []
    deadline = time.perf_counter() + budget_s
    for i in range(reps):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1e6)
        if len(times) >= 10 and time.perf_counter() > deadline:
            break
    times.sort()

    def pct(p):
        return times[min(max(math.ceil(len(times) * p), 1), len(times)) - 1]

    return {
        "reps": len(times),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "mean_us": statistics.fmean(times),
        "min_us": times[0],
    }


def check(n, want, what):
    if n != want:
        sys.exit(f"{what}: got {n} rows, expected {want}")


def run_duckdb(glob, rows, args):
    import duckdb

    con = duckdb.connect()
    con.execute("SET parquet_metadata_cache = true").fetchall()
    src = f"read_parquet('{glob}', hive_partitioning = false)"

    def in_list(keys):
        return ", ".join(str(k) for k in keys)

    def get(keys):
        if len(keys) == 1:
            where = f"_m1key IN ({keys[0]})"
        else:
            # DuckDB prunes far better with a semi join than with a long IN list (~3 s vs ~7-11 s
            # for 100 keys over 10M records), so that is its best form here.
            where = f"_m1key IN (SELECT unnest([{in_list(keys)}]))"
        return con.sql(f"SELECT * FROM {src} WHERE {where}").to_arrow_table().num_rows

    def rng(start, cols):
        sel = ", ".join(["_m1key"] + cols) if cols else "*"
        out = con.sql(
            f"SELECT {sel} FROM {src} WHERE _m1key >= {start} AND _m1key < {start + RANGE_KEYS}"
        ).to_arrow_table()
        return out.num_rows

    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    return questions(get, rng, rows, args) | {
        "version": duckdb.__version__,
        "config": "persistent connection, parquet_metadata_cache=true, hive_partitioning=false, "
        f"threads={threads}; 100 keys as a semi join on unnest([...])",
    }


def run_polars(glob, rows, args):
    import polars as pl

    lf = pl.scan_parquet(glob, hive_partitioning=False)

    def get(keys):
        return lf.filter(pl.col("_m1key").is_in(keys)).collect().height

    def rng(start, cols):
        q = lf.filter((pl.col("_m1key") >= start) & (pl.col("_m1key") < start + RANGE_KEYS))
        if cols:
            q = q.select(["_m1key"] + cols)
        return q.collect().height

    return questions(get, rng, rows, args) | {
        "version": pl.__version__,
        "config": f"scan_parquet + filter/projection pushdown, hive_partitioning=False, "
        f"threads={pl.thread_pool_size()}",
    }


def questions(get, rng, rows, args):
    s = args.scale
    out = {}

    def g1(n):
        check(get(get1_keys(n, rows)), 1, "get_1_all")

    def g100(n):
        check(get(get100_keys(n, rows)), 100, "get_100_all")

    def r3(n):
        check(rng(range_start(n, rows), RANGE_PROPS), RANGE_KEYS, "range_100k_3")

    def rall(n):
        check(rng(range_start(n, rows), None), RANGE_KEYS, "range_100k_all")

    plan = [
        ("get_1_all", g1, 5, 300),
        ("get_100_all", g100, 3, 100),
        ("range_100k_3", r3, 3, 100),
        ("range_100k_all", rall, 2, 30),
    ]
    for name, fn, warmup, reps in plan:
        if args.only and name not in args.only:
            continue
        out[name] = measure(fn, warmup, max(int(reps * s), 10), args.budget)
        r = out[name]
        print(
            f"  {name:<16} reps {r['reps']:>4}  p50 {r['p50_us']:>12.1f} µs  p99 {r['p99_us']:>12.1f} µs",
            flush=True,
        )
    return out


def table(m1, results):
    names = ["get_1_all", "get_100_all", "range_100k_3", "range_100k_all"]
    engines = [e for e in ("duckdb", "polars") if e in results]
    head = "| question | m1 p50 µs | m1 p99 µs | " + " | ".join(
        f"{e} p50 µs | {e} p99 µs | {e}/m1 (p50)" for e in engines
    ) + " |"
    lines = [head, "|" + "---|" * (3 + 3 * len(engines))]
    for q in names:
        if q not in m1:
            continue
        row = [q, f"{m1[q]['p50_us']:.1f}", f"{m1[q]['p99_us']:.1f}"]
        for e in engines:
            r = results[e].get(q)
            if r is None:
                row += ["-", "-", "-"]
            else:
                row += [f"{r['p50_us']:.1f}", f"{r['p99_us']:.1f}", f"{r['p50_us'] / m1[q]['p50_us']:.1f}x"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(here, "..", "target"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", help="environment root (default: from m1-lake.json, else target/bench-lake-10m)")
    p.add_argument("--rows", type=int, help="records in the lake (default: from the lake's marker)")
    p.add_argument("--engines", default="duckdb,polars")
    p.add_argument("--only", nargs="*", help="only these questions")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the repetition counts")
    p.add_argument("--budget", type=float, default=60.0, help="max seconds of timing per question")
    p.add_argument("--out", default=os.path.join(target, "bench-results", "compare.json"))
    args = p.parse_args()

    m1_path = os.path.join(target, "bench-results", "m1-lake.json")
    m1 = json.load(open(m1_path)) if os.path.exists(m1_path) else None
    lake = args.lake or (m1["lake"] if m1 else os.path.join(target, "bench-lake-10m"))
    rows = args.rows
    if rows is None:
        marker = open(os.path.join(lake, "bench-version.txt")).read()
        rows = int(marker.split("rows=")[1].split()[0])
    glob = os.path.join(os.path.abspath(lake), "lake", "**", "*.parquet")
    print(f"lake {lake}: {rows} records; files {glob}", flush=True)

    results = {"rows": rows, "lake": lake}
    for engine in args.engines.split(","):
        print(f"{engine}:", flush=True)
        results[engine] = {"duckdb": run_duckdb, "polars": run_polars}[engine](glob, rows, args)

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"written to {args.out}")
    if m1 and m1.get("rows") == rows:
        print()
        print(table(m1, results))
    elif m1:
        print(f"(m1-lake.json is for {m1.get('rows')} records, not {rows}: no ratios)")


if __name__ == "__main__":
    main()
