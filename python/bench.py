"""Issue 15's targets, measured: the Python package against the library underneath, in one run.

    pip install ./python pyarrow duckdb          # an optimized build (not the tests' dev one)
    python python/bench.py [ROWS]                # default 1,000,000

1. `env.get([k])` from Python, against the library's own `get` timed in Rust on the same handle
   (`_time_get`); target: at most 1.5x the library plus 20 us.
2. `pyarrow.table(env.range(a, a + 100_000, props))` against the library reading the same
   batches (`_time_range`); target: at most 1.2x.
3. `duckdb.sql(...)` over a `ROWS`-row `env.range(...)`, in a fresh process: the growth of peak
   RSS against the result's Arrow size; target: at most 1.2x (no copy).
"""

import os
import random
import resource
import subprocess
import sys
import tempfile
import time

import pyarrow

import m1


def best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    home = tempfile.mkdtemp()
    location = os.path.join(home, "env")
    env = m1.create(location, segment_rows=100_000)
    env.add_properties([("user", "string"), ("n", "integer"), ("x", "double"), ("kind", "string")])
    kinds = ["view", "click", "buy", "share"]
    for start in range(0, rows, 250_000):
        count = min(250_000, rows - start)
        env.append(pyarrow.table({
            "user": [f"u{i % 5000}" for i in range(start, start + count)],
            "n": list(range(start, start + count)),
            "x": [i / 4 for i in range(start, start + count)],
            "kind": [kinds[i % 4] for i in range(start, start + count)],
        }))
    print(f"m1 Python bench: {rows} rows, load {os.getloadavg()[0]:.2f}")

    # 1. get one key.
    rng = random.Random(7)
    keys = [rng.randrange(rows) for _ in range(2000)]
    for k in keys[:200]:
        env.get([k])  # warm the footers and the cache
    native = env._native
    lib = min(native._time_get([k], 1) for k in keys[:500])
    lib_mean = sum(native._time_get([k], 1) for k in keys[500:1500]) / 1000
    t = time.perf_counter()
    for k in keys[:1000]:
        env.get([k])
    py_mean = (time.perf_counter() - t) / 1000
    t = time.perf_counter()
    for k in keys[1000:2000]:
        pyarrow.table(env.get([k]))
    py_table_mean = (time.perf_counter() - t) / 1000
    print(f"get 1 key: library {lib_mean * 1e6:.1f} us (best {lib * 1e6:.1f}), Python env.get {py_mean * 1e6:.1f} us "
          f"({py_mean / lib_mean:.2f}x; target <= 1.5x + 20 us = {(1.5 * lib_mean + 20e-6) * 1e6:.1f} us), "
          f"into a pyarrow Table {py_table_mean * 1e6:.1f} us")

    # 2. range of 100,000 into pyarrow.
    a = rows // 3
    props = ["n", "x", "kind"]
    lib_range = min(native._time_range(a, a + 100_000, 1, props) for _ in range(5))
    py_range = best(lambda: pyarrow.table(env.range(a, a + 100_000, props)))
    print(f"range 100,000 rows, 3 properties: library {lib_range * 1e3:.2f} ms, pyarrow.table(env.range) "
          f"{py_range * 1e3:.2f} ms ({py_range / lib_range:.2f}x; target <= 1.2x)")
    env.close()

    # 3. DuckDB over the whole range, in a fresh process (its peak RSS is the measure).
    child = subprocess.run([sys.executable, __file__, "--duckdb", location, str(rows)], capture_output=True, text=True)
    print(child.stdout.strip())
    if child.returncode != 0:
        raise SystemExit(f"the DuckDB part failed:\n{child.stderr}")


def duckdb_child(location, rows):
    import duckdb

    env = m1.open(location)
    duckdb.sql("select 1").fetchall()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    r = env.range(0, rows, ["n", "x", "kind"])
    t = time.perf_counter()
    ((total, count),) = duckdb.sql("select sum(n), count(*) from r").fetchall()
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert count == rows and total == rows * (rows - 1) // 2
    size = pyarrow.table(r).nbytes
    print(f"duckdb over {rows:,} rows: {seconds:.2f} s; peak RSS grew {(peak - base) / 2**20:.0f} MiB for "
          f"{size / 2**20:.0f} MiB of Arrow data ({(peak - base) / size:.2f}x; target <= 1.2x)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--duckdb":
        duckdb_child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
