//! Session tickets as a resume presents them (`ticket.rs`, `registry.rs`): raw text; a
//! correctly signed payload of any bytes (so the fuzzer reaches the claims' JSON behind
//! the MAC); and issued claims, which must open to themselves. Every ticket that opens is
//! then resumed against a registry holding a few sessions of the same user.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use tim_proto::Platform;
use timd::policy::{LoginPolicy, LoginSettings};
use timd::registry::Registry;
use timd::session::{self, NewSession};
use timd::ticket::{TicketClaims, Tickets};

const KEY: &str = "fuzz-app-key";
const NOW: u64 = 1_700_000_000;

/// A signed ticket for an arbitrary payload, as `Tickets::issue` signs.
fn sign(payload: &[u8]) -> String {
    let payload = URL_SAFE_NO_PAD.encode(payload);
    let mut key = b"timd-ticket-v1\0".to_vec();
    key.extend_from_slice(KEY.as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(payload.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&tag[..16]))
}

#[derive(Debug, Arbitrary)]
struct Claims {
    app: u32,
    user: String,
    instance: String,
    platform: u8,
    since_ms: u64,
    expire_at: u64,
    sig_time: u64,
    valid_until: u64,
}

/// Resumes `claims` beside two live sessions of its user, under tight limits.
fn resume(claims: &TicketClaims) {
    let registry = Registry::new();
    let settings = LoginSettings {
        web_instances: 2,
        platform_instances: 1,
        policy: LoginPolicy::Dual,
    };
    let mut keep = Vec::new();
    for (instance, platform) in [("tab", Platform::Web), ("phone", Platform::Android)] {
        let (outbox, rx) = session::commands();
        keep.push(rx);
        registry.login(
            NewSession {
                app: claims.app,
                user: claims.user.clone(),
                instance: instance.into(),
                platform,
                expire_at: NOW + 3600,
                sig_time: NOW,
                outbox,
                client: None,
            },
            &settings,
        );
    }
    let (outbox, _rx) = session::commands();
    let before = registry.online_count();
    if registry.resume(claims, outbox, &settings).is_ok() {
        assert!(registry.online_count() <= before + 1);
    }
    let _ = registry.sweep(std::time::Instant::now(), NOW);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tickets = Tickets::new(KEY);
    let opened = match mode % 3 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(claims) = tickets.open(text) {
                panic!("opened an unsigned ticket: {claims:?}");
            }
            return;
        }
        1 => tickets.open(&sign(rest)),
        _ => {
            let Ok(c) = Claims::arbitrary(&mut Unstructured::new(rest)) else {
                return;
            };
            let claims = TicketClaims {
                app: c.app,
                user: c.user,
                instance: c.instance,
                platform: Platform::ALL[usize::from(c.platform) % Platform::ALL.len()],
                since_ms: c.since_ms,
                expire_at: c.expire_at,
                sig_time: c.sig_time,
                valid_until: c.valid_until,
            };
            let ticket = tickets.issue(&claims);
            let opened = tickets.open(&ticket);
            if ticket.len() <= 1024 {
                assert_eq!(opened.as_ref().ok(), Some(&claims));
            }
            opened
        }
    };
    if let Ok(claims) = opened {
        let _ = tickets.verify(&sign(b"x"), NOW);
        resume(&claims);
    }
});
