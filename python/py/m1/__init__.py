"""m1, the embedded data lake, from Python.

Publish csv, tsv, json and jsonl files (plain, gz, zip, zst) into a lake of sharded Parquet
segments behind a Delta log; every record gets a sequential ``_m1key``. Look records up by key
or key range, query them (Lucene syntax, facets), and keep mutable session documents::

    import m1
    with m1.create("/tmp/lake") as env:
        env.add_properties([("city", "string"), ("n", "integer")])
        env.publish("events.jsonl")
        table = env.range(0, 1000).to_arrow()          # a pyarrow.Table, without copying
        hits = env.query("city:Oslo", rows=10, facets={"c": {"type": "terms", "field": "city"}})

Tabular results implement the Arrow PyCapsule interface (``__arrow_c_stream__``), so
``pyarrow.table(r)``, ``polars.DataFrame(r)`` and ``duckdb.sql("select * from r")`` read them
without copying and without needing pyarrow. Errors are :class:`M1Error` subclasses named by
situation (:class:`BadInput`, :class:`NotFound`, ...), with m1's own message.

Every endpoint of m1 (the same ones the CLI and ``m1 serve`` answer) is also callable by its
path: ``env.call("store/list")``, or as a method with ``/`` written ``_``: ``env.store_list()``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import _native
from ._native import (
    BadInput,
    Busy,
    Conflict,
    Exists,
    Forbidden,
    Internal,
    M1Error,
    NotFound,
    Suspended,
)

__version__ = _native.__version__

__all__ = [
    "Environment",
    "Result",
    "QueryResult",
    "Report",
    "Sessions",
    "SessionStore",
    "create",
    "open",
    "catalog",
    "M1Error",
    "BadInput",
    "NotFound",
    "Forbidden",
    "Exists",
    "Conflict",
    "Suspended",
    "Busy",
    "Internal",
]

QUERY_SYNTAX = """Query syntax (Lucene): `field:value` matches a property (`city:Oslo`); a bare term
searches every property. `"a phrase"`, `pre*` and `o?lo` wildcards, ranges `n:[1 TO 5]`
(inclusive), `n:{1 TO 5}` (exclusive), `t:[2021-01-01 TO *]` (open), `field:*` (has a value),
`*:*` (everything). Combine with AND, OR, NOT, `+must`, `-must_not` and parentheses; terms
side by side mean OR; NOT binds tighter than AND, AND tighter than OR. A text property matches
words (lowercased); a string property matches its whole value."""


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _text(value: Any) -> str:
    """A parameter value as the endpoint layer reads it: JSON for lists and objects."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def _params(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(k, _text(v)) for k, v in params.items() if v is not None]


def _decode(answer: tuple[str, Any]) -> Any:
    kind, body = answer
    if kind == "empty":
        return None
    if kind == "json":
        return json.loads(body)
    return body


def _print_progress(read: int, total: int | None, rows: int, seconds: float) -> None:
    share = f" of {total}" if total else ""
    print(f"\rm1 publish: {read}{share} bytes, {rows} records, {seconds:.1f} s", end="", flush=True)


class Report:
    """What a call reported: attributes in snake_case (``report.rows_published``, and
    ``report.keys`` for the keys a write published), the original camelCase JSON by item
    (``report["rowsPublished"]``), and :meth:`to_dict`."""

    def __init__(self, data: Mapping[str, Any] | None):
        self._data = dict(data or {})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        for key, value in self._data.items():
            if key == name or _camel_to_snake(key) == name:
                return Report(value) if isinstance(value, dict) else value
        raise AttributeError(f"the report has no {name!r}; it has {', '.join(map(_camel_to_snake, self._data))}")

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __eq__(self, other: object) -> bool:
        return self._data == (other._data if isinstance(other, Report) else other)

    def __dir__(self):
        return sorted(set(super().__dir__()) | {_camel_to_snake(k) for k in self._data})

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return dict(self._data)

    def __repr__(self) -> str:
        inner = ", ".join(f"{_camel_to_snake(k)}={v!r}" for k, v in self._data.items())
        return f"Report({inner})"


class Result:
    """A tabular result: an Arrow stream from m1.

    Pass it to ``pyarrow.table``, ``polars.DataFrame`` or ``duckdb.sql`` as it is (the Arrow
    PyCapsule interface; no copy), or call :meth:`to_arrow`, :meth:`to_pandas`,
    :meth:`to_polars`, :meth:`to_pylist`. It can be read more than once: it keeps the batches
    it has handed out (the same buffers).
    """

    def __init__(self, stream: _native.ArrowStream):
        self._stream = stream

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self._stream.__arrow_c_stream__(requested_schema)

    def __arrow_c_schema__(self) -> Any:
        return self._stream.__arrow_c_schema__()

    @property
    def columns(self) -> list[str]:
        """The column names."""
        return self._stream.columns

    def to_arrow(self):
        """A ``pyarrow.Table`` (needs pyarrow: ``pip install m1[pyarrow]``)."""
        import pyarrow

        return pyarrow.table(self)

    def to_pandas(self):
        """A ``pandas.DataFrame`` (needs pyarrow and pandas: ``pip install m1[pandas]``)."""
        return self.to_arrow().to_pandas()

    def to_polars(self):
        """A ``polars.DataFrame`` (needs polars: ``pip install m1[polars]``)."""
        import polars

        return polars.DataFrame(self)

    def to_pylist(self) -> list[dict[str, Any]]:
        """The rows as dicts (needs pyarrow)."""
        return self.to_arrow().to_pylist()

    def __repr__(self) -> str:
        return f"Result({', '.join(self.columns)}; {self._stream.rows_read} rows read so far)"


@dataclasses.dataclass(frozen=True)
class QueryResult:
    """The answer to a query: how many records match, the facets asked for, and the page's
    items (a :class:`Result`)."""

    count: int
    facets: dict[str, Any] | None
    items: Result

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.items.__arrow_c_stream__(requested_schema)


class SessionStore:
    """One session store: keyed, mutable JSON documents (``/session/*``)."""

    def __init__(self, env: Environment, name: str):
        self._env, self.name = env, name

    def update(self, ops: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Report:
        """Applies ``session/update`` ops atomically and durably: a list such as
        ``[{"upsert": [doc, ...]}, {"merge": [...]}, {"delete": [key, ...]}]``."""
        return Report(self._env.call("session/update", store=self.name, ops=ops))

    def query(self, q: str = "*", **params: Any) -> Report:
        """Documents matching ``q`` (the query syntax of :meth:`Environment.query`)."""
        return Report(self._env.call("session/query", store=self.name, q=q, **params))

    def get(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The documents with these keys (missing keys are left out)."""
        return self._env.call("session/get", store=self.name, ids=list(ids))

    def __repr__(self) -> str:
        return f"SessionStore({self.name!r})"


class Sessions(Mapping[str, SessionStore]):
    """The environment's session stores: ``env.sessions["stash"]``; ``add``, ``drop``."""

    def __init__(self, env: Environment):
        self._env = env

    def _names(self) -> list[str]:
        listed = self._env.call("session/list")
        items = listed.get("stores", listed) if isinstance(listed, dict) else listed
        return [s["name"] if isinstance(s, dict) else s for s in items]

    def __getitem__(self, name: str) -> SessionStore:
        return SessionStore(self._env, name)

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def add(self, name: str, **params: Any) -> Any:
        """Adds a session store (``session/add``; ``key`` names the key property)."""
        return self._env.call("session/add", store=name, **params)

    def drop(self, name: str) -> Any:
        """Drops a session store and its documents."""
        return self._env.call("session/drop", store=name)


def _endpoint_table() -> dict[tuple[str, str], tuple[str, list]]:
    return {(scope, path): (summary, params) for scope, path, summary, params in _native.endpoints()}


_ENDPOINTS = _endpoint_table()


class Environment:
    """An open environment. Close it with :meth:`close`, or use ``with``."""

    def __init__(self, native: _native.NativeEnvironment, location: str):
        self._native = native
        self.location = location
        self.sessions = Sessions(self)

    # --- lifecycle

    def close(self) -> None:
        """Closes the environment: later calls raise :class:`M1Error`, and its session stores are
        released (another process, the CLI say, may open them)."""
        self._native.close()

    @property
    def closed(self) -> bool:
        return self._native.closed

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Environment({self.location!r}{', closed' if self.closed else ''})"

    # --- any endpoint

    def call(self, endpoint: str, **params: Any) -> Any:
        """Calls any environment endpoint by its path (``"schema"``, ``"store/list"``, ...) with
        its parameters; lists and dicts are sent as JSON. Returns the decoded JSON answer."""
        return _decode(self._native.call(endpoint.strip("/"), _params(params)))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        path = name.replace("_", "/")
        if ("env", path) not in _ENDPOINTS:
            raise AttributeError(f"{type(self).__name__} has no attribute or endpoint {name!r}")
        summary, params = _ENDPOINTS[("env", path)]

        def endpoint(**kwargs: Any) -> Any:
            return self.call(path, **kwargs)

        endpoint.__name__ = name
        endpoint.__doc__ = summary + "\n\nParameters: " + ", ".join(p[0] for p in params)
        return endpoint

    # --- schema

    def schema(self) -> list[dict[str, Any]]:
        """The properties of the schema."""
        answer = self.call("schema")
        return answer.get("properties", answer) if isinstance(answer, dict) else answer

    def add_properties(self, properties: Iterable[Mapping[str, Any] | tuple[str, str]]) -> Any:
        """Adds properties: dicts like ``{"name": "city", "type": "string"}`` or
        ``(name, type)`` pairs. Types: string, text, integer, double, date, boolean."""
        props = [p if isinstance(p, Mapping) else {"name": p[0], "type": p[1]} for p in properties]
        return self.call("schema/add", properties=props)

    def wipe_schema(self) -> Any:
        """Removes every property from the schema (the data stays in the lake)."""
        return self.call("schema/wipe")

    # --- writing

    def publish(
        self,
        path: str,
        rules: Mapping[str, Any] | str | None = None,
        format: str | None = None,
        permissive: bool | None = None,
        progress: Callable[..., Any] | bool | None = None,
        **params: Any,
    ) -> Report:
        """Publishes the files ``path`` names (a file, directory, glob or object-store URL),
        atomically. ``progress`` is called with (bytes read, bytes total or None, rows, seconds)
        about ten times a second; ``True`` prints it. Ctrl-C stops the publish, committing
        nothing. Returns the report (``rows_published``, ``first_key``, ``key_ranges``, ...)."""
        printing = progress is True
        if printing:
            progress = _print_progress
        if isinstance(rules, Mapping):
            rules = json.dumps(rules)
        query = _params({"file": path, "rules": rules, "format": format, "permissive": permissive, **params})
        report = _decode(self._native.call_long("publish", query, progress or None))
        if printing:
            print()
        return Report(report)

    def write(self, items: Sequence[Mapping[str, Any]], publish: bool = False, **params: Any) -> Report:
        """Archives raw JSON items (``/write``) and, with ``publish``, publishes them; returns the
        report (``archived``, ``file``, ``keys``) once done."""
        params.setdefault("async", False)
        return Report(self.call("write", items=list(items), publish=publish, **params))

    def append(self, data: Any) -> Report:
        """Appends Arrow data (a pyarrow Table or RecordBatch, a polars DataFrame, a DuckDB
        relation: anything with ``__arrow_c_stream__`` or ``__arrow_c_array__``), typed by the
        schema. Returns the report (``rows``, ``first_key``, ...)."""
        return Report(json.loads(self._native.append(data)))

    # --- reading

    def next(self) -> int:
        """The next ``_m1key`` a record will get."""
        answer = self.call("next")
        return answer["next"] if isinstance(answer, dict) else int(answer)

    def get(self, ids: Sequence[int], properties: Sequence[str] | None = None) -> Result:
        """The records with these keys, in the order asked (unknown keys left out)."""
        return Result(self._native.get(list(ids), list(properties) if properties is not None else None))

    def range(self, start: int, end: int, properties: Sequence[str] | None = None) -> Result:
        """The records with keys in ``start..end``, streamed in key order."""
        return Result(self._native.range(start, end, list(properties) if properties is not None else None))

    def query(
        self,
        q: str,
        store: str | Sequence[str] = "index",
        rows: int = 10,
        start: int = 0,
        sort: str | None = None,
        fl: Sequence[str] | None = None,
        facets: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        """Searches data stores; the count, facets and one page of items.

        ``sort`` is ``"property asc|desc"`` (or ``score``, ``_m1key``); ``fl`` picks the items'
        properties; ``facets`` maps names to ``{"type": "terms", "field": ...}`` or ranges.

        """
        stores = [store] if isinstance(store, str) else list(store)
        count, facet_json, items = self._native.query(
            q, stores, rows, start, sort, list(fl) if fl is not None else None, json.dumps(facets) if facets else None
        )
        return QueryResult(count, json.loads(facet_json) if facet_json else None, Result(items))

    query.__doc__ = (query.__doc__ or "") + QUERY_SYNTAX

    def vacuum(self, **params: Any) -> Report:
        """Deletes lake files no commit references (older than the safety window)."""
        return Report(self.call("vacuum", **params))


def _store_options(options: Mapping[str, Any] | None) -> list[tuple[str, str]] | None:
    return [(k, _text(v)) for k, v in options.items()] if options else None


def create(location: str | os.PathLike, segment_rows: int | None = None, shards: int | None = None,
           workers: int | None = None, **options: Any) -> Environment:
    """Creates an environment at ``location``: a directory, or an ``s3://``, ``gs://``, ``az://``
    URL. Keyword ``options`` are object_store settings for a URL (``aws_endpoint``,
    ``aws_access_key_id``, ``azure_storage_account_name``, ...), over the usual environment
    variables (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``)."""
    location = os.fspath(location)
    return Environment(_native.create(location, segment_rows, shards, workers, _store_options(options)), location)


def open(location: str | os.PathLike, **options: Any) -> Environment:  # noqa: A001 - m1.open, like the CLI
    """Opens the environment at ``location`` (``options`` as for :func:`create`)."""
    location = os.fspath(location)
    return Environment(_native.open(location, _store_options(options)), location)


class Catalog:
    """The catalog of named environments in ``$M1_HOME`` (``~/.m1``), as the CLI uses it."""

    def __init__(self, home: str | os.PathLike | None = None):
        self.home = os.fspath(home) if home is not None else None

    def call(self, endpoint: str, **params: Any) -> Any:
        """Calls an ops endpoint (``env/list``, ``env/create``, ``env/destroy``, ...)."""
        return _decode(_native.call_ops(endpoint.strip("/"), _params(params), self.home))

    def list(self) -> Any:
        """The catalog's environments."""
        return self.call("env/list")

    def create(self, name: str, **params: Any) -> Environment:
        """Creates environment ``name`` (``env/create``) and opens it."""
        self.call("env/create", env=name, **params)
        return self.open(name)

    def open(self, name: str) -> Environment:
        """Opens environment ``name``."""
        return Environment(_native.open_in(name, self.home), name)

    def __repr__(self) -> str:
        return f"Catalog({self.home or '$M1_HOME'!r})"


def catalog(home: str | os.PathLike | None = None) -> Catalog:
    """The catalog in ``home`` (default ``$M1_HOME``, else ``~/.m1``)."""
    return Catalog(home)
