//! Management-API inputs: any text as an IP range, and any JSON as service settings, gives a
//! value or an error, never a panic; a parsed range contains what its own text names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m1_engine::service::{IpRange, ServiceSettings, check_ranges};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(r) = IpRange::parse(s) {
        let ip = s.trim().split('/').next().unwrap_or_default();
        if let Ok(ip) = ip.parse::<std::net::IpAddr>() {
            assert!(r.contains(ip), "{s:?} does not contain its own address");
        }
    }
    let _ = check_ranges("f", s.split(','));
    if let Ok(settings) = serde_json::from_str::<ServiceSettings>(s) {
        let _ = settings.check();
        let _ = settings.inbound();
    }
});
