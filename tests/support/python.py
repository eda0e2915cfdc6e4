"""Independent readers for m1's integration tests.

Each mode reads what m1 wrote with a third-party library and prints one JSON document on stdout,
which the Rust test compares with m1's own reads:

    python.py parquet-pyarrow ENV_DIR KEYS_JSON   # plain Parquet: lake/**/*.parquet via pyarrow
    python.py parquet-duckdb  ENV_DIR KEYS_JSON   # plain Parquet via duckdb read_parquet
    python.py parquet-polars  ENV_DIR KEYS_JSON   # plain Parquet via polars
    python.py delta           TABLE   KEYS_JSON [STORAGE_OPTIONS_JSON]
                                                  # Delta table via deltalake (delta-rs)
    python.py s3-list ENDPOINT BUCKET PREFIX      # object keys via boto3 (the moto dependency)
    python.py azure-create-container ENDPOINT ACCOUNT KEY CONTAINER
                                                  # a blob container on Azurite (Shared Key, stdlib)
    python.py duckdb-sql ENV_DIR SETUP_SQL QUERIES_FILE
                                                  # each SQL query of a JSON list, run by DuckDB
                                                  # on view `t` over the lake's Parquet files

A missing package exits with status 3 and a message naming it, so the test can fail with an
installation hint instead of a stack trace.
"""

import datetime
import glob
import importlib
import json
import os
import sys
import urllib.error
import urllib.parse

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# Columns that hive-style directory names (`shard=N`) may add; they are not m1 properties.
PARTITION_COLUMNS = {"shard"}


def need(module):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        sys.stderr.write(f"missing Python package '{module}': {e}\n")
        sys.exit(3)


def iso_ms(ms):
    """Epoch milliseconds as m1 renders dates: ISO-8601 UTC with milliseconds."""
    d = EPOCH + datetime.timedelta(milliseconds=ms)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def normalize_table(table):
    """Timestamps become int64 columns counting their unit (remembering how many per ms), so that
    no reader's timezone handling gets in the way; they are rendered as ISO strings afterwards."""
    pa = need("pyarrow")
    dates = {}
    cols = []
    names = []
    for name, col in zip(table.column_names, table.columns):
        if name in PARTITION_COLUMNS:
            continue
        t = col.type
        if pa.types.is_timestamp(t):
            dates[name] = {"s": 0.001, "ms": 1, "us": 1000, "ns": 1000000}[t.unit]
            col = col.cast(pa.int64())
        cols.append(col)
        names.append(name)
    return pa.table(cols, names=names), dates


def value(v, per_ms):
    if v is None:
        return None
    if isinstance(v, list):
        return [value(x, per_ms) for x in v]
    if per_ms:
        # floor division, so dates before 1970 keep their millisecond
        return iso_ms(v * 1000 if per_ms < 1 else v // per_ms)
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return None
    return v


def summarize(reader, table, keys, extra=None):
    """Row count, per-column non-null counts, checksums, and the records of `keys`."""
    pa = need("pyarrow")
    pc = need("pyarrow.compute")
    types = {n: str(t) for n, t in zip(table.column_names, table.schema.types)}
    table, dates = normalize_table(table)
    out = {
        "reader": reader,
        "rows": table.num_rows,
        "types": types,
        "columns": table.column_names,
        "non_null": {n: table.num_rows - table.column(n).null_count for n in table.column_names},
    }
    key = table.column("_m1key")
    out["distinct_keys"] = pc.count_distinct(key).as_py()
    out["min_key"] = pc.min(key).as_py()
    out["max_key"] = pc.max(key).as_py()
    if "count" in table.column_names:
        # Python ints are exact: no overflow or rounding in the checksum.
        out["sum_count"] = sum(x for x in table.column("count").to_pylist() if x is not None)
    wanted = table.filter(pc.is_in(key, value_set=pa.array(keys, pa.int64())))
    records = {}
    for row in wanted.to_pylist():
        rec = {}
        for n, v in row.items():
            v = value(v, dates.get(n))
            if v is not None:
                rec[n] = v
        k = str(row["_m1key"])
        if k in records:
            raise SystemExit(f"{reader}: key {k} occurs twice")
        records[k] = rec
    out["records"] = records
    if extra:
        out.update(extra)
    return out


def lake_files(env):
    files = sorted(glob.glob(os.path.join(env, "lake", "**", "*.parquet"), recursive=True))
    if not files:
        raise SystemExit(f"no Parquet files under {env}/lake")
    return files


def parquet_pyarrow(env, keys):
    pq = need("pyarrow.parquet")
    ds = need("pyarrow.dataset")
    pa = need("pyarrow")
    files = lake_files(env)
    # Older segments lack properties added later: read with the union of the file schemas.
    schema = pa.unify_schemas([pq.read_schema(f) for f in files])
    table = ds.dataset(files, schema=schema, format="parquet").to_table()
    return summarize("pyarrow", table, keys, {"files": len(files)})


def parquet_duckdb(env, keys):
    duckdb = need("duckdb")
    pattern = os.path.join(env, "lake", "**", "*.parquet").replace("'", "''")
    con = duckdb.connect()
    rel = con.sql(
        f"SELECT * FROM read_parquet('{pattern}', union_by_name = true, hive_partitioning = false)"
    )
    table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    files = con.sql(f"SELECT count(*) FROM glob('{pattern}')").fetchall()[0][0]
    return summarize("duckdb", table, keys, {"files": files})


def parquet_polars(env, keys):
    pl = need("polars")
    pq = need("pyarrow.parquet")
    pa = need("pyarrow")
    files = lake_files(env)
    # polars takes the schema of the first file unless told; give it the union of all files.
    schema = pa.unify_schemas([pq.read_schema(f) for f in files])
    pl_schema = pl.from_arrow(schema.empty_table()).schema
    frame = pl.read_parquet(files, schema=pl_schema, missing_columns="insert", hive_partitioning=False)
    return summarize("polars", frame.to_arrow(), keys, {"files": len(files)})


def delta(table_uri, keys, storage_options=None):
    deltalake = need("deltalake")
    need("pyarrow")
    dt = deltalake.DeltaTable(table_uri, storage_options=storage_options)
    meta = dt.metadata()
    protocol = dt.protocol()
    extra = {
        "version": dt.version(),
        "delta_files": len(dt.file_uris()),
        "delta_fields": [f.name for f in dt.schema().fields],
        "configuration": dict(meta.configuration),
        "protocol": [protocol.min_reader_version, protocol.min_writer_version],
        "history_len": len(dt.history()),
        "txn_m1_next": dt.transaction_version("m1.next"),
    }
    table = dt.to_pyarrow_table()
    return summarize("deltalake", table, keys, extra)


def delta_versions(table_uri, versions, keys):
    """delta-rs's reading of the table at each version: rows and the records of `keys`."""
    deltalake = need("deltalake")
    need("pyarrow")
    out = {}
    for v in versions:
        dt = deltalake.DeltaTable(table_uri, version=v)
        out[str(v)] = summarize("deltalake", dt.to_pyarrow_table(), keys, {"version": dt.version()})
    return out


def s3_list(endpoint, bucket, prefix):
    boto3 = need("boto3")
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return {"reader": "boto3", "keys": sorted(keys)}


def azure_create_container(endpoint, account, key, container):
    """Creates a container with one Shared Key signed request (object_store cannot create one)."""
    import base64
    import hashlib
    import hmac
    import email.utils
    import urllib.request

    version = "2021-08-06"
    date = email.utils.formatdate(usegmt=True)
    path = urllib.parse.urlsplit(endpoint).path.rstrip("/") + "/" + container
    # VERB, Content-Encoding, -Language, -Length (empty for 0), -MD5, -Type, Date, If-Modified-Since,
    # If-Match, If-None-Match, If-Unmodified-Since, Range; then the x-ms- headers and the resource.
    to_sign = "\n".join(["PUT", "", "", "", "", "application/octet-stream"] + [""] * 6 + [f"x-ms-date:{date}", f"x-ms-version:{version}",
                                                  f"/{account}{path}\nrestype:container"])
    signature = base64.b64encode(
        hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/" + container + "?restype=container", method="PUT", data=b"",
        headers={"Content-Type": "application/octet-stream", "x-ms-date": date, "x-ms-version": version,
                 "Authorization": f"SharedKey {account}:{signature}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return {"status": r.status}
    except urllib.error.HTTPError as e:
        if e.code == 409:  # exists already
            return {"status": 409}
        raise SystemExit(f"creating container {container}: {e.code} {e.read()[:300]!r}")


def duckdb_sql(env, setup, queries_file):
    """Rows of each query; `t` is every lake record, `setup` runs first (macros, views)."""
    duckdb = need("duckdb")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    files = ", ".join(f"'{f}'" for f in lake_files(env))
    con.execute(f"CREATE VIEW lake AS SELECT * FROM read_parquet([{files}], hive_partitioning = false, union_by_name = true)")
    con.execute(setup)
    with open(queries_file) as f:
        queries = json.load(f)
    out = []
    for q in queries:
        try:
            rows = con.execute(q).fetchall()
        except Exception as e:  # the Rust side shows which query failed and why
            out.append({"error": f"{e}", "sql": q})
            continue
        out.append([[jsonable(v) for v in row] for row in rows])
    return out


def openmetrics(path):
    """Parses an OpenMetrics exposition with prometheus_client's strict parser: every sample as
    {name, labels, value}, and each family's type."""
    parser = need("prometheus_client.openmetrics.parser")
    with open(path) as f:
        text = f.read()
    families = []
    for fam in parser.text_string_to_metric_families(text):
        families.append({
            "name": fam.name,
            "type": fam.type,
            "samples": [{"name": s.name, "labels": dict(s.labels), "value": s.value} for s in fam.samples],
        })
    return families


def jsonable(v):
    if isinstance(v, float) and v != v:
        return "NaN"
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    return v


def main(argv):
    mode = argv[1]
    if mode == "s3-list":
        out = s3_list(argv[2], argv[3], argv[4])
    elif mode == "azure-create-container":
        out = azure_create_container(argv[2], argv[3], argv[4], argv[5])
    elif mode == "delta-versions":
        out = delta_versions(argv[2], json.loads(argv[3]), json.loads(argv[4]))
    elif mode == "duckdb-sql":
        out = duckdb_sql(argv[2], argv[3], argv[4])
    elif mode == "openmetrics":
        out = openmetrics(argv[2])
    else:
        keys = json.loads(argv[3])
        if mode == "parquet-pyarrow":
            out = parquet_pyarrow(argv[2], keys)
        elif mode == "parquet-duckdb":
            out = parquet_duckdb(argv[2], keys)
        elif mode == "parquet-polars":
            out = parquet_polars(argv[2], keys)
        elif mode == "delta":
            opts = json.loads(argv[4]) if len(argv) > 4 else None
            out = delta(argv[2], keys, opts)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
    sys.stdout.flush()
    # Skip interpreter teardown: delta-rs's native runtime can abort while its threads are torn
    # down ("terminate called without an active exception") after the answer is complete.
    os._exit(0)
