//! The URL half of a REST call: the query string, parsed strictly, and the proof that the
//! caller is the app admin. Checked in this order, first failure wins: the query parses
//! (60002), `sdkappid` (60012 / 60006), `random` and `contenttype` (60002), `identifier`
//! (70403), `usersig` (70002, then the UserSig's own 700xx code).

use tim_usersig::UserSigError;

use std::sync::Arc;

use super::error::RestError;
use crate::apps::{App, Apps};

/// Longest caller-supplied text echoed back in an `ErrorInfo`.
const MAX_ECHO: usize = 40;

/// The query parameters the REST API reads; any other parameter is ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RestQuery {
    pub sdkappid: Option<String>,
    pub identifier: Option<String>,
    pub usersig: Option<String>,
    pub random: Option<String>,
    pub contenttype: Option<String>,
}

/// Parses a query string (`application/x-www-form-urlencoded`). Strict where lenient
/// parsers guess: a bad `%` escape, non-UTF-8 text or a repeated parameter is a 60002,
/// because the admin check must be about exactly one unambiguous value of each.
pub fn parse_query(raw: &str) -> Result<RestQuery, RestError> {
    let mut query = RestQuery::default();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name)?;
        let slot = match name.as_str() {
            "sdkappid" => &mut query.sdkappid,
            "identifier" => &mut query.identifier,
            "usersig" => &mut query.usersig,
            "random" => &mut query.random,
            "contenttype" => &mut query.contenttype,
            _ => continue,
        };
        if slot.is_some() {
            return Err(RestError::BadUrl(format!("parameter {name} appears twice")));
        }
        *slot = Some(decode(value)?);
    }
    Ok(query)
}

/// Percent-decodes one query component (`+` is a space).
fn decode(s: &str) -> Result<String, RestError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Exactly two hex digits: `from_str_radix` alone would take `%+A` as 0x0A.
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        RestError::BadUrl("bad percent-escape in the query string".into())
                    })?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| RestError::BadUrl("the query string is not UTF-8 once decoded".into()))
}

/// Who a REST call proved to be: an admin of `app`, holding a UserSig issued at `sig_time`.
pub struct Caller {
    pub app: Arc<App>,
    pub admin: String,
    pub sig_time: u64,
}

/// Checks everything the URL must prove, at `now` (unix seconds): the app (one of `apps`),
/// the request format, and that the caller is one of that app's admins holding a valid
/// UserSig. Whether a REST kick of that admin revoked the UserSig is [`check_admin_kick`]'s
/// to say (it needs the backend: called only once everything here passed).
pub fn authenticate(query: &RestQuery, apps: &Apps, now: u64) -> Result<Caller, RestError> {
    let sdkappid = query
        .sdkappid
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(RestError::MissingSdkAppId)?;
    // Its canonical decimal spelling only: no sign, no leading zero.
    let app = is_canonical_u32(sdkappid)
        .then(|| sdkappid.parse::<u32>().ok())
        .flatten()
        .and_then(|id| apps.get(id))
        .ok_or_else(|| RestError::UnknownSdkAppId(echo(sdkappid)))?;
    match query.random.as_deref() {
        None => {
            return Err(RestError::BadUrl(
                "random is missing: send a random integer from 0 to 4294967295".into(),
            ))
        }
        Some(r) if !is_u32(r) => {
            return Err(RestError::BadUrl(format!(
                "random {} is not an integer from 0 to 4294967295",
                echo(r)
            )))
        }
        Some(_) => {}
    }
    if let Some(t) = query.contenttype.as_deref() {
        if !t.eq_ignore_ascii_case("json") {
            return Err(RestError::BadUrl(format!(
                "contenttype {} is not supported: use contenttype=json",
                echo(t)
            )));
        }
    }
    let admin = match query.identifier.as_deref() {
        Some(id) if app.is_admin(id) => id,
        _ => return Err(RestError::NotAdmin),
    };
    let usersig = query
        .usersig
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(RestError::MissingUserSig)?;
    let claims =
        tim_usersig::verify(usersig, app.key(), app.sdkappid, admin, now).map_err(|e| match e {
            UserSigError::Empty => RestError::MissingUserSig,
            e => RestError::AdminUserSig(e),
        })?;
    if let Some(ahead) = crate::login::issued_ahead(claims.time, now) {
        return Err(RestError::AdminUserSigFromTheFuture(ahead));
    }
    Ok(Caller {
        app: Arc::clone(app),
        admin: admin.to_owned(),
        sig_time: claims.time,
    })
}

/// 70001 if the admin's UserSig was issued at or before a REST kick of that admin account
/// (`kicked_at`, unix seconds).
pub fn check_admin_kick(caller: &Caller, kicked_at: Option<u64>) -> Result<(), RestError> {
    if kicked_at.is_some_and(|k| caller.sig_time <= k) {
        return Err(RestError::AdminUserSigKicked);
    }
    Ok(())
}

/// A `u32` written the one way it prints: digits only, no leading zero (except `0`).
fn is_canonical_u32(s: &str) -> bool {
    is_u32(s) && (s == "0" || !s.starts_with('0'))
}

/// Decimal digits only (no sign, no spaces), within `u32`.
fn is_u32(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().is_ok()
}

/// Caller text made safe to echo: bounded and escaped.
pub fn echo(s: &str) -> String {
    let mut end = s.len().min(MAX_ECHO);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < s.len() { "…" } else { "" };
    format!("\"{}{cut}\"", s[..end].escape_debug())
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: u32 = 1_400_000_001;
    const KEY: &str = "rest-unit-key";
    const NOW: u64 = 1_700_000_000;

    fn apps() -> Apps {
        Apps::new(&crate::config::Config::new(APP, KEY).app_configs())
    }

    fn query(sig: &str) -> String {
        format!("sdkappid={APP}&identifier=administrator&usersig={sig}&random=42&contenttype=json")
    }

    fn code(raw: &str) -> u32 {
        code_with(raw, None)
    }

    fn code_with(raw: &str, admin_kicked_at: Option<u64>) -> u32 {
        match parse_query(raw)
            .and_then(|q| authenticate(&q, &apps(), NOW))
            .and_then(|caller| check_admin_kick(&caller, admin_kicked_at))
        {
            Ok(()) => 0,
            Err(e) => e.code(),
        }
    }

    fn admin_sig(time: u64) -> String {
        tim_usersig::generate(APP, KEY, "administrator", time, 3600)
    }

    #[test]
    fn parses_and_decodes_strictly() {
        let q = parse_query("sdkappid=1&identifier=a%2Db+c&x=%zz&&usersig=s&random=0").unwrap();
        assert_eq!(q.sdkappid.as_deref(), Some("1"));
        assert_eq!(q.identifier.as_deref(), Some("a-b c"));
        assert_eq!(q.usersig.as_deref(), Some("s"));
        assert_eq!(q.random.as_deref(), Some("0"));
        assert_eq!(q.contenttype, None);
        assert_eq!(parse_query("").unwrap(), RestQuery::default());
        for bad in [
            "usersig=%zz",
            "usersig=%4",
            "random=%FF",
            "sdkappid=1&sdkappid=1",
            "usersig=%+A",
            "usersig=%-1",
            "usersig=% A",
            "identifier=%+0",
        ] {
            assert_eq!(parse_query(bad).unwrap_err().code(), 60002, "{bad}");
        }
    }

    #[test]
    fn every_url_failure_has_its_code() {
        let good = admin_sig(NOW - 10);
        assert_eq!(code(&query(&good)), 0);
        // Absent contenttype is fine; any other value is not.
        assert_eq!(
            code(&format!(
                "sdkappid={APP}&identifier=administrator&usersig={good}&random=1"
            )),
            0
        );
        assert_eq!(code(&query(&good).replace("=json", "=JSON")), 0);
        assert_eq!(code(&query(&good).replace("=json", "=xml")), 60002);
        assert_eq!(code(&query(&good).replace("sdkappid=", "x=")), 60012);
        assert_eq!(code(&query(&good).replace(&APP.to_string(), "")), 60012);
        assert_eq!(
            code(&query(&good).replace(&APP.to_string(), "1400000002")),
            60006
        );
        assert_eq!(code(&query(&good).replace(&APP.to_string(), "abc")), 60006);
        assert_eq!(
            code(&query(&good).replace(&APP.to_string(), "+1400000001")),
            60006
        );
        for spelling in [
            "01400000001",
            "0001400000001",
            "1400000001 ",
            "1_400_000_001",
        ] {
            assert_eq!(
                code(&query(&good).replace(&APP.to_string(), spelling)),
                60006,
                "{spelling}"
            );
        }
        for random in ["", "-1", "4294967296", "1.5", "+1", "x"] {
            assert_eq!(
                code(&query(&good).replace("=42", &format!("={random}"))),
                60002
            );
        }
        assert_eq!(code(&query(&good).replace("random=42&", "")), 60002);
        assert_eq!(code(&query(&good).replace("administrator", "alice")), 70403);
        assert_eq!(code(&query(&good).replace("identifier=", "x=")), 70403);
        assert_eq!(code(&query("")), 70002);
        assert_eq!(code(&query(&good).replace("usersig=", "x=")), 70002);
        assert_eq!(code(&query("garbage")), 70003);
        let wrong_key = tim_usersig::generate(APP, "other", "administrator", NOW, 3600);
        assert_eq!(code(&query(&wrong_key)), 70009);
        let other_user = tim_usersig::generate(APP, KEY, "alice", NOW, 3600);
        assert_eq!(code(&query(&other_user)), 70013);
        let other_app = tim_usersig::generate(APP + 1, KEY, "administrator", NOW, 3600);
        assert_eq!(code(&query(&other_app)), 70014);
        assert_eq!(code(&query(&admin_sig(NOW - 3600))), 70001);
    }

    #[test]
    fn a_kick_of_the_admin_revokes_its_earlier_usersigs() {
        assert_eq!(code_with(&query(&admin_sig(NOW - 5)), Some(NOW - 5)), 70001);
        assert_eq!(code_with(&query(&admin_sig(NOW - 4)), Some(NOW - 5)), 0);
    }

    #[test]
    fn echo_is_bounded_and_escaped() {
        assert_eq!(echo("ab"), "\"ab\"");
        assert_eq!(echo("a\"\n"), "\"a\\\"\\n\"");
        let long = "é".repeat(40);
        let e = echo(&long);
        assert!(e.len() < 50 && e.ends_with("…\""), "{e}");
    }
}
