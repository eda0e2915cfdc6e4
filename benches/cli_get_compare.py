#!/usr/bin/env python3
"""Whole-process key lookups: `m1 <env> get -ids k` against DuckDB's answer to the same key, each
a fresh process, over the 10 M-record lake of `benches/lake.rs` (issue 16's CLI row).

    cargo build --release -p m1-cli && cargo bench --workspace --bench lake --no-run  # lake built by a lake run
    .venv/bin/python benches/cli_get_compare.py [--reps 30]

The lake is registered under a scratch $M1_HOME (its catalog points at the lake; nothing in the
lake is written). DuckDB runs as `python -c 'import duckdb; ...'` (the PyPI package is the DuckDB
this project pins), so its figure includes Python's start and `import duckdb`, printed apart.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def timed(cmd, env=None):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return (time.perf_counter() - t) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--m1", default=os.path.join(TARGET, "release", "m1"))
    ap.add_argument("--lake", default=os.path.join(TARGET, "bench-lake-10m"))
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.lake, "env.json")):
        sys.exit(f"no lake at {a.lake}: run `cargo bench --workspace --bench lake` first")
    home = tempfile.mkdtemp(prefix="m1-cli-bench-")
    env = dict(os.environ, M1_HOME=home)
    subprocess.run([a.m1, "ops", "env/create", "-env", "lake"], check=True, stdout=subprocess.DEVNULL, env=env)
    catalog = os.path.join(home, "catalog.json")
    with open(catalog) as f:
        c = json.load(f)
    with open(os.path.join(a.lake, "env.json")) as f:
        lake_id = json.load(f)["id"]
    for e in c["environments"]:
        if e["name"] == "lake":
            e["url"], e["id"] = a.lake, lake_id
    with open(catalog, "w") as f:
        json.dump(c, f)
    rows = int(subprocess.run([a.m1, "lake", "next"], check=True, capture_output=True, text=True, env=env).stdout)
    glob = os.path.join(a.lake, "lake", "**", "*.parquet")
    rng = random.Random(7)
    m1, duck, imp = [], [], []
    for _ in range(a.reps):
        k = rng.randrange(rows)
        m1.append(timed([a.m1, "lake", "get", "-ids", str(k)], env))
        sql = f"select * from read_parquet('{glob}', hive_partitioning=false) where _m1key = {k}"
        duck.append(timed([sys.executable, "-c", f'import duckdb; duckdb.sql("{sql}").to_arrow_table()']))
        imp.append(timed([sys.executable, "-c", "import duckdb"]))
    p50 = statistics.median
    print(f"{rows} records, {a.reps} keys, one process per lookup (ms)")
    print(f"  m1 get              p50 {p50(m1):8.1f}  min {min(m1):8.1f}")
    print(f"  python + duckdb     p50 {p50(duck):8.1f}  min {min(duck):8.1f}   ({p50(duck) / p50(m1):.1f}x m1)")
    print(f"  python -c 'import duckdb' alone  p50 {p50(imp):8.1f}")


if __name__ == "__main__":
    main()
