//! The gate: the first thing every request meets, whatever its path or protocol. It starts the
//! deadline, applies the Host rule of a loopback bind (the `Host` header, or HTTP/2's
//! `:authority`), and — on a private server — verifies the `/s/<token>/` prefix and strips it,
//! so that everything behind the gate sees the path below the token and the token's grant.

use std::time::{Instant, SystemTime};

use http::{Request, Uri};

use super::context::{Admission, BodyLimit, Deadline, Grant};
use super::host::HostCheck;
use crate::share::{self, ShareError, ShareSecret};

/// Why the gate refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The host does not name this server (421; DNS rebinding).
    #[error("Host header does not name this server")]
    ForeignHost,
    /// No valid share token (403).
    #[error("Forbidden: {0}")]
    Share(ShareError),
    /// The target below the token is not a valid request target (400).
    #[error("Invalid request path")]
    BadTarget,
}

/// The gate's rules.
#[derive(Debug, Clone)]
pub struct Gate {
    host: Option<HostCheck>,
    share: Option<ShareSecret>,
    timeout: std::time::Duration,
}

impl Gate {
    /// A gate applying `host` (when set), `share` (when set) and a deadline of `timeout`.
    pub fn new(
        host: Option<HostCheck>,
        share: Option<ShareSecret>,
        timeout: std::time::Duration,
    ) -> Self {
        Gate {
            host,
            share,
            timeout,
        }
    }

    /// Whether share tokens are required.
    pub fn is_private(&self) -> bool {
        self.share.is_some()
    }

    /// Admit `request` or refuse it. On admission a private request's URI is rewritten to the
    /// target below its token, and the [`Admission`] is returned (and attached to the request).
    pub fn admit<B>(&self, request: &mut Request<B>) -> Result<Admission, Refusal> {
        let now = Instant::now();
        let mut deadline = now + self.timeout;
        if let Some(Deadline(by)) = request.extensions().get::<Deadline>() {
            deadline = deadline.min(*by);
        }
        let body_limit = request.extensions().get::<BodyLimit>().map(|l| l.0);
        if let Some(check) = &self.host
            && !check.allows_request(request)
        {
            tracing::warn!(
                target: "cellucid_edge::gate",
                host = ?request.headers().get_all(http::header::HOST).iter().collect::<Vec<_>>(),
                authority = ?request.uri().authority(),
                "the request's host does not name this server (421)"
            );
            return Err(Refusal::ForeignHost);
        }
        let grant = match &self.share {
            None => None,
            Some(secret) => Some(self.open_share(secret, request)?),
        };
        let admission = Admission {
            grant,
            deadline,
            body_limit,
        };
        request.extensions_mut().insert(admission.clone());
        Ok(admission)
    }

    fn open_share<B>(
        &self,
        secret: &ShareSecret,
        request: &mut Request<B>,
    ) -> Result<Grant, Refusal> {
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let (token, below) = share::split_target(target).map_err(Refusal::Share)?;
        let claims = share::verify(secret, token, SystemTime::now()).map_err(Refusal::Share)?;
        let uri: Uri = below.parse().map_err(|_| Refusal::BadTarget)?;
        *request.uri_mut() = uri;
        Ok(Grant {
            dataset: claims.dataset,
            expires: std::time::UNIX_EPOCH + std::time::Duration::from_secs(claims.expires),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secret() -> ShareSecret {
        ShareSecret::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
    }

    #[test]
    fn tokens_are_stripped_and_granted() {
        let gate = Gate::new(None, Some(secret()), Duration::from_secs(5));
        let token = share::issue_for(
            &secret(),
            SystemTime::now(),
            Duration::from_secs(60),
            Some("a"),
        );
        let mut request = Request::get(format!("/s/{token}/v0.9/x?q=1"))
            .body(())
            .unwrap();
        let admission = gate.admit(&mut request).expect("admitted");
        assert_eq!(
            request.uri().path_and_query().unwrap().as_str(),
            "/v0.9/x?q=1"
        );
        assert_eq!(admission.bound_dataset(), Some("a"));
        assert!(request.extensions().get::<Admission>().is_some());
        for path in ["/v0.9/x", "/s/nope/x", "/x/s/{token}/y"] {
            let mut request = Request::get(path).body(()).unwrap();
            assert!(
                matches!(gate.admit(&mut request), Err(Refusal::Share(_))),
                "{path}"
            );
        }
    }

    #[test]
    fn the_transport_deadline_shortens_the_timeout() {
        let gate = Gate::new(None, None, Duration::from_secs(30));
        let soon = Instant::now() + Duration::from_millis(10);
        let mut request = Request::get("/").body(()).unwrap();
        request.extensions_mut().insert(Deadline(soon));
        assert_eq!(gate.admit(&mut request).unwrap().deadline, soon);
    }

    #[test]
    fn foreign_hosts_are_refused_before_anything() {
        let check = HostCheck::for_bind("127.0.0.1".parse().unwrap(), 8765, &[]);
        let gate = Gate::new(check, Some(secret()), Duration::from_secs(5));
        let mut request = Request::get("/points_3d.bin")
            .header("host", "evil.example:8765")
            .body(())
            .unwrap();
        assert_eq!(gate.admit(&mut request).unwrap_err(), Refusal::ForeignHost);
    }
}
