//! The app every native test runs as, and how long "at once" may take.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const APP: u32 = 1_400_000_001;
pub const KEY: &str = "integration-test-key";
/// Generous bound for anything the server should do "at once" (two shared cores).
pub const WAIT: Duration = Duration::from_secs(3);

/// Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A UserSig for `user` from the test app, valid for an hour from now.
pub fn sig(user: &str) -> String {
    tim_usersig::generate(APP, KEY, user, now(), 3600)
}
