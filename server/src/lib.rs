//! m1-server: the HTTP API (`m1 serve`) that speaks the seeds' endpoints over an environment.
//!
//! Not built yet: this crate holds the place the workspace layout gives it. Until it lands, use
//! the library (`m1::Environment`) or the `m1` command-line client.
