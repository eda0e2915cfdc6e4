#!/usr/bin/env python3
"""SQLite on the workload of `benches/session.rs` (session stores), for the same-run comparison.

Usage (after the Rust bench wrote target/bench-results/m1-session.json):

    taskset -c 0 python3 benches/session_compare.py [--docs 4500000]

SQLite keeps each document as JSON text in `s(k TEXT PRIMARY KEY, doc TEXT)`, WAL mode. An update
call is one transaction and one statement that parses the call's JSON array inside SQLite
(`json_each`), takes the key (`json_extract(value, '$.session.id')`), stamps
`_m1.session.lastUpdated` (`json_set`) and upserts (`INSERT ... ON CONFLICT(k) DO UPDATE`); a
merge call uses `json_patch` (RFC 7386) on conflict. So SQLite does in C what m1 does: parse,
key, stamp, store. Both `synchronous=NORMAL` (the brief's setting: in WAL mode a commit is NOT
fsynced, so it is not durable against power loss) and `synchronous=FULL` (fsync per commit, as
m1 does) are measured.

Queries run over the same 4.5 M small documents with expression indexes on the properties
asked (SQLite must be told in advance; m1 indexes every path). Term queries compare whole
values (`=`), which for these single-word values gives the same answers as m1.

Documents and questions come from the same splitmix64 formulas as the Rust bench.
"""

import argparse
import json
import os
import sqlite3
import statistics
import time

M64 = (1 << 64) - 1
TYPES = ["heartbeat", "click", "view", "purchase", "login"]
COUNTRIES = ["US", "GB", "DE", "FR", "NO", "JP", "BR", "IN"]
KEYS = 200_000
CALL = 1000
CALLS = 60


def mix(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def uuid(a):
    h, g = mix(a), mix(a ^ 0x55555555)
    return "%08x-%04x-%04x-%04x-%012x" % (h >> 32, (h >> 16) & 0xFFFF, h & 0xFFFF, g >> 48, g & 0xFFFFFFFFFFFF)


def doc_1k(k, v):
    data = {"f%02d" % f: "w%d" % (mix(v * 64 + f) % 5000) for f in range(56)}
    return {
        "ip": "10.%d.%d.%d" % (k % 256, (k >> 8) % 256, v % 256),
        "session": {"id": uuid(k), "start": 1612497996184 + k},
        "user": {"id": uuid((k // 4) | (1 << 40))},
        "event": {"id": uuid(v | (1 << 41)), "time": 1612497996000 + v * 37, "type": TYPES[mix(v) % 5], "data": data},
    }


def doc_small(i):
    return {
        "session": {"id": uuid(i), "start": 1612497996184 + i},
        "user": {"id": "u%d" % (mix(i) % 100000)},
        "event": {"type": TYPES[mix(i ^ 1) % 5], "time": 1612497996000 + i * 10},
        "geo": {"country": COUNTRIES[mix(i ^ 2) % 8]},
        "score": (mix(i ^ 3) % 1000) / 10.0,
    }


def dumps(v):
    return json.dumps(v, separators=(",", ":"))


def upsert_call(c):
    return dumps([doc_1k(mix(c * CALL + j) % KEYS, c * CALL + j) for j in range(CALL)])


def merge_call(c):
    out = []
    for j in range(CALL):
        v = c * CALL + j
        out.append({"session": {"id": uuid(mix(v ^ 0xABCD) % KEYS)},
                    "event": {"time": 1700000000000 + v, "type": TYPES[v % 5]}, "counter": v})
    return dumps(out)


UPSERT = """INSERT INTO s(k, doc)
  SELECT json_extract(value, '$.session.id'), json_set(value, '$._m1.session.lastUpdated', ?2)
  FROM json_each(?1) WHERE true
  ON CONFLICT(k) DO UPDATE SET doc = excluded.doc"""
MERGE = """INSERT INTO s(k, doc)
  SELECT json_extract(value, '$.session.id'), json_set(value, '$._m1.session.lastUpdated', ?2)
  FROM json_each(?1) WHERE true
  ON CONFLICT(k) DO UPDATE SET doc = json_patch(doc, excluded.doc)"""


def connect(path, sync):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=%s" % sync)
    conn.execute("PRAGMA cache_size=-1000000")
    conn.execute("CREATE TABLE IF NOT EXISTS s (k TEXT PRIMARY KEY, doc TEXT NOT NULL)")
    return conn


def call(conn, sql, arr):
    conn.execute("BEGIN")
    conn.execute(sql, (arr, int(time.time() * 1000)))
    conn.execute("COMMIT")


def bench_updates(base, sync, upserts, merges):
    path = os.path.join(base, "sqlite-updates-%s.db" % sync)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    conn = connect(path, sync)
    for c in range(KEYS // CALL):
        call(conn, UPSERT, dumps([doc_1k(c * CALL + j, j) for j in range(CALL)]))
    out = {}
    for name, sql, calls in (("upsert", UPSERT, upserts), ("merge", MERGE, merges)):
        t = time.perf_counter()
        n = 0
        while n < 100:
            call(conn, sql, calls[n % len(calls)])
            n += 1
        out[name] = n * CALL / (time.perf_counter() - t)
    conn.close()
    return out


def question_list(n):
    return [
        ("term_user_id_rows10", "user", "u%d" % (mix(n) % 100000), 10),
        ("term_session_uuid", "key", uuid(mix(n ^ 7) % 4500000), 10),
        ("term_country_and_type_count", "country_type", COUNTRIES[n % 8], 0),
        ("term_event_type_count", "type", TYPES[n % 5], 0),
        ("term_event_type_rows10", "type", TYPES[n % 5], 10),
    ]


WHERE = {
    "user": "json_extract(doc, '$.user.id') = ?",
    "key": "k = ?",
    "country_type": "json_extract(doc, '$.geo.country') = ? AND json_extract(doc, '$.event.type') = 'purchase'",
    "type": "json_extract(doc, '$.event.type') = ?",
}


def ask(conn, kind, value, rows):
    where = WHERE[kind]
    count = conn.execute("SELECT count(*) FROM s WHERE " + where, (value,)).fetchone()[0]
    items = conn.execute("SELECT doc FROM s WHERE %s ORDER BY k LIMIT %d" % (where, rows), (value,)).fetchall() if rows else []
    return count, items


def query_db(base, docs):
    path = os.path.join(base, "sqlite-q%d.db" % docs)
    if os.path.exists(path):
        conn = connect(path, "NORMAL")
        if conn.execute("SELECT count(*) FROM s").fetchone()[0] == docs:
            return conn, None
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    conn = connect(path, "NORMAL")
    t = time.perf_counter()
    per = 10000
    for c in range(0, docs, per):
        call(conn, UPSERT, dumps([doc_small(i) for i in range(c, min(c + per, docs))]))
    for name, expr in (("user", "$.user.id"), ("type", "$.event.type"), ("country", "$.geo.country")):
        conn.execute("CREATE INDEX IF NOT EXISTS s_%s ON s(json_extract(doc, '%s'))" % (name, expr))
    conn.execute("ANALYZE")
    return conn, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=4500000)
    ap.add_argument("--target", default=os.environ.get("CARGO_TARGET_DIR", "target"))
    args = ap.parse_args()
    base = os.path.join(args.target, "bench-session")
    os.makedirs(base, exist_ok=True)
    print("sqlite", sqlite3.sqlite_version)
    upserts = [upsert_call(c) for c in range(CALLS)]
    merges = [merge_call(c) for c in range(CALLS)]
    res = {"sqlite": sqlite3.sqlite_version}
    for sync in ("NORMAL", "FULL"):
        r = bench_updates(base, sync, upserts, merges)
        print("synchronous=%s: %.0f upserts/s, %.0f merges/s" % (sync, r["upsert"], r["merge"]))
        res["updates_" + sync] = r
    conn, built = query_db(base, args.docs)
    if built is not None:
        print("built %d rows with indexes in %.1f s" % (args.docs, built))
        res["build_s"] = built
    lat = {}
    for i, (name, _, _, _) in enumerate(question_list(0)):
        for n in range(3):
            ask(conn, *question_list(n)[i][1:])
        times = []
        for n in range(51):
            _, kind, value, rows = question_list(1000 + n)[i]
            t = time.perf_counter()
            ask(conn, kind, value, rows)
            times.append((time.perf_counter() - t) * 1e3)
        lat[name] = statistics.median(times)
    t = time.perf_counter()
    conn.execute("SELECT count(*) FROM s WHERE json_extract(doc, '$.score') BETWEEN 10 AND 10.5").fetchone()
    conn.execute("SELECT doc FROM s WHERE json_extract(doc, '$.score') BETWEEN 10 AND 10.5 ORDER BY k LIMIT 10").fetchall()
    lat["range_score"] = (time.perf_counter() - t) * 1e3
    times = []
    for n in range(1001):
        t = time.perf_counter()
        conn.execute("SELECT doc FROM s WHERE k = ?", (uuid(mix(n) % args.docs),)).fetchall()
        times.append((time.perf_counter() - t) * 1e3)
    lat["get_by_key"] = statistics.median(times)
    res["query_ms"] = lat
    out_dir = os.path.join(args.target, "bench-results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "sqlite-session.json"), "w") as f:
        json.dump(res, f, indent=2)
    m1 = {}
    m1_path = os.path.join(out_dir, "m1-session.json")
    if os.path.exists(m1_path):
        with open(m1_path) as f:
            m1 = json.load(f)
    print("\n%-30s %12s %12s %8s" % ("query (median ms)", "m1", "sqlite", "ratio"))
    for name, v in lat.items():
        m = m1.get("query_ms", {}).get(name)
        print("%-30s %12s %12.3f %8s" % (name, "%.3f" % m if m is not None else "-", v,
                                         "%.1fx" % (v / m) if m else "-"))


if __name__ == "__main__":
    main()
