//! m1-query: asking questions of records.
//!
//! Always: the query language — [`syntax::parse`] turns Lucene/Solr query text into a
//! [`Query`], and a [`Matcher`] evaluates one against a single record.
//!
//! With the `lake` feature (default), [`lake::get`] answers key lookups and [`lake::range`]
//! streams key ranges, both as Arrow batches, and [`encode`] turns batches into the JSON records
//! of the API.
//!
//! With the `stores` feature (default), [`store`] keeps tantivy data stores over the lake and
//! answers `/query` ([`store::search::run`]).

#[cfg(feature = "lake")]
pub mod encode;
pub mod error;
#[cfg(feature = "lake")]
pub mod lake;
pub mod matcher;
#[cfg(feature = "sessions")]
pub mod session;
#[cfg(feature = "stores")]
pub mod store;
pub mod syntax;

pub use error::{QueryError, Result};
#[cfg(feature = "lake")]
pub use lake::{Range, get, get_at, range, range_at, state_for};
pub use matcher::Matcher;
#[cfg(feature = "sessions")]
pub use session::{SessionQuery, SessionResult, SessionStore, Sessions, StoreInfo, UpdateReport};
#[cfg(feature = "stores")]
pub use store::{QueryAnswer, QueryRequest, StoreDef, StoreKind, Stores};
pub use syntax::{Query, SyntaxError, parse};
