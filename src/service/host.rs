//! The Host allow-list (protocol-0.9.md §1.5): a server bound to loopback answers 421 to a
//! request whose host does not name it, which defeats DNS rebinding. The gate applies it to
//! every route of every protocol. The host is the `Host` header, or — HTTP/2 carries it in the
//! `:authority` pseudo-header, which hyper puts in the request URI — the URI's authority; when
//! both are present both must pass.

use std::net::IpAddr;

use http::HeaderMap;
use http::header;

/// When and how `Host` is checked.
#[derive(Debug, Clone, Default)]
pub struct HostCheck {
    /// The socket's bound port.
    pub bound_port: u16,
    /// Declared names (a reverse proxy's front-end host), accepted on any port; normalised.
    pub names: Vec<String>,
}

impl HostCheck {
    /// The check for a server bound to `bind` with declared `names`, or `None` when the rule
    /// does not apply (an explicit non-loopback IP bind with no declared names).
    pub fn for_bind(bind: IpAddr, bound_port: u16, names: &[String]) -> Option<Self> {
        if names.is_empty() && !bind.is_loopback() {
            return None;
        }
        Some(HostCheck {
            bound_port,
            names: names
                .iter()
                .filter_map(|n| parse_host(n).map(|(h, _)| h))
                .collect(),
        })
    }

    /// Whether the request's host passes: exactly one `Host` header naming this server, or
    /// none and a URI authority (HTTP/2 `:authority`) naming it; both must pass when both are
    /// present.
    pub fn allows_request<B>(&self, request: &http::Request<B>) -> bool {
        let authority = request.uri().authority().map(|a| a.as_str());
        let mut values = request.headers().get_all(header::HOST).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => {
                value.to_str().is_ok_and(|v| self.allows_value(v))
                    && authority.is_none_or(|a| self.allows_value(a))
            }
            (None, _) => authority.is_some_and(|a| self.allows_value(a)),
            _ => false,
        }
    }

    /// Whether the request's `Host` headers pass (exactly one, naming this server).
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(header::HOST).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        value.to_str().is_ok_and(|v| self.allows_value(v))
    }

    /// Whether one host value (`name[:port]`) names this server.
    pub fn allows_value(&self, value: &str) -> bool {
        let Some((host, port)) = parse_host(value) else {
            return false;
        };
        if self.names.contains(&host) {
            return true;
        }
        port.unwrap_or(80) == self.bound_port && is_loopback_name(&host)
    }
}

/// Parse and normalise a `Host` value: `(host, port)`. IPs come out in compressed form (IPv6
/// without brackets), names lower-cased. `None` when malformed.
pub fn parse_host(value: &str) -> Option<(String, Option<u16>)> {
    if value.is_empty()
        || !value.is_ascii()
        || value
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b'@' || b == b'/')
    {
        return None;
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if inside.contains('%') {
            return None;
        }
        let ip: std::net::Ipv6Addr = inside.parse().ok()?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        (ip.to_string(), port)
    } else {
        let (host, port) = match value.rsplit_once(':') {
            Some((h, p)) => (h, Some(parse_port(p)?)),
            None => (value, None),
        };
        if host.is_empty() || host.contains(':') {
            return None;
        }
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => {
                if !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                {
                    return None;
                }
                host.to_ascii_lowercase()
            }
        };
        (host, port)
    };
    Some((host, port))
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || p.starts_with('0') || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&n| n >= 1)
}

fn is_loopback_name(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_host(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn loopback_rule() {
        let check = HostCheck::for_bind("127.0.0.1".parse().unwrap(), 8765, &[]).unwrap();
        assert!(check.allows(&with_host("127.0.0.1:8765")));
        assert!(check.allows(&with_host("127.0.0.2:8765")));
        assert!(check.allows(&with_host("LocalHost:8765")));
        assert!(check.allows(&with_host("[::1]:8765")));
        assert!(!check.allows(&with_host("127.0.0.1")));
        assert!(!check.allows(&with_host("127.0.0.1:8766")));
        assert!(!check.allows(&with_host("evil.example:8765")));
        assert!(!check.allows(&with_host("127.0.0.1:08765")));
        assert!(!check.allows(&with_host("user@127.0.0.1:8765")));
        assert!(!check.allows(&with_host("[fe80::1%eth0]:8765")));
        assert!(!check.allows(&HeaderMap::new()));
        let mut two = with_host("127.0.0.1:8765");
        two.append(header::HOST, HeaderValue::from_static("127.0.0.1:8765"));
        assert!(!check.allows(&two));
    }

    #[test]
    fn http2_authority_is_the_host() {
        let check = HostCheck::for_bind("127.0.0.1".parse().unwrap(), 8765, &[]).unwrap();
        let request = |uri: &str, host: Option<&'static str>| {
            let mut b = http::Request::builder().uri(uri);
            if let Some(h) = host {
                b = b.header(header::HOST, h);
            }
            b.body(()).unwrap()
        };
        assert!(check.allows_request(&request("http://127.0.0.1:8765/x", None)));
        assert!(!check.allows_request(&request("http://evil.example:8765/x", None)));
        assert!(!check.allows_request(&request("/x", None)));
        assert!(check.allows_request(&request("/x", Some("localhost:8765"))));
        assert!(!check.allows_request(&request(
            "http://evil.example:8765/x",
            Some("127.0.0.1:8765")
        )));
    }

    #[test]
    fn declared_names_pass_on_any_port() {
        let check = HostCheck::for_bind(
            "127.0.0.1".parse().unwrap(),
            8765,
            &["Hub.Example.org".into()],
        )
        .unwrap();
        assert!(check.allows(&with_host("hub.example.org")));
        assert!(check.allows(&with_host("hub.example.org:443")));
        assert!(HostCheck::for_bind("0.0.0.0".parse().unwrap(), 1, &[]).is_none());
        assert!(HostCheck::for_bind("192.168.1.2".parse().unwrap(), 1, &["x".into()]).is_some());
    }
}
