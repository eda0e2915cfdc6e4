//! Back-off for failed logins: after a few wrong passwords for one user, or from one address,
//! further attempts are refused (429 with `Retry-After`) for a time that doubles with each
//! failure, so guessing a password over HTTP takes years instead of seconds.
//!
//! Invariant: the check happens before the password is verified, so a throttled attempt costs
//! the server nothing and tells the caller nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Result, ServerError};

/// Failures allowed before the back-off starts.
const FREE_FAILURES: u32 = 5;
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Entries idle this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    until: Instant,
    last: Instant,
}

/// Failed logins by user and by address.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    /// Refuses an attempt for `keys` (e.g. the user and the address) while any is backed off.
    pub fn check(&self, keys: &[String]) -> Result<()> {
        let now = Instant::now();
        let map = self.failures.lock();
        let wait = keys.iter().filter_map(|k| map.get(k)).map(|f| f.until.saturating_duration_since(now)).max();
        match wait {
            Some(w) if !w.is_zero() => Err(ServerError::TooManyAttempts(
                format!("too many failed logins; try again in {} s", w.as_secs().max(1)),
                w.as_secs().max(1),
            )),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt for each key.
    pub fn failed(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.failures.lock();
        map.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
        for k in keys {
            let f = map.entry(k.clone()).or_insert(Failures { count: 0, until: now, last: now });
            f.count += 1;
            f.last = now;
            if f.count >= FREE_FAILURES {
                let doublings = (f.count - FREE_FAILURES).min(20);
                f.until = now + Duration::from_secs(1u64 << doublings).min(MAX_WAIT);
            }
        }
    }

    /// Forgets the failures of a key after a successful login (the user's, not the address's:
    /// one right password must not unlock guessing at other users).
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_after_five_failures_and_forgets_on_success() {
        let t = Throttle::default();
        let keys = ["user:a".to_string(), "ip:1".to_string()];
        for _ in 0..4 {
            t.failed(&keys);
            t.check(&keys).unwrap();
        }
        t.failed(&keys);
        let err = t.check(&keys).unwrap_err();
        assert!(matches!(err, ServerError::TooManyAttempts(_, 1)), "{err:?}");
        assert!(t.check(&["user:b".to_string()]).is_ok(), "other users are not affected");
        t.succeeded("user:a");
        assert!(t.check(&["user:a".to_string()]).is_ok());
        assert!(t.check(&["ip:1".to_string()]).is_err(), "the address stays backed off");
    }
}
