//! `m1._native`: the Rust side of the Python package. Thin on purpose: every call goes through
//! the library's endpoint layer (`m1::endpoint`), as the CLI and the server do, except the few
//! that hand Arrow data across without copying (`get`, `range`, `query` items, `append`), and
//! `publish`, which runs beside the interpreter so that Ctrl-C can stop it. The pythonic surface
//! is `py/m1/__init__.py`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{RecordBatch, RecordBatchIterator, RecordBatchReader, StructArray};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use crossbeam_channel::{RecvTimeoutError, bounded as sync_channel};
use m1::endpoint::{EnvCall, OpsCall, Output, Scope};
use m1::{Catalog, EnvConfig, ErrorKind, QueryRequest};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCapsule, PyTuple};

pyo3::create_exception!(_native, M1Error, PyException, "An error from m1; its subclasses name the situation.");
pyo3::create_exception!(_native, BadInput, M1Error, "The request is malformed or does not fit the data.");
pyo3::create_exception!(_native, NotFound, M1Error, "What the request names does not exist.");
pyo3::create_exception!(_native, Forbidden, M1Error, "The caller may not do this.");
pyo3::create_exception!(_native, Exists, M1Error, "What the request would create exists already.");
pyo3::create_exception!(_native, Conflict, M1Error, "The request conflicts with the current state.");
pyo3::create_exception!(_native, Suspended, M1Error, "The environment is suspended.");
pyo3::create_exception!(_native, Busy, M1Error, "Too much contention or load right now; retrying may succeed.");
pyo3::create_exception!(_native, Internal, M1Error, "A failure of m1 or the machine, not of the request.");

/// The exception of `e`'s kind, with the library's message.
fn raise(e: m1::Error) -> PyErr {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::BadInput | ErrorKind::TooLarge => BadInput::new_err(msg),
        ErrorKind::NotFound => NotFound::new_err(msg),
        ErrorKind::Forbidden => Forbidden::new_err(msg),
        ErrorKind::Exists => Exists::new_err(msg),
        ErrorKind::Conflict => Conflict::new_err(msg),
        ErrorKind::Suspended => Suspended::new_err(msg),
        ErrorKind::Busy => Busy::new_err(msg),
        ErrorKind::Internal => Internal::new_err(msg),
    }
}

fn raise_any(e: impl Into<m1::Error>) -> PyErr {
    raise(e.into())
}

fn arrow_error(e: impl std::fmt::Display) -> ArrowError {
    ArrowError::ExternalError(e.to_string().into())
}

/// A tabular result, exported through the Arrow PyCapsule interface (`__arrow_c_stream__`):
/// pyarrow, polars and DuckDB take its buffers without copying.
///
/// It streams from m1 once and keeps the batches it has handed out (the same buffers, not
/// copies), so it can be exported again: DuckDB, for one, opens a stream for the schema and
/// another for the rows.
#[pyclass(frozen, module = "m1._native", name = "ArrowStream")]
struct ArrowStream {
    schema: SchemaRef,
    shared: Arc<Mutex<Replay>>,
}

/// The batches read so far, and the rest still to read.
struct Replay {
    seen: Vec<RecordBatch>,
    rest: Option<Box<dyn RecordBatchReader + Send>>,
    /// An export is being read: a second one at the same time would interleave.
    busy: bool,
}

impl ArrowStream {
    fn new(reader: Box<dyn RecordBatchReader + Send>) -> ArrowStream {
        let schema = reader.schema();
        ArrowStream {
            schema,
            shared: Arc::new(Mutex::new(Replay { seen: Vec::new(), rest: Some(reader), busy: false })),
        }
    }

    fn batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> ArrowStream {
        ArrowStream::new(Box::new(RecordBatchIterator::new(batches.into_iter().map(Ok), schema)))
    }
}

/// One export: the batches seen so far, then the rest as they arrive (kept for the next).
struct ReplayReader {
    schema: SchemaRef,
    shared: Arc<Mutex<Replay>>,
    next: usize,
}

impl Iterator for ReplayReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut replay = self.shared.lock().expect("not poisoned");
        if let Some(batch) = replay.seen.get(self.next) {
            self.next += 1;
            return Some(Ok(batch.clone()));
        }
        let item = replay.rest.as_mut()?.next();
        match &item {
            Some(Ok(batch)) => {
                replay.seen.push(batch.clone());
                self.next += 1;
            }
            Some(Err(_)) | None => replay.rest = None,
        }
        item
    }
}

impl RecordBatchReader for ReplayReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Drop for ReplayReader {
    fn drop(&mut self) {
        if let Ok(mut replay) = self.shared.lock() {
            replay.busy = false;
        }
    }
}

#[pymethods]
impl ArrowStream {
    /// Exports the rows as an `arrow_array_stream` capsule.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // The schema is m1's own; a consumer that asked for another casts it itself.
        let _ = requested_schema;
        {
            let mut replay = self.shared.lock().expect("not poisoned");
            if replay.busy {
                return Err(M1Error::new_err("this result is being read by another consumer; read it after that one"));
            }
            replay.busy = true;
        }
        let reader = ReplayReader { schema: self.schema.clone(), shared: self.shared.clone(), next: 0 };
        PyCapsule::new_with_value(py, FFI_ArrowArrayStream::new(Box::new(reader)), c"arrow_array_stream")
    }

    /// Exports the schema as an `arrow_schema` capsule (reads no rows).
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let schema = FFI_ArrowSchema::try_from(self.schema.as_ref()).map_err(|e| Internal::new_err(e.to_string()))?;
        PyCapsule::new_with_value(py, schema, c"arrow_schema")
    }

    /// The column names.
    #[getter]
    fn columns(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    /// Rows handed out so far (all of them once a consumer has read to the end).
    #[getter]
    fn rows_read(&self) -> usize {
        self.shared.lock().expect("not poisoned").seen.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A lake range that owns its environment handle, so it can stream after the call returns,
/// read in the consumer's own thread batch by batch.
struct OwnedRange {
    // Invariant: `range` borrows from `*_env`. It is declared first, so it is dropped first, and
    // the `Arc` keeps the environment alive at a stable address for as long as `range` lives;
    // nothing else can reach `range` with its widened lifetime.
    range: m1::Range<'static>,
    schema: SchemaRef,
    _env: Arc<m1::Environment>,
}

impl OwnedRange {
    fn new(env: Arc<m1::Environment>, start: u64, end: u64, properties: Option<&[String]>) -> m1::Result<OwnedRange> {
        let range = env.range(start, end, properties)?;
        // SAFETY: see the invariant on the struct: the borrowed environment outlives the range.
        let range: m1::Range<'static> = unsafe { std::mem::transmute::<m1::Range<'_>, m1::Range<'static>>(range) };
        let schema = range.schema().clone();
        Ok(OwnedRange { range, schema, _env: env })
    }
}

impl Iterator for OwnedRange {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.range.next()?.map_err(arrow_error))
    }
}

impl RecordBatchReader for OwnedRange {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// An open environment.
#[pyclass(frozen, module = "m1._native", name = "NativeEnvironment")]
struct NativeEnv {
    env: Mutex<Option<Arc<m1::Environment>>>,
}

impl NativeEnv {
    fn new(env: m1::Environment) -> NativeEnv {
        NativeEnv { env: Mutex::new(Some(Arc::new(env))) }
    }

    fn get_env(&self) -> PyResult<Arc<m1::Environment>> {
        self.env.lock().expect("not poisoned").clone().ok_or_else(|| M1Error::new_err("the environment is closed"))
    }
}

/// What an endpoint answered, for Python: ("empty", None), ("json", text) or (media type, bytes).
fn answer(py: Python<'_>, out: (String, Option<Vec<u8>>)) -> PyResult<Py<PyTuple>> {
    let (kind, body) = out;
    let body: Py<PyAny> = match body {
        None => py.None(),
        Some(b) if kind == "json" => String::from_utf8_lossy(&b).into_owned().into_pyobject(py)?.into_any().unbind(),
        Some(b) => PyBytes::new(py, &b).into_any().unbind(),
    };
    Ok(PyTuple::new(py, [kind.into_pyobject(py)?.into_any().unbind(), body])?.unbind())
}

fn owned(out: Output<'_>) -> m1::Result<(String, Option<Vec<u8>>)> {
    Ok(match out {
        Output::Empty => ("empty".into(), None),
        Output::Json(v) => ("json".into(), Some(v.to_string().into_bytes())),
        Output::Stream { content_type, write } => {
            let mut body = Vec::new();
            write(&mut body)?;
            let kind = if content_type.starts_with("application/json") { "json" } else { content_type };
            (kind.to_string(), Some(body))
        }
    })
}

#[pymethods]
impl NativeEnv {
    /// Closes the environment: later calls raise, and its session stores are closed in this
    /// process (their memory freed, their files free for another process). Idempotent.
    fn close(&self, py: Python<'_>) {
        let Some(env) = self.env.lock().expect("not poisoned").take() else { return };
        py.detach(|| {
            let sessions = env.sessions();
            for store in sessions.list().unwrap_or_default() {
                let _ = sessions.close(&store.name);
            }
        });
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.env.lock().expect("not poisoned").is_none()
    }

    /// Calls environment endpoint `path` with text parameters (the endpoint layer decodes them).
    fn call(&self, py: Python<'_>, path: &str, params: Vec<(String, String)>) -> PyResult<Py<PyTuple>> {
        let env = self.get_env()?;
        let out = py.detach(|| {
            let call = EnvCall::local(&env);
            m1::endpoint::call_env(&call, path, params).and_then(owned)
        });
        answer(py, out.map_err(raise)?)
    }

    /// `/publish` (and `/write`-style long calls) on a thread of its own: the interpreter stays
    /// responsive, `progress` is called with (bytes read, bytes total or None, rows, seconds), and
    /// Ctrl-C cancels the publish, which then commits nothing.
    #[pyo3(signature = (path, params, progress=None))]
    fn call_long(
        &self,
        py: Python<'_>,
        path: String,
        params: Vec<(String, String)>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyTuple>> {
        let env = self.get_env()?;
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel(1);
        let worker_cancel = cancel.clone();
        let worker = std::thread::spawn(move || {
            let report = |p: &m1::Progress| {
                if let Some(cb) = &progress {
                    Python::attach(|py| {
                        let args = (p.bytes_read, p.bytes_total, p.rows, p.elapsed.as_secs_f64());
                        if let Err(e) = cb.call1(py, args) {
                            e.print(py);
                        }
                    });
                }
            };
            let call = EnvCall {
                env: &env,
                ip: None,
                read_only: false,
                progress: Some(&report),
                read_roots: None,
                cancel: Some(worker_cancel),
                locations: None,
                body: None,
            };
            let _ = tx.send(m1::endpoint::call_env(&call, &path, params).and_then(owned));
        });
        let result = loop {
            match py.detach(|| rx.recv_timeout(Duration::from_millis(50))) {
                Ok(r) => break r,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(interrupt) = py.check_signals() {
                        // Stop the work and wait for it: when this returns, nothing of it is
                        // committed, and nothing runs on behind the caller's back.
                        cancel.store(true, Ordering::Relaxed);
                        let _ = py.detach(|| rx.recv());
                        let _ = worker.join();
                        return Err(interrupt);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let panic = worker.join().err().map(|p| m1_engine::panic_message(&*p));
                    return Err(Internal::new_err(format!("the call's thread ended: {}", panic.unwrap_or_default())));
                }
            }
        };
        let _ = worker.join();
        answer(py, result.map_err(raise)?)
    }

    /// The records with these keys, in the order asked, as an Arrow stream of one batch.
    #[pyo3(signature = (ids, properties=None))]
    fn get(&self, py: Python<'_>, ids: Vec<u64>, properties: Option<Vec<String>>) -> PyResult<ArrowStream> {
        let env = self.get_env()?;
        let batch = py.detach(|| env.get(&ids, properties.as_deref())).map_err(raise)?;
        Ok(ArrowStream::batches(batch.schema(), vec![batch]))
    }

    /// The records with keys in `start..end`, streamed batch by batch in key order, read as the
    /// consumer asks for them.
    #[pyo3(signature = (start, end, properties=None))]
    fn range(&self, py: Python<'_>, start: u64, end: u64, properties: Option<Vec<String>>) -> PyResult<ArrowStream> {
        let env = self.get_env()?;
        let range = py.detach(|| OwnedRange::new(env, start, end, properties.as_deref())).map_err(raise)?;
        Ok(ArrowStream::new(Box::new(range)))
    }

    /// `/query`: (count, facets as JSON text or None, the page's items as an Arrow stream).
    #[pyo3(signature = (q, stores, rows, start, sort=None, fl=None, facets=None))]
    #[allow(clippy::too_many_arguments)]
    fn query(
        &self,
        py: Python<'_>,
        q: String,
        stores: Vec<String>,
        rows: usize,
        start: usize,
        sort: Option<String>,
        fl: Option<Vec<String>>,
        facets: Option<String>,
    ) -> PyResult<(u64, Option<String>, ArrowStream)> {
        let env = self.get_env()?;
        let facets = match facets {
            Some(text) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| BadInput::new_err(format!("facets: not JSON ({e}): {text}")))?,
            ),
            None => None,
        };
        py.detach(|| {
            let mut request = QueryRequest::new(stores.first().map_or("index", String::as_str), &q);
            request.stores = stores;
            request.rows = rows;
            request.start = start;
            request.sort = sort;
            request.fl = fl;
            request.facets = facets;
            let answer = env.query(&request)?;
            let batches: Vec<RecordBatch> = answer.batches(env.engine()).collect::<Result<_, _>>()?;
            let facets = answer.facets.as_ref().map(|f| serde_json::Value::Object(f.clone()).to_string());
            Ok::<_, m1::Error>((answer.count, facets, ArrowStream::batches(answer.schema.clone(), batches)))
        })
        .map_err(raise)
    }

    /// Benchmark baseline: the library's own time for `get(ids)`, in seconds per call, over
    /// `iterations` calls (no Python in the loop). Used by `python/bench.py`.
    fn _time_get(&self, py: Python<'_>, ids: Vec<u64>, iterations: u32) -> PyResult<f64> {
        let env = self.get_env()?;
        py.detach(|| {
            let started = std::time::Instant::now();
            for _ in 0..iterations {
                std::hint::black_box(env.get(&ids, None)?);
            }
            Ok::<_, m1::Error>(started.elapsed().as_secs_f64() / f64::from(iterations.max(1)))
        })
        .map_err(raise)
    }

    /// Benchmark baseline: the library's own time to read `start..end` (every batch), in seconds
    /// per read, over `iterations` reads.
    #[pyo3(signature = (start, end, iterations, properties=None))]
    fn _time_range(
        &self,
        py: Python<'_>,
        start: u64,
        end: u64,
        iterations: u32,
        properties: Option<Vec<String>>,
    ) -> PyResult<f64> {
        let env = self.get_env()?;
        py.detach(|| {
            let started = std::time::Instant::now();
            for _ in 0..iterations {
                for batch in env.range(start, end, properties.as_deref())? {
                    std::hint::black_box(batch?);
                }
            }
            Ok::<_, m1::Error>(started.elapsed().as_secs_f64() / f64::from(iterations.max(1)))
        })
        .map_err(raise)
    }

    /// Appends Arrow data (an object with `__arrow_c_stream__` or `__arrow_c_array__`: a pyarrow
    /// Table or RecordBatch, a polars DataFrame, a DuckDB relation, ...); returns the report as
    /// JSON text.
    fn append(&self, py: Python<'_>, data: Bound<'_, PyAny>) -> PyResult<String> {
        let env = self.get_env()?;
        let batches = import_batches(&data)?;
        let report = py.detach(|| env.append_batches(batches)).map_err(raise)?;
        Ok(serde_json::json!({
            "rows": report.rows,
            "firstKey": report.first_key,
            "segments": report.segments,
            "version": report.version,
            "unmapped": report.unmapped,
        })
        .to_string())
    }
}

/// Reads every batch of an Arrow-exporting Python object, through its capsules.
fn import_batches(data: &Bound<'_, PyAny>) -> PyResult<Vec<RecordBatch>> {
    if data.hasattr("__arrow_c_stream__")? {
        let capsule = data.call_method0("__arrow_c_stream__")?;
        let capsule = capsule.cast::<PyCapsule>()?;
        let ptr = capsule.pointer_checked(Some(c"arrow_array_stream"))?.cast::<FFI_ArrowArrayStream>();
        // SAFETY: the capsule holds a valid ArrowArrayStream (the PyCapsule interface); the
        // reader moves it out and leaves a released one behind, which the capsule's destructor
        // then skips.
        let reader =
            unsafe { RecordBatchStreamReader::from_raw(ptr.as_ptr()) }.map_err(|e| BadInput::new_err(e.to_string()))?;
        return reader.collect::<Result<Vec<_>, _>>().map_err(|e| BadInput::new_err(e.to_string()));
    }
    if data.hasattr("__arrow_c_array__")? {
        let pair = data.call_method0("__arrow_c_array__")?;
        let (schema, array): (Bound<'_, PyCapsule>, Bound<'_, PyCapsule>) = pair.extract()?;
        let schema_ptr = schema.pointer_checked(Some(c"arrow_schema"))?.cast::<FFI_ArrowSchema>();
        let array_ptr = array.pointer_checked(Some(c"arrow_array"))?.cast::<FFI_ArrowArray>();
        // SAFETY: the capsules hold a valid ArrowSchema and ArrowArray (the PyCapsule
        // interface); the array is moved out, leaving a released one for the capsule to skip.
        let data = unsafe {
            let array = std::ptr::replace(array_ptr.as_ptr(), FFI_ArrowArray::empty());
            arrow::ffi::from_ffi(array, &*schema_ptr.as_ptr())
        }
        .map_err(|e| BadInput::new_err(e.to_string()))?;
        let batch = RecordBatch::from(StructArray::from(data));
        return Ok(vec![batch]);
    }
    Err(BadInput::new_err(
        "append takes Arrow data: an object with __arrow_c_stream__ or __arrow_c_array__ (a pyarrow Table, a polars \
         DataFrame, a DuckDB relation)",
    ))
}

/// Creates an environment at `location` (a directory or an object-store URL); `options` are
/// object_store settings for a URL (endpoint, credentials), over the usual environment variables.
#[pyfunction]
#[pyo3(signature = (location, segment_rows=None, shards=None, workers=None, options=None))]
fn create(
    py: Python<'_>,
    location: String,
    segment_rows: Option<usize>,
    shards: Option<u32>,
    workers: Option<u32>,
    options: Option<Vec<(String, String)>>,
) -> PyResult<NativeEnv> {
    let mut config = EnvConfig::default();
    if let Some(n) = segment_rows {
        config.segment_rows = n;
    }
    if let Some(n) = shards {
        config.shards = n;
    }
    if let Some(n) = workers {
        config.workers = n;
    }
    let options = options.unwrap_or_default();
    py.detach(|| m1_engine::Environment::create_with(&location, &options, config))
        .map(|e| NativeEnv::new(m1::Environment::from_engine(e)))
        .map_err(raise_any)
}

/// Opens the environment at `location` (`options` as for `create`).
#[pyfunction]
#[pyo3(signature = (location, options=None))]
fn open(py: Python<'_>, location: String, options: Option<Vec<(String, String)>>) -> PyResult<NativeEnv> {
    let options = options.unwrap_or_default();
    py.detach(|| m1_engine::Environment::open_with(&location, &options))
        .map(|e| NativeEnv::new(m1::Environment::from_engine(e)))
        .map_err(raise_any)
}

/// Opens environment `name` of the catalog in `home` (default `$M1_HOME`, else `~/.m1`).
#[pyfunction]
#[pyo3(signature = (name, home=None))]
fn open_in(py: Python<'_>, name: String, home: Option<String>) -> PyResult<NativeEnv> {
    py.detach(|| {
        let catalog = Catalog::open(home.map_or_else(Catalog::default_home, Into::into))?;
        m1::Environment::open_in(&catalog, &name)
    })
    .map(NativeEnv::new)
    .map_err(raise_any)
}

/// Calls ops endpoint `path` (`env/list`, `env/create`, ...) on the catalog in `home`.
#[pyfunction]
#[pyo3(signature = (path, params, home=None))]
fn call_ops(
    py: Python<'_>,
    path: String,
    params: Vec<(String, String)>,
    home: Option<String>,
) -> PyResult<Py<PyTuple>> {
    let out = py.detach(|| {
        let catalog = Catalog::open(home.map_or_else(Catalog::default_home, Into::into))?;
        let opener = m1::endpoint::FreshOpener(&catalog);
        let call = OpsCall { catalog: &catalog, envs: &opener };
        m1::endpoint::call_ops(&call, &path, params).and_then(owned)
    });
    answer(py, out.map_err(raise_any)?)
}

/// Every endpoint: (scope "env" or "ops", path, summary, [(name, kind, required, default, help)]).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn endpoints() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, String, bool, Option<&'static str>, &'static str)>,
)> {
    m1::endpoint::ENDPOINTS
        .iter()
        .map(|e| {
            let scope = if e.scope == Scope::Env { "env" } else { "ops" };
            let params = e
                .params
                .iter()
                .map(|p| (p.name, format!("{:?}", p.kind).to_lowercase(), p.required, p.default, p.help))
                .collect();
            (scope, e.path, e.summary, params)
        })
        .collect()
}

/// The Python module `m1._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<NativeEnv>()?;
    m.add_class::<ArrowStream>()?;
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_function(wrap_pyfunction!(open_in, m)?)?;
    m.add_function(wrap_pyfunction!(call_ops, m)?)?;
    m.add_function(wrap_pyfunction!(endpoints, m)?)?;
    for (name, class) in [
        ("M1Error", py.get_type::<M1Error>()),
        ("BadInput", py.get_type::<BadInput>()),
        ("NotFound", py.get_type::<NotFound>()),
        ("Forbidden", py.get_type::<Forbidden>()),
        ("Exists", py.get_type::<Exists>()),
        ("Conflict", py.get_type::<Conflict>()),
        ("Suspended", py.get_type::<Suspended>()),
        ("Busy", py.get_type::<Busy>()),
        ("Internal", py.get_type::<Internal>()),
    ] {
        m.add(name, class)?;
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
