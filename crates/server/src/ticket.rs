//! Session tickets: what an instance presents to resume its session on a new socket.
//!
//! A ticket is self-contained and signed (HMAC-SHA256 keyed from the app's secret key), so
//! any `timd` process — this one after a restart, or another node — can verify it without
//! shared state, and a resume after a crash still knows which login it continues (user,
//! instance, platform, and *when* it logged in, which the "earliest is kicked" rule needs).
//! Format: `base64url(JSON claims) "." base64url(first 16 bytes of the MAC)`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tim_proto::Platform;

/// Longest a ticket is accepted after it was issued, whatever the UserSig's validity: bounds
/// how long a kicked instance's tombstone must be remembered (see `registry`).
pub const TICKET_LIFETIME_SECS: u64 = 24 * 3600;

/// Longest ticket text accepted (a real one is ~250 bytes).
const MAX_TICKET_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    /// The app (SDKAppID) the session belongs to; 0 in tickets issued before timd served
    /// several apps (they belong to the default app).
    #[serde(rename = "a", default, skip_serializing_if = "is_zero")]
    pub app: u32,
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "i")]
    pub instance: String,
    #[serde(rename = "p")]
    pub platform: Platform,
    /// When this session logged in, unix ms: its place in the "earliest first" order.
    #[serde(rename = "s")]
    pub since_ms: u64,
    /// The UserSig's expiry, unix seconds.
    #[serde(rename = "e")]
    pub expire_at: u64,
    /// The UserSig's issue time, unix seconds (a REST kick refuses sessions issued before it).
    #[serde(rename = "t")]
    pub sig_time: u64,
    /// The ticket itself is good until then, unix seconds.
    #[serde(rename = "v")]
    pub valid_until: u64,
}

/// A ticket's `payload.tag`, bounded in length.
fn parts(ticket: &str) -> Result<(&str, &str), TicketError> {
    if ticket.len() > MAX_TICKET_LEN {
        return Err(TicketError::Malformed);
    }
    ticket.split_once('.').ok_or(TicketError::Malformed)
}

/// The JSON behind a payload.
fn claims_of<T: serde::de::DeserializeOwned>(payload: &str) -> Result<T, TicketError> {
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TicketError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TicketError::Malformed)
}

fn is_zero(app: &u32) -> bool {
    *app == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("session ticket is malformed")]
    Malformed,
    #[error("session ticket signature check failed")]
    BadSignature,
    #[error("session ticket has expired")]
    Expired,
    #[error("session ticket names an app this server does not serve")]
    UnknownApp,
}

/// Signs and checks tickets for one app.
#[derive(Clone)]
pub struct Tickets {
    mac: Hmac<Sha256>,
}

impl Tickets {
    pub fn new(app_key: &str) -> Tickets {
        let mut key = b"timd-ticket-v1\0".to_vec();
        key.extend_from_slice(app_key.as_bytes());
        Tickets {
            mac: Hmac::new_from_slice(&key).expect("HMAC takes any key length"),
        }
    }

    pub fn issue(&self, claims: &TicketClaims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize");
        // One allocation for the whole ticket: payload, '.', the 16-byte tag's 22 characters.
        let mut ticket = String::with_capacity((json.len() * 4).div_ceil(3) + 23);
        URL_SAFE_NO_PAD.encode_string(&json, &mut ticket);
        let tag = self.tag(ticket.as_bytes());
        ticket.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut ticket);
        ticket
    }

    /// Verifies signature and lifetime at `now` (unix seconds).
    pub fn verify(&self, ticket: &str, now: u64) -> Result<TicketClaims, TicketError> {
        let claims = self.open(ticket)?;
        if now >= claims.valid_until {
            return Err(TicketError::Expired);
        }
        Ok(claims)
    }

    /// Verifies the signature only. A resume uses this: it never evicts anyone (the
    /// session fits beside the instances online now, or learns it was kicked), so even a
    /// ticket past its lifetime cannot take a slot from anyone; refusing it instead would
    /// make the client log in again with its UserSig, which can.
    pub fn open(&self, ticket: &str) -> Result<TicketClaims, TicketError> {
        let (payload, tag) = parts(ticket)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TicketError::Malformed)?;
        if tag.len() != 16 {
            return Err(TicketError::BadSignature);
        }
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        // Constant-time comparison of the 16-byte truncated tag.
        mac.verify_truncated_left(&tag)
            .map_err(|_| TicketError::BadSignature)?;
        claims_of(payload)
    }

    /// The app a ticket names, before any check (0: none, an older ticket). Only picks the
    /// key to verify with: nothing else of an unverified ticket is trusted.
    pub fn peek_app(ticket: &str) -> Result<u32, TicketError> {
        #[derive(Deserialize)]
        struct AppOnly {
            #[serde(rename = "a", default)]
            app: u32,
        }
        let (payload, _) = parts(ticket)?;
        claims_of::<AppOnly>(payload).map(|a| a.app)
    }

    fn tag(&self, payload: &[u8]) -> [u8; 16] {
        let mut mac = self.mac.clone();
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> TicketClaims {
        TicketClaims {
            app: 1_400_000_000,
            user: "alice".into(),
            instance: "0123456789abcdef".into(),
            platform: Platform::Web,
            since_ms: 1_700_000_000_123,
            expire_at: 1_700_086_400,
            sig_time: 1_700_000_000,
            valid_until: 1_700_050_000,
        }
    }

    #[test]
    fn round_trip_and_lifetime() {
        let t = Tickets::new("key");
        let ticket = t.issue(&claims());
        assert!(ticket.len() < 300, "{}", ticket.len());
        assert_eq!(t.verify(&ticket, 1_700_000_001), Ok(claims()));
        assert_eq!(t.verify(&ticket, 1_700_050_000), Err(TicketError::Expired));
    }

    #[test]
    fn forged_or_foreign_tickets_are_refused() {
        let t = Tickets::new("key");
        let ticket = t.issue(&claims());
        assert_eq!(
            Tickets::new("other").verify(&ticket, 0),
            Err(TicketError::BadSignature)
        );
        let mut forged = claims();
        forged.since_ms = 0; // claim an earlier login to win the "earliest" rule
        let forged_payload = t.issue(&forged);
        let spliced = format!(
            "{}.{}",
            forged_payload.split_once('.').unwrap().0,
            ticket.split_once('.').unwrap().1
        );
        assert_eq!(t.verify(&spliced, 0), Err(TicketError::BadSignature));
        let short_tag = format!("{}.{}", ticket.split_once('.').unwrap().0, "AAAA");
        assert_eq!(t.verify(&short_tag, 0), Err(TicketError::BadSignature));
        for bad in ["", "no-dot", "a.b.c", "!!.!!", &"x".repeat(2000)] {
            assert!(t.verify(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_app_is_readable_before_the_check_and_older_tickets_name_none() {
        let t = Tickets::new("key");
        assert_eq!(Tickets::peek_app(&t.issue(&claims())), Ok(1_400_000_000));
        let old = TicketClaims { app: 0, ..claims() };
        let ticket = t.issue(&old);
        assert_eq!(Tickets::peek_app(&ticket), Ok(0));
        assert_eq!(Tickets::peek_app("no-dot"), Err(TicketError::Malformed));
    }
}
