"""The Python package as a user uses it, installed with pip (cli/tests/python.rs installs it and
runs this file). Values are checked against the CLI's JSON for the same environment (the `m1`
binary in $M1_CLI) and against pyarrow, polars and DuckDB reading the results."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import duckdb
import polars
import pyarrow
import pytest

import m1

CLI = os.environ.get("M1_CLI")

PROPS = [("city", "string"), ("n", "integer"), ("x", "double"), ("when", "date"), ("tags", "string"), ("ok", "boolean")]


def rows(count, offset=0):
    cities = ["Oslo", "Bergen", "Zürich", "東京"]
    for i in range(offset, offset + count):
        yield {"city": cities[i % 4], "n": i, "x": i / 4, "when": 1_614_107_884_000 + i * 1000, "ok": i % 2 == 0}


@pytest.fixture
def env(tmp_path):
    with m1.create(tmp_path / "env", segment_rows=500) as env:
        env.add_properties(PROPS)
        path = tmp_path / "in.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows(2000)))
        report = env.publish(str(path))
        assert report.rows_published == 2000
        yield env


def cli(env, *args):
    """The CLI's JSON answer for the same environment."""
    assert CLI, "M1_CLI names the m1 binary (cli/tests/python.rs sets it)"
    out = subprocess.run([CLI, env.location, *args], capture_output=True, text=True)
    assert out.returncode == 0, f"m1 {' '.join(args)}: {out.stderr}"
    return json.loads(out.stdout)


def test_publish_report_is_pythonic(tmp_path):
    with m1.create(tmp_path / "e") as env:
        env.add_properties(PROPS)
        path = tmp_path / "a.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows(10)) + '{"n": "not a number"}\n')
        with pytest.raises(m1.BadInput, match="a.jsonl:11") as e:
            env.publish(str(path))
        assert isinstance(e.value, m1.M1Error)
        report = env.publish(str(path), permissive=True)
        assert (report.rows_read, report.rows_published, report.values_nulled) == (11, 11, 1)
        assert report["rowsPublished"] == 11 and report.first_key == 0
        assert report.key_ranges == [[0, 11]]
        seen = []
        env.publish(str(path), permissive=True, progress=lambda *p: seen.append(p))
        assert seen and seen[-1][2] == 11, seen


def test_get_and_range_equal_the_cli(env):
    ids = [5, 0, 1999, 77]
    got = env.get(ids).to_pylist()
    theirs = cli(env, "get", "-ids", json.dumps(ids))
    assert [r["_m1key"] for r in got] == ids
    assert env.call("get", ids=ids) == theirs
    for mine, cli_row in zip(got, theirs):
        assert mine["city"] == cli_row["city"] and mine["n"] == cli_row["n"] and mine["x"] == cli_row["x"]
        assert mine["when"].isoformat(timespec="milliseconds").replace("+00:00", "Z") == cli_row["when"]
    table = env.range(100, 1100, ["n", "city"]).to_arrow()
    assert table.num_rows == 1000 and table.column_names == ["_m1key", "n", "city"]
    assert table.column("n").to_pylist() == list(range(100, 1100))
    assert env.next() == cli(env, "next") == 2000


def test_query_count_facets_and_items(env):
    facets = {"c": {"type": "terms", "field": "city"}}
    answer = env.query("n:[0 TO 99] AND ok:true", rows=5, sort="n desc", fl=["n", "city"], facets=facets)
    theirs = cli(env, "query", "-q", "n:[0 TO 99] AND ok:true", "-rows", "5", "-sort", "n desc", "-fl", "n,city",
                 "-facets", json.dumps(facets))
    assert answer.count == theirs["count"] == 50
    assert answer.facets == theirs["facets"]
    items = answer.items.to_pylist()
    assert [r["n"] for r in items] == [98, 96, 94, 92, 90]
    assert items == [{k: v for k, v in r.items() if k in ("_m1key", "n", "city")} for r in theirs["items"]]


def test_arrow_consumers_read_without_copying(env):
    before = pyarrow.total_allocated_bytes()
    table = pyarrow.table(env.range(0, 2000))
    # The buffers are m1's, exported through the C stream interface: pyarrow allocated nothing.
    assert pyarrow.total_allocated_bytes() - before < 4096
    assert table.num_rows == 2000
    frame = polars.DataFrame(env.range(0, 2000, ["n", "city"]))
    assert frame.height == 2000 and frame["n"].sum() == sum(range(2000))
    r = env.range(0, 2000, ["city"])
    counts = dict(duckdb.sql("select city, count(*) from r group by city").fetchall())
    assert counts == {"Oslo": 500, "Bergen": 500, "Zürich": 500, "東京": 500}
    again = env.get([1, 5])
    assert pyarrow.table(again).equals(pyarrow.table(again)), "a result reads again, the same"
    assert env.get([1, 2]).to_pandas()["n"].tolist() == [1, 2]
    assert env.get([3]).to_polars()["n"].to_list() == [3]


def test_append_takes_arrow_from_pyarrow_polars_and_duckdb(env):
    first = env.next()
    table = pyarrow.table({"city": ["Tromsø", "Bodø"], "n": [10_000, 10_001]})
    report = env.append(table)
    assert (report.rows, report.first_key) == (2, first)
    env.append(polars.DataFrame({"city": ["Molde"], "n": [10_002]}))
    env.append(duckdb.sql("select 'Hamar' as city, 10003::bigint as n"))
    env.append(pyarrow.record_batch({"city": ["Lillehammer"], "n": [10_004]}))
    got = env.range(first, env.next(), ["city", "n"]).to_pylist()
    assert [(r["city"], r["n"]) for r in got] == [
        ("Tromsø", 10_000), ("Bodø", 10_001), ("Molde", 10_002), ("Hamar", 10_003), ("Lillehammer", 10_004)
    ]
    with pytest.raises(m1.BadInput, match="Arrow data"):
        env.append([{"city": "no"}])


def test_errors_are_subclasses_with_the_librarys_message(tmp_path, env):
    with pytest.raises(m1.NotFound):
        m1.open(tmp_path / "nothing-here")
    with pytest.raises(m1.Exists):
        m1.create(env.location)
    with pytest.raises(m1.BadInput, match="takes no parameter 'bogus'"):
        env.call("next", bogus=1)
    with pytest.raises(m1.BadInput):
        env.query("city:(", rows=1)
    for name in ["BadInput", "NotFound", "Forbidden", "Exists", "Conflict", "Suspended", "Busy", "Internal"]:
        assert issubclass(getattr(m1, name), m1.M1Error)


def test_sessions_and_stores(env):
    env.sessions.add("stash", shards=1, replicas=1)
    assert "stash" in list(env.sessions)
    stash = env.sessions["stash"]
    stash.update([{"upsert": [{"session": {"id": "a"}, "v": 1}, {"session": {"id": "b"}, "v": 2}]},
                  {"merge": [{"session": {"id": "a"}, "w": {"deep": True}}]}])
    docs = {d["session"]["id"]: d for d in stash.get(["a", "b", "zz"])}
    assert docs["a"]["v"] == 1 and docs["a"]["w"] == {"deep": True} and set(docs) == {"a", "b"}
    found = stash.query("v:2")
    assert [d["session"]["id"] for d in found["items"]] == ["b"]
    stores = env.store_list()
    assert stores == env.call("store/list") == cli(env, "store/list")
    assert any(s["name"] == "index" for s in stores)


def test_schema_write_and_close(tmp_path):
    env = m1.create(tmp_path / "w")
    env.add_properties([{"name": "event.id", "type": "string"}])
    assert "event.id" in [p["name"] for p in env.schema()]
    report = env.write([{"event": {"id": "e1"}}, {"event": {"id": "e2"}}], publish=True)
    assert report.archived == 2 and report.keys == [0, 1]
    assert [r["event.id"] for r in env.get([0, 1]).to_pylist()] == ["e1", "e2"]
    env.close()
    assert env.closed
    with pytest.raises(m1.M1Error, match="closed"):
        env.next()


def test_catalog(tmp_path):
    cat = m1.catalog(tmp_path / "home")
    env = cat.create("demo")
    env.add_properties([("n", "integer")])
    env.append(pyarrow.table({"n": [1, 2, 3]}))
    names = [e["name"] for e in cat.list()]
    assert "demo" in names
    assert cat.open("demo").next() == 3


def test_an_environment_on_s3_with_options(tmp_path):
    """object_store options reach the store: an environment on moto, the S3 server of the tests."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(urllib.request.Request(f"{endpoint}/lake", method="PUT"), timeout=5)
                break
            except OSError:
                time.sleep(0.1)
        options = {"aws_endpoint": endpoint, "aws_access_key_id": "k", "aws_secret_access_key": "s",
                   "aws_region": "us-east-1", "aws_allow_http": True, "aws_virtual_hosted_style_request": False}
        with m1.create("s3://lake/py", **options) as env:
            env.add_properties([("n", "integer")])
            env.append(pyarrow.table({"n": [1, 2, 3]}))
        with m1.open("s3://lake/py", **options) as env:
            assert env.range(0, 10).to_pylist() and [r["n"] for r in env.range(0, 10).to_pylist()] == [1, 2, 3]
        with pytest.raises(m1.M1Error):
            m1.open("s3://lake/py", aws_endpoint="http://127.0.0.1:1", aws_access_key_id="k",
                    aws_secret_access_key="s", aws_region="us-east-1", aws_allow_http=True)
    finally:
        server.kill()


def test_schema_equals_the_cli(env):
    assert env.schema() == cli(env, "schema")


def iso(value):
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_every_read_equals_the_cli(env):
    """The typed calls (Arrow) and the generic ones (JSON) answer as the CLI does."""
    want = cli(env, "range", "-start", "1990", "-end", "2000")
    got = env.range(1990, 2000).to_pylist()
    assert len(got) == len(want) == 10
    for mine, theirs in zip(got, want):
        assert {k: iso(v) if k == "when" else v for k, v in mine.items() if v is not None} == theirs
    assert env.call("range", start=1990, end=2000) == want
    assert env.call("query", q="city:Oslo", rows=3, sort="n asc") == cli(env, "query", "-q", "city:Oslo", "-rows",
                                                                         "3", "-sort", "n asc")
    assert env.call("system") == cli(env, "system")
    env.sessions.add("s", shards=1, replicas=1)
    env.sessions["s"].update([{"upsert": [{"session": {"id": "a"}, "v": 1}]}])
    mine = (env.sessions["s"].get(["a"]), env.sessions["s"].query("v:1").to_dict(), env.call("session/list"))
    # A session store belongs to one process at a time: let the CLI have it.
    env.close()
    theirs = (cli(env, "session/get", "-store", "s", "-ids", '["a"]'),
              cli(env, "session/query", "-store", "s", "-q", "v:1"), cli(env, "session/list"))
    assert mine == theirs


def test_help_shows_the_query_syntax():
    assert "Query syntax" in m1.Environment.query.__doc__
    assert "n:[1 TO 5]" in m1.Environment.query.__doc__


def test_ctrl_c_stops_a_publish_and_commits_nothing(tmp_path):
    big = tmp_path / "big.jsonl"
    with big.open("w") as f:
        for i in range(600_000):
            f.write(json.dumps({"n": i, "city": f"c{i % 1000}", "pad": "p" * 40}) + "\n")
    script = textwrap.dedent(f"""
        import os, signal, threading, time, m1
        env = m1.create({str(tmp_path / "ctrlc")!r})
        env.add_properties([("n", "integer"), ("city", "string")])
        started = []
        def progress(read, total, rows, seconds):
            if not started:
                started.append(1)
                threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            env.publish({str(big)!r}, progress=progress)
            print("FINISHED")
        except KeyboardInterrupt:
            print("INTERRUPTED", env.next())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "INTERRUPTED" in out.stdout, out.stdout + out.stderr
    env = m1.open(tmp_path / "ctrlc")
    assert sum(b.num_rows for b in pyarrow.table(env.range(0, 10**9)).to_batches()) == 0, "nothing committed"
    assert env.next() >= 0


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's Python section, run as it is written."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"), encoding="utf-8").read()
    section = readme.split("## Python", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Python)", "exec"), {})
