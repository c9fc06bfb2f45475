//! Which web pages may open `/ws` (`--allowed-origins`), against cross-site WebSocket
//! hijacking: a page on any site can open a WebSocket to any server, and the browser tells
//! the server only its `Origin`.
//!
//! A request without `Origin` is not from a browser page (native clients send none) and
//! passes. Otherwise the origin must be listed, or be the server's own (its authority is
//! the request's `Host`), or — in demo mode — a loopback page. `*` allows every origin and
//! must be given explicitly.

use crate::demo_guard::is_loopback_origin;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Same origin only (plus loopback pages in demo mode).
    #[default]
    SameOrigin,
    /// `*`: any page.
    Any,
    /// These origins (`scheme://host[:port]`, lower case), plus the same origin.
    List(Vec<String>),
}

impl AllowedOrigins {
    /// A comma-separated list of origins, or `*`.
    pub fn parse(list: &str) -> Result<AllowedOrigins, String> {
        let items: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items == ["*"] {
            return Ok(AllowedOrigins::Any);
        }
        if items.is_empty() {
            return Ok(AllowedOrigins::SameOrigin);
        }
        items
            .into_iter()
            .map(|o| {
                let o = o.trim_end_matches('/').to_ascii_lowercase();
                let rest = o
                    .strip_prefix("https://")
                    .or_else(|| o.strip_prefix("http://"))
                    .ok_or_else(|| {
                        format!(
                            "--allowed-origins: {o:?} is not http(s)://host[:port] (or a lone *)"
                        )
                    })?;
                if rest.is_empty() || rest.contains(['/', '?', '#', '*', '@']) {
                    return Err(format!(
                        "--allowed-origins: {o:?} is not http(s)://host[:port] (or a lone *)"
                    ));
                }
                Ok(o)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AllowedOrigins::List)
    }

    /// Whether a request with `origin` (if any) for `host` (its `Host` header) may open
    /// `/ws`. `demo` adds loopback pages.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>, demo: bool) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if *self == AllowedOrigins::Any {
            return true;
        }
        let origin = origin.trim().to_ascii_lowercase();
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        if let (Some(authority), Some(host)) = (authority, host) {
            if authority == host.trim().to_ascii_lowercase() {
                return true;
            }
        }
        if demo && is_loopback_origin(&origin) {
            return true;
        }
        match self {
            AllowedOrigins::List(list) => list.contains(&origin),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!(AllowedOrigins::parse("*"), Ok(AllowedOrigins::Any));
        assert_eq!(AllowedOrigins::parse(""), Ok(AllowedOrigins::SameOrigin));
        assert_eq!(
            AllowedOrigins::parse("https://App.example/, http://localhost:8080"),
            Ok(AllowedOrigins::List(vec![
                "https://app.example".into(),
                "http://localhost:8080".into()
            ]))
        );
        for bad in [
            "app.example",
            "https://*.example",
            "https://a/b",
            "*,https://a",
            "ftp://a",
        ] {
            assert!(AllowedOrigins::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decisions() {
        let same = AllowedOrigins::SameOrigin;
        let host = Some("chat.example:443");
        assert!(
            same.allows(None, host, false),
            "native clients send no Origin"
        );
        assert!(same.allows(Some("https://chat.example:443"), host, false));
        assert!(same.allows(Some("https://CHAT.example:443"), host, false));
        assert!(!same.allows(Some("https://evil.example"), host, false));
        assert!(!same.allows(Some("null"), host, false));
        assert!(!same.allows(Some("http://127.0.0.1:8000"), Some("127.0.0.1:9000"), false));
        assert!(same.allows(Some("http://127.0.0.1:8000"), Some("127.0.0.1:9000"), true));
        assert!(!same.allows(Some("https://evil.example"), host, true));
        let list = AllowedOrigins::parse("https://app.example").unwrap();
        assert!(list.allows(Some("https://app.example"), host, false));
        assert!(list.allows(Some("https://chat.example:443"), host, false));
        assert!(!list.allows(Some("https://app.example.evil"), host, false));
        assert!(
            !list.allows(Some("http://app.example"), host, false),
            "scheme matters"
        );
        assert!(AllowedOrigins::Any.allows(Some("null"), host, false));
    }
}
