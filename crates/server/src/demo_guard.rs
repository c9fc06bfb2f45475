//! The fence around demo mode's routes (`/demo/*`, the demo page, `/pkg/`).
//!
//! Demo mode listens on loopback only, but a web page can still reach it: through DNS
//! rebinding (its own host name resolving to 127.0.0.1, so the browser sends that name as
//! `Host`), or as a cross-site request from another origin. Both are refused here: the
//! `Host` must name a loopback host, and a request carrying an `Origin` must come from a
//! loopback origin. A request without those headers is not from a browser page.
//!
//! And with an app key of its own (`--demo --key ...`, as the e2e tests run it), demo mode
//! hands out no UserSigs (`/demo/usersig` and the console's `/demo/admin-usersig` are
//! refused): that key may be a production one.
//! The other demo APIs stay (inside this fence), and `serve` says so at start.

use axum::extract::Request;
use axum::http::header::{HOST, ORIGIN};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tim_proto::ERR_NEED_ADMIN;

use crate::demo::DemoError;

/// The middleware: `demo_key` says whether the server runs with the embedded demo key.
pub async fn guard(demo_key: bool, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Some(host) = headers.get(HOST) {
        let ok = host.to_str().ok().is_some_and(is_loopback_authority);
        if !ok {
            tracing::warn!(host = ?host, "demo mode: refused a request for another host name (DNS rebinding?)");
            return refuse("demo mode answers only requests for a loopback host name");
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        if !origin.to_str().ok().is_some_and(is_loopback_origin) {
            tracing::warn!(origin = ?origin, "demo mode: refused a request from another origin");
            return refuse("demo mode answers only pages from a loopback origin");
        }
    }
    if !demo_key
        && matches!(
            request.uri().path(),
            "/demo/usersig" | "/demo/admin-usersig"
        )
    {
        return refuse(
            "demo mode with an app key of its own hands out no UserSigs; run --demo with \
             the embedded demo key for them",
        );
    }
    next.run(request).await
}

fn refuse(message: &str) -> Response {
    let body = DemoError {
        code: ERR_NEED_ADMIN,
        message: message.to_owned(),
    };
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// `host[:port]` naming this machine: `localhost` (and `*.localhost`, which resolvers keep on
/// loopback), a 127.0.0.0/8 address or `[::1]`.
pub fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.strip_prefix(':').is_some_and(is_port) => {
                return v6
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|ip| ip.is_loopback());
            }
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return false,
            None => authority,
        },
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// `http(s)://` + a loopback authority.
pub fn is_loopback_origin(origin: &str) -> bool {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(is_loopback_authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_only() {
        for ok in [
            "localhost",
            "localhost:9000",
            "LOCALHOST:9000",
            "demo.localhost:9000",
            "127.0.0.1",
            "127.0.0.1:9000",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:9000",
            "localhost.:9000",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "evil.example:9000",
            "localhost.evil.example",
            "127.0.0.1.nip.io:9000",
            "10.0.0.1:9000",
            "[::2]:9000",
            "[::1]x",
            "localhost:",
            "localhost:abc",
            "",
            "0.0.0.0:9000",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
        assert!(is_loopback_origin("http://127.0.0.1:9000"));
        assert!(is_loopback_origin("https://localhost"));
        assert!(!is_loopback_origin("null"));
        assert!(!is_loopback_origin("http://evil.example"));
        assert!(!is_loopback_origin("file://"));
    }
}
