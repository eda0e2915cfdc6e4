//! A fault-injecting `object_store` wrapper: fails chosen or random calls (errors, timeouts,
//! resets, short reads, a put that lands but reports failure).
// Each test file that includes it uses a different part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The kind of call a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Put,
    Get,
    Head,
    List,
    Delete,
}

/// What a failing call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A permanent error; nothing happens.
    Error,
    /// The connection timed out (transient); nothing happens.
    Timeout,
    /// The connection was reset (transient); nothing happens.
    Reset,
    /// A get returns only half of the bytes (reads only; others get `Reset`).
    ShortRead,
    /// The call is carried out, then reports an error: transient (`true`) or not.
    LandsButFails(bool),
}

/// Which calls fail.
enum Rule {
    /// Calls of `op` on paths containing `path`: let `skip` pass, then fail `times`.
    Chosen { op: Op, path: &'static str, skip: u32, times: u32, fault: Fault },
    /// The first `times` calls of each (op, path) fail, with faults in turn from `faults`.
    FirstTries { times: u32, faults: Vec<Fault> },
    /// Each call fails with probability `p`, with a fault drawn from `faults`.
    Random { p: f64, faults: Vec<Fault>, rng: Box<StdRng> },
}

#[derive(Default)]
struct Plan {
    rules: Vec<Rule>,
    seen: HashMap<(Op, String), u32>,
    injected: HashMap<Op, u32>,
}

/// An object store that fails calls of `inner` as its plan says.
#[derive(Clone)]
pub struct Faulty {
    inner: Arc<dyn ObjectStore>,
    plan: Arc<Mutex<Plan>>,
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl Faulty {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Faulty {
        Faulty { inner, plan: Arc::default() }
    }

    pub fn chosen(&self, op: Op, path: &'static str, skip: u32, times: u32, fault: Fault) {
        self.plan.lock().rules.push(Rule::Chosen { op, path, skip, times, fault });
    }

    pub fn first_tries(&self, times: u32, faults: Vec<Fault>) {
        self.plan.lock().rules.push(Rule::FirstTries { times, faults });
    }

    pub fn random(&self, p: f64, faults: Vec<Fault>, seed: u64) {
        self.plan.lock().rules.push(Rule::Random { p, faults, rng: Box::new(StdRng::seed_from_u64(seed)) });
    }

    /// Removes every rule; counts stay.
    pub fn heal(&self) {
        self.plan.lock().rules.clear();
    }

    /// How many faults were injected into calls of `op`.
    pub fn injected(&self, op: Op) -> u32 {
        self.plan.lock().injected.get(&op).copied().unwrap_or(0)
    }

    /// The fault for this call, if any.
    fn fault(&self, op: Op, path: &Path) -> Option<Fault> {
        let mut plan = self.plan.lock();
        let plan = &mut *plan;
        let seen = plan.seen.entry((op, path.to_string())).or_insert(0);
        let nth = *seen;
        *seen += 1;
        let mut chosen = None;
        for rule in &mut plan.rules {
            let fault = match rule {
                Rule::Chosen { op: o, path: p, skip, times, fault } if *o == op && path.as_ref().contains(*p) => {
                    if *skip > 0 {
                        *skip -= 1;
                        None
                    } else if *times > 0 {
                        *times -= 1;
                        Some(*fault)
                    } else {
                        None
                    }
                }
                Rule::FirstTries { times, faults } if nth < *times => Some(faults[nth as usize % faults.len()]),
                Rule::Random { p, faults, rng } => {
                    rng.random_bool(*p).then(|| faults[rng.random_range(0..faults.len())])
                }
                _ => None,
            };
            if fault.is_some() {
                chosen = fault;
                break;
            }
        }
        // A short read only makes sense for a read.
        let chosen = match chosen {
            Some(Fault::ShortRead) if op != Op::Get => Some(Fault::Reset),
            other => other,
        };
        if chosen.is_some() {
            *plan.injected.entry(op).or_insert(0) += 1;
        }
        chosen
    }
}

fn error(fault: Fault, op: Op, path: &Path) -> object_store::Error {
    use std::io::ErrorKind as K;
    let kind = match fault {
        Fault::Timeout => K::TimedOut,
        Fault::Reset | Fault::ShortRead | Fault::LandsButFails(true) => K::ConnectionReset,
        Fault::Error | Fault::LandsButFails(false) => K::PermissionDenied,
    };
    object_store::Error::Generic {
        store: "faulty",
        source: Box::new(std::io::Error::new(kind, format!("injected {fault:?} on {op:?} {path}"))),
    }
}

/// Runs `call` under the fault for (op, path): before it (the call does not happen) or after
/// it (`LandsButFails`).
async fn faulted<T>(
    store: &Faulty,
    op: Op,
    path: &Path,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match store.fault(op, path) {
        None => call.await,
        Some(f @ Fault::LandsButFails(_)) => {
            call.await?;
            Err(error(f, op, path))
        }
        Some(f) => Err(error(f, op, path)),
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        faulted(self, Op::Put, location, self.inner.put_opts(location, payload, opts)).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        faulted(self, Op::Put, location, self.inner.put_multipart_opts(location, opts)).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        match self.fault(op, location) {
            None => self.inner.get_opts(location, options).await,
            Some(Fault::ShortRead) => {
                let r = self.inner.get_opts(location, options).await?;
                let (meta, range, attributes, extensions) =
                    (r.meta.clone(), r.range.clone(), r.attributes.clone(), r.extensions.clone());
                let bytes = r.bytes().await?;
                let half = bytes.slice(..bytes.len() / 2);
                let payload = GetResultPayload::Stream(futures::stream::once(async move { Ok(half) }).boxed());
                Ok(GetResult { payload, meta, range, attributes, extensions })
            }
            Some(f @ Fault::LandsButFails(_)) => {
                self.inner.get_opts(location, options).await?;
                Err(error(f, op, location))
            }
            Some(f) => Err(error(f, op, location)),
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        faulted(self, Op::Get, location, self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let this = self.clone();
        locations
            .then(move |path| {
                let this = this.clone();
                async move {
                    let path = path?;
                    let call = async {
                        let one = futures::stream::iter([Ok(path.clone())]).boxed();
                        this.inner.delete_stream(one).next().await.unwrap_or(Ok(path.clone()))
                    };
                    faulted(&this, Op::Delete, &path, call).await
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let path = prefix.cloned().unwrap_or_default();
        match self.fault(Op::List, &path) {
            None => self.inner.list(prefix),
            Some(f @ Fault::LandsButFails(_)) => {
                let items: Vec<_> = vec![Err(error(f, Op::List, &path))];
                self.inner.list(prefix).take(1).chain(futures::stream::iter(items)).boxed()
            }
            Some(f) => futures::stream::iter([Err(error(f, Op::List, &path))]).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let path = prefix.cloned().unwrap_or_default();
        faulted(self, Op::List, &path, self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        faulted(self, Op::Put, to, self.inner.copy_opts(from, to, options)).await
    }
}
