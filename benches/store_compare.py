#!/usr/bin/env python3
"""Ask DuckDB the questions of `benches/store.rs` over the same Parquet files, and compare.

Usage (after `cargo bench --workspace --bench store` has run and written
target/bench-results/m1-store.json):

    .venv/bin/python benches/store_compare.py [--results target/bench-results/m1-store.json]

Every question is the SQL form of the m1 query (same filter, same sort with `_m1key` as the
final tie-break, same number of rows, all columns for the items, terms facets as GROUP BY with
count descending then value ascending). The full-text question uses DuckDB's regex split into
lowercase words, which is what m1's `text` analysis does. DuckDB runs with one persistent
connection, the Parquet metadata cache on, hive partitioning off and all cores.

Each question is warmed up three times, then timed for up to five seconds; the median and p99
in milliseconds are printed with m1's and the ratio DuckDB / m1, and written to
target/bench-results/store-compare.json.
"""

import argparse
import glob
import json
import os
import statistics
import time


def sql_for(name, word):
    star = "SELECT * FROM t"
    return {
        "term_count": "SELECT count(*) FROM t WHERE country = 'NO'",
        "bool3_count": "SELECT count(*) FROM t WHERE country = 'US' AND status = 'active' AND age BETWEEN 30 AND 40",
        "range_count": "SELECT count(*) FROM t WHERE visits BETWEEN 1000 AND 50000",
        "top100_by_date": f"{star} WHERE status = 'active' ORDER BY created DESC NULLS LAST, _m1key LIMIT 100",
        "facet_terms_1000": "SELECT visits, count(*) c FROM t WHERE visits IS NOT NULL GROUP BY visits "
        "ORDER BY c DESC, visits LIMIT 1000",
        "facet_terms_country": "SELECT country, count(*) c FROM t WHERE country IS NOT NULL GROUP BY country "
        "ORDER BY c DESC, country LIMIT 10",
        # m1 ranks by BM25; DuckDB has no index, so the fair equivalent is "find the matches"
        # (the work any engine without an index must do), limited to 10.
        "fulltext_top10": f"{star} WHERE list_contains(regexp_split_to_array(lower(description), "
        f"'[^\\p{{L}}\\p{{N}}]+'), '{word}') LIMIT 10",
    }[name]


def timed(con, sql, budget=5.0):
    # Arrow results: the items carry timestamps, which fetchall() would turn into Python
    # datetimes (slower, and it needs pytz).
    for _ in range(3):
        con.sql(sql).to_arrow_table()
    t = []
    deadline = time.perf_counter() + budget
    while len(t) < 10 or (time.perf_counter() < deadline and len(t) < 1000):
        s = time.perf_counter()
        rows = con.sql(sql).to_arrow_table()
        t.append((time.perf_counter() - s) * 1e3)
    t.sort()
    p99 = t[min(len(t) - 1, max(0, int(len(t) * 0.99 + 0.999) - 1))]
    return statistics.median(t), p99, len(t), rows


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(here, "..", "target"))
    ap.add_argument("--results", default=os.path.join(target, "bench-results", "m1-store.json"))
    args = ap.parse_args()
    with open(args.results) as f:
        m1 = json.load(f)
    import duckdb

    con = duckdb.connect()
    con.execute("SET parquet_metadata_cache = true")
    files = sorted(glob.glob(os.path.join(m1["lake"], "lake", "**", "*.parquet"), recursive=True))
    listing = ", ".join(f"'{f}'" for f in files)
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet([{listing}], hive_partitioning = false)")
    out = {}
    print(f"{'question':>22} {'m1 p50 ms':>10} {'duckdb p50':>11} {'ratio':>7}   counts m1 / duckdb")
    for name, q in m1["questions"].items():
        sql = sql_for(name, m1["word"])
        p50, p99, reps, rows = timed(con, sql)
        count = rows.column(0)[0].as_py() if name.endswith("_count") else rows.num_rows
        ours = q["p50_ms"]
        out[name] = {"sql": sql, "p50_ms": p50, "p99_ms": p99, "reps": reps, "m1_p50_ms": ours, "ratio": p50 / ours}
        m1_count = q["count"] if name.endswith("_count") else min(q["rows"] or 10**9, q["count"])
        if name.startswith("facet"):
            m1_count = "-"
        print(f"{name:>22} {ours:10.3f} {p50:11.3f} {p50 / ours:6.1f}x   {m1_count} / {count}")
    path = os.path.join(os.path.dirname(args.results), "store-compare.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
