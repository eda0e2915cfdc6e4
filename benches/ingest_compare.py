#!/usr/bin/env python3
"""Publishing gzipped jsonl and csv: m1 against DuckDB, polars and the floor, in one run.

Usage (from the repository root):

    .venv/bin/python benches/ingest_compare.py [--bytes 1e9] [--reps 3] [--formats jsonl,csv]
    .venv/bin/python benches/ingest_compare.py --memory-bytes 5e9      # peak RSS on a 5 GB file

The input files are generated deterministically by the tool mode of `benches/ingest.rs`
(`cargo bench --no-run` builds it; this script finds the executable) into target/bench-ingest/
and reused while their name (generator version and size) matches. Every contender runs as its
own process under `/usr/bin/time -v` (wall clock measured here, peak RSS from time), on the same
files, interleaved: each repetition runs every contender once, in an order rotated from one
repetition to the next, so the noise of a shared machine spreads over all of them. Medians
are reported.

Contenders (each reads the .gz file and, where it writes, writes Parquet):

  m1        target/release/m1 <env> publish -file F: a fresh environment (`m1 ops env/create`,
            `m1 <env> schema/add -properties @schema.json`, both untimed) per run
  duckdb    COPY (SELECT * FROM read_json_auto(F) | read_csv_auto(F)) TO 'out.parquet'
            (FORMAT parquet), in a fresh process, all cores
  polars    pl.scan_ndjson(F) | pl.scan_csv(F, try_parse_dates=True), .sink_parquet('out.parquet')
  floor     decompress (one thread, zlib-rs as m1) + parse every record on every core, nothing
            built or written (jsonl: serde_json scans each line into IgnoredAny; csv: RFC 4180
            fields split and unescaped)
  floor_value  (jsonl only) the same, but each line parsed into a serde_json::Value
  inflate   decompression alone, in process (zlib-rs, as m1)
  zcat      gzip -dc F > /dev/null
  reader    m1_ingest::read_source iterating every record on one thread (m1's reader alone)

Results go to target/bench-results/ingest-compare.json (or ingest-memory.json) and are printed
as Markdown tables.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin", "python")
M1 = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "m1")
GEN_VERSION = 1  # as GEN_VERSION in benches/ingest.rs
ALL = ["m1", "duckdb", "polars", "floor", "floor_value", "inflate", "zcat", "reader"]

DUCKDB = """
import duckdb, sys
con = duckdb.connect()
fn = {"jsonl": "read_json_auto", "csv": "read_csv_auto"}[sys.argv[1]]
src, out = sys.argv[2].replace("'", "''"), sys.argv[3].replace("'", "''")
con.execute(f"COPY (SELECT * FROM {fn}('{src}')) TO '{out}' (FORMAT parquet)")
"""

POLARS = """
import polars as pl, sys
if sys.argv[1] == "jsonl":
    lf = pl.scan_ndjson(sys.argv[2], infer_schema_length=100000)
else:
    lf = pl.scan_csv(sys.argv[2], try_parse_dates=True, infer_schema_length=100000)
lf.sink_parquet(sys.argv[3])
"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def bench_tool(build):
    """The executable of benches/ingest.rs (built if needed), and the release m1 binary."""
    if build:
        subprocess.run(["cargo", "build", "--release", "--workspace"], cwd=ROOT, check=True)
    out = subprocess.run(
        ["cargo", "bench", "--workspace", "--bench", "ingest", "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "ingest" and msg.get("executable"):
            return msg["executable"]
    sys.exit("could not find the ingest bench executable")


def tool_json(cmd):
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def input_file(tool, directory, fmt, nbytes, level):
    """The generated file (made if missing) with its row count and uncompressed size."""
    suffix = "" if level == 6 else f"-l{level}"
    path = os.path.join(directory, f"events-v{GEN_VERSION}-{nbytes}{suffix}.{fmt}.gz")
    meta = path + ".meta"
    if not (os.path.exists(path) and os.path.exists(meta)):
        log(f"generating {path} (gzip -{level}) ...")
        r = tool_json([tool, "generate", fmt, str(nbytes), path, str(level)])
        with open(meta, "w") as f:
            json.dump({"rows": r["rows"], "bytes": r["bytes"]}, f)
        log(f"  {r['rows']} rows, {r['bytes'] / 1e6:.0f} MB in {r['seconds']:.1f} s")
    with open(meta) as f:
        m = json.load(f)
    return path, m["rows"], m["bytes"]


CPU = [0.0]


def timed(cmd, env=None, stdout=subprocess.DEVNULL):
    """Runs cmd under /usr/bin/time -v: (wall seconds, peak RSS in MiB, stdout). The CPU time
    (user + sys) of the last call is left in CPU[0]."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    CPU[0] = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", p.stderr).group(1)) for k in ("User", "System"))
    return wall, rss, p.stdout


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    return total


def parquet_rows(path):
    import duckdb
    return duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]


ANON = [0.0]


def sampled(cmd, env=None):
    """Runs cmd sampling /proc/PID/status every 50 ms: (wall seconds, peak RSS MiB, stdout); the
    peak anonymous RSS (heap and stacks, not the file pages m1 maps to read segments, which the
    kernel can drop at will) of the last call is left in ANON[0], and its CPU time in CPU[0]."""
    import resource
    children = lambda: sum(getattr(resource.getrusage(resource.RUSAGE_CHILDREN), k) for k in ("ru_utime", "ru_stime"))
    cpu0 = children()
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = anon = 0
    while True:
        try:
            out, err = p.communicate(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
                peak = max(peak, int(fields.get("VmHWM", "0 kB").split()[0]))
                anon = max(anon, int(fields.get("RssAnon", "0 kB").split()[0]))
            except (OSError, ValueError):
                pass
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err[-3000:]}")
    CPU[0] = children() - cpu0
    ANON[0] = anon / 1024
    return wall, peak / 1024, out


def run_m1(scratch, fmt, path, schema, runner=None):
    home = os.path.join(scratch, "m1home")
    shutil.rmtree(home, ignore_errors=True)
    env = dict(os.environ, M1_HOME=home)
    subprocess.run([M1, "ops", "env/create", "-env", "bench"], env=env, check=True, capture_output=True)
    subprocess.run([M1, "bench", "schema/add", "-properties", "@" + schema], env=env, check=True,
                   capture_output=True)
    wall, rss, out = (runner or timed)([M1, "bench", "publish", "-file", path], env=env)
    report = json.loads(out)
    size = du(home)
    shutil.rmtree(home)
    return wall, rss, report["rowsPublished"], size


def run_contender(name, tool, scratch, fmt, path, schema, check_rows):
    """(wall, rss, rows, output bytes) of one run."""
    out = os.path.join(scratch, "out.parquet")
    if name == "m1":
        return run_m1(scratch, fmt, path, schema)
    if name in ("duckdb", "polars"):
        code = DUCKDB if name == "duckdb" else POLARS
        wall, rss, _ = timed([PY, "-c", code, fmt, path, out])
        size = os.path.getsize(out)
        rows = parquet_rows(out) if check_rows else None
        os.remove(out)
        return wall, rss, rows, size
    if name == "zcat":
        wall, rss, _ = timed(["sh", "-c", 'exec gzip -dc "$1" > /dev/null', "sh", path])
        return wall, rss, None, 0
    cmd = {"floor": [tool, "floor", fmt, path, "scan"], "floor_value": [tool, "floor", fmt, path, "value"],
           "inflate": [tool, "inflate", path],
           "reader": [tool, "reader", fmt, path]}[name]
    wall, rss, stdout = timed(cmd)
    rows = json.loads(stdout)["rows"]
    if name == "inflate" and fmt == "csv":
        rows -= 1  # lines, with the header
    return wall, rss, rows, 0


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def compare(args, tool):
    directory = os.path.join(ROOT, "target", "bench-ingest")
    scratch = os.path.join(directory, "scratch")
    os.makedirs(scratch, exist_ok=True)
    nbytes = int(float(args.bytes))
    formats = args.formats.split(",")
    contenders = args.only.split(",") if args.only else ALL
    inputs = {}
    for fmt in formats:
        path, rows, size = input_file(tool, directory, fmt, nbytes, 6)
        schema = os.path.join(directory, f"schema-{fmt}.json")
        with open(schema, "w") as f:
            f.write(subprocess.run([tool, "schema", fmt], check=True, capture_output=True, text=True).stdout)
        inputs[fmt] = (path, rows, size, schema)

    runs = {fmt: {c: [] for c in contenders} for fmt in formats}
    for rep in range(args.reps):
        for fmt in formats:
            path, rows, size, schema = inputs[fmt]
            k = rep % len(contenders)
            for name in contenders[k:] + contenders[:k]:
                if name == "floor_value" and fmt != "jsonl":
                    continue
                wall, rss, got, out_bytes = run_contender(name, tool, scratch, fmt, path, schema, rep == 0)
                if got is not None and name != "inflate" and got != rows:
                    sys.exit(f"{name} {fmt}: {got} rows, expected {rows}")
                cpu = CPU[0]
                runs[fmt][name].append({"seconds": wall, "cpu": cpu, "rss_mib": rss, "out_bytes": out_bytes})
                log(f"rep {rep + 1}/{args.reps} {fmt:5} {name:11} {wall:7.2f} s  {size / 1e6 / wall:6.1f} MB/s  "
                    f"cpu {cpu:6.2f} s  {rss:5.0f} MiB RSS  out {out_bytes / 1e6:4.0f} MB  load {os.getloadavg()[0]:.1f}")

    results = {"machine": machine(), "bytes": nbytes, "reps": args.reps, "formats": {}}
    for fmt in formats:
        path, rows, size, _ = inputs[fmt]
        table = {}
        for name, rs in runs[fmt].items():
            if not rs:
                continue
            secs = [r["seconds"] for r in rs]
            s = med(secs)
            table[name] = {"seconds": s, "min": min(secs), "max": max(secs), "runs": rs,
                           "mb_per_s": size / 1e6 / s, "rows_per_s": rows / s,
                           "cpu": med([r["cpu"] for r in rs]),
                           "rss_mib": med([r["rss_mib"] for r in rs]),
                           "out_bytes": med([r["out_bytes"] for r in rs])}
        results["formats"][fmt] = {"file": os.path.relpath(path, ROOT), "rows": rows, "bytes": size,
                                   "gz_bytes": os.path.getsize(path), "contenders": table}
    os.makedirs(os.path.join(ROOT, "target", "bench-results"), exist_ok=True)
    with open(os.path.join(ROOT, "target", "bench-results", "ingest-compare.json"), "w") as f:
        json.dump(results, f, indent=2)
    print_tables(results)


def print_tables(results):
    for fmt, r in results["formats"].items():
        print(f"\n{fmt}.gz: {r['rows']:,} rows, {r['bytes'] / 1e6:,.0f} MB uncompressed, "
              f"{r['gz_bytes'] / 1e6:,.0f} MB gzipped; median of {results['reps']}\n")
        print("| contender | seconds (min–max) | MB/s | rows/s | CPU s (user+sys) | peak RSS | output |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, c in r["contenders"].items():
            out = f"{c['out_bytes'] / 1e6:,.0f} MB" if c["out_bytes"] else "–"
            print(f"| {name} | {c['seconds']:.2f} ({c['min']:.2f}–{c['max']:.2f}) | {c['mb_per_s']:.1f} | "
                  f"{c['rows_per_s'] / 1e3:,.0f} k | {c['cpu']:.1f} | {c['rss_mib']:,.0f} MiB | {out} |")
        t = r["contenders"]
        if "m1" in t:
            for other in ("duckdb", "polars", "floor", "floor_value", "inflate", "zcat"):
                if other in t:
                    print(f"- m1 throughput / {other} throughput: {t[other]['seconds'] / t['m1']['seconds']:.2f}x "
                          f"(CPU time {other} / m1: {t[other]['cpu'] / t['m1']['cpu']:.2f}x)")


def machine():
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": round(mem, 1),
            "commit": commit + ("+dirty" if dirty else "")}


def memory(args, tool):
    """Peak RSS of one m1 publish of a large jsonl.gz (generated at gzip -1, deleted after)."""
    directory = os.path.join(ROOT, "target", "bench-ingest")
    scratch = os.path.join(directory, "scratch")
    os.makedirs(scratch, exist_ok=True)
    nbytes = int(float(args.memory_bytes))
    free = shutil.disk_usage(directory).free
    # The .gz (about 1/4 of the text at -1) plus a lake of about the same size, with room to spare.
    if free < nbytes * 0.8:
        sys.exit(f"only {free / 1e9:.1f} GB free; need about {nbytes * 0.8 / 1e9:.1f} GB")
    path, rows, size = input_file(tool, directory, "jsonl", nbytes, 1)
    schema = os.path.join(directory, "schema-jsonl.json")
    with open(schema, "w") as f:
        f.write(subprocess.run([tool, "schema", "jsonl"], check=True, capture_output=True, text=True).stdout)
    out = []
    for rep in range(args.reps):
        wall, rss, got, lake = run_m1(scratch, "jsonl", path, schema, runner=sampled)
        if got != rows:
            sys.exit(f"m1 published {got} rows, expected {rows}")
        out.append({"seconds": wall, "cpu": CPU[0], "rss_mib": rss, "anon_mib": ANON[0], "lake_bytes": lake})
        log(f"memory rep {rep + 1}: {wall:.1f} s, {size / 1e6 / wall:.1f} MB/s, peak RSS {rss:.0f} MiB "
            f"(anonymous {ANON[0]:.0f} MiB)")
    res = {"machine": machine(), "file": os.path.relpath(path, ROOT), "rows": rows, "bytes": size,
           "gz_bytes": os.path.getsize(path), "runs": out}
    with open(os.path.join(ROOT, "target", "bench-results", "ingest-memory.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(f"\nm1 publish of {size / 1e9:.2f} GB jsonl ({os.path.getsize(path) / 1e9:.2f} GB gzip -1, {rows:,} rows):")
    for r in out:
        print(f"- {r['seconds']:.1f} s ({size / 1e6 / r['seconds']:.1f} MB/s, {rows / r['seconds'] / 1e3:,.0f} k rows/s), "
              f"CPU {r['cpu']:.0f} s, peak RSS {r['rss_mib']:.0f} MiB (anonymous {r['anon_mib']:.0f} MiB), "
              f"lake {r['lake_bytes'] / 1e9:.2f} GB")
    if not args.keep:
        os.remove(path)
        os.remove(path + ".meta")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bytes", default="1e9", help="uncompressed size of each input, at least (default 1e9)")
    ap.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --memory-bytes)")
    ap.add_argument("--formats", default="jsonl,csv")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(ALL)}")
    ap.add_argument("--memory-bytes", help="instead: peak RSS of m1 on a jsonl.gz of this size")
    ap.add_argument("--keep", action="store_true", help="keep the --memory-bytes input afterwards")
    ap.add_argument("--no-build", action="store_true", help="skip `cargo build --release --workspace`")
    args = ap.parse_args()
    tool = bench_tool(not args.no_build)
    if args.memory_bytes:
        args.reps = args.reps or 1
        memory(args, tool)
    else:
        args.reps = args.reps or 3
        compare(args, tool)


if __name__ == "__main__":
    main()
