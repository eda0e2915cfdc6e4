//! m1-query: reading the lake.
//!
//! [`lake::get`] answers key lookups and [`lake::range`] streams key ranges, both as Arrow
//! batches; [`encode`] turns batches into the JSON records of the API.

pub mod encode;
pub mod error;
pub mod lake;

pub use error::{QueryError, Result};
pub use lake::{Range, get, range};
