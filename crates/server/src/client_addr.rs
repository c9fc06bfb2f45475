//! Who is on the other end: the client address every per-address limit counts by.
//!
//! The TCP peer, unless it is a configured trusted proxy (`--trusted-proxies`): then the
//! right-most `X-Forwarded-For` hop that is not itself a trusted proxy. Without the flag the
//! header is ignored — anyone can write it. IPv6 clients are counted by their /64 (one
//! subscriber's usual allocation), so an address hopping inside it is still one client.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// One trusted network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Net {
    type Err = String;

    /// `ADDR` or `ADDR/PREFIX`.
    fn from_str(s: &str) -> Result<Net, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(
            addr.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("{s:?} is not an IP address or network"))?,
        );
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0..={max}"))?,
        };
        Ok(Net { addr, prefix })
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The proxies whose `X-Forwarded-For` is believed. Empty: none (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Net>);

impl TrustedProxies {
    /// A comma-separated list of addresses and networks (`127.0.0.1,10.0.0.0/8`).
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Net::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client's address for a request from `peer` carrying `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        // Each proxy appends the address it got the request from: walk from the right,
        // through our own proxies, to the first hop we did not put there.
        let mut client = peer;
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(value) = value.to_str() else {
                return client;
            };
            for hop in value.rsplit(',') {
                let Some(ip) = parse_hop(hop) else {
                    return client;
                };
                client = ip;
                if !self.trusts(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port or in brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(canonical)
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as the IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// What per-address limits count by: the IPv4 address, or the IPv6 /64.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn networks_parse_and_match() {
        let t = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8,::1,fd00::/8").unwrap();
        assert_eq!(t.0.len(), 4);
        assert!(t.trusts(ip("10.1.2.3")));
        assert!(t.trusts(ip("::ffff:10.9.9.9")), "IPv4-mapped");
        assert!(t.trusts(ip("fd12::1")));
        assert!(!t.trusts(ip("11.0.0.1")));
        assert!(!t.trusts(ip("127.0.0.2")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        for bad in ["x", "10.0.0.0/33", "::/129", "1.2.3.4/-1"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
        assert!(Net::from_str("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        let h = xff(&["203.0.113.9"]);
        assert_eq!(none.client(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        let t = TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap();
        assert_eq!(
            t.client(ip("198.51.100.1"), &h),
            ip("198.51.100.1"),
            "untrusted peer"
        );
        assert_eq!(t.client(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // A client-written prefix is skipped: only the hop our proxy added counts.
        let h = xff(&["6.6.6.6, 203.0.113.9", "10.0.0.2"]);
        assert_eq!(t.client(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // Garbage stops the walk at the last good hop.
        let h = xff(&["nonsense, 10.0.0.3"]);
        assert_eq!(t.client(ip("127.0.0.1"), &h), ip("10.0.0.3"));
        assert_eq!(t.client(ip("127.0.0.1"), &xff(&[])), ip("127.0.0.1"));
        let h = xff(&["[2001:db8::1]:443", "203.0.113.7:5555"]);
        assert_eq!(t.client(ip("127.0.0.1"), &h), ip("203.0.113.7"));
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(limit_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
