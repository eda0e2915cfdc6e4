//! HTTP parameter decoding, as `m1 serve` does it: any query string and body (form,
//! JSON object, multipart or none) for any endpoint becomes parameters and then typed `Args`, or
//! a client error (4xx) naming what is wrong; never a panic, a 5xx or a hang. Every declared
//! parameter then reads back through its typed getter without panicking.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use m1::endpoint::{ENDPOINTS, args::Args, args::Kind};
use m1_server::params::Params;

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());

const CONTENT_TYPES: &[&str] =
    &["", "application/x-www-form-urlencoded", "application/json", "multipart/form-data; boundary=XyZ", "text/plain"];

fuzz_target!(|data: &[u8]| {
    let [pick, kind, rest @ ..] = data else { return };
    let endpoint = &ENDPOINTS[*pick as usize % ENDPOINTS.len()];
    let (query, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut params = Params::from_query(&String::from_utf8_lossy(query));
    let mut headers = HeaderMap::new();
    let content_type = CONTENT_TYPES[*kind as usize % CONTENT_TYPES.len()];
    if !content_type.is_empty() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    let body = Body::from(body.to_vec());
    let read = RUNTIME.block_on(params.read_body(&headers, body, 64 * 1024, Duration::from_secs(5)));
    if let Err(e) = read {
        assert!(e.status().is_client_error(), "{e} answered {}", e.status());
        return;
    }
    let args = match Args::new(endpoint, params.into_pairs()) {
        Ok(args) => args,
        Err(e) => {
            let status = m1_server::error::kind_status(e.kind());
            assert!(status.is_client_error(), "{}: {e} answered {status}", endpoint.path);
            return;
        }
    };
    for p in endpoint.params {
        match p.kind {
            Kind::Text => drop(args.text(p.name)),
            Kind::Int => drop(args.int(p.name)),
            Kind::Bool => drop(args.bool(p.name)),
            Kind::Json => drop(args.json_value(p.name)),
            Kind::List => drop(args.list(p.name)),
            Kind::Keys => drop(args.keys(p.name)),
        }
        let _ = args.count(p.name, 1);
    }
});
