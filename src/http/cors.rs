//! Which browser origins may read responses (CORS echo).

/// Allowed origins.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    any: bool,
    extra: Vec<String>,
    defaults: bool,
}

impl Default for CorsPolicy {
    fn default() -> Self {
        CorsPolicy {
            any: false,
            extra: Vec::new(),
            defaults: true,
        }
    }
}

impl CorsPolicy {
    /// Build from a list: `*` allows every origin; `default` keeps the built-in list
    /// (localhost, 127.0.0.1, `https://www.cellucid.com`, `https://*.cellucid.com`); other entries
    /// are exact origins (`https://viewer.example.org`). An empty list means the defaults.
    pub fn from_list<S: AsRef<str>>(items: &[S]) -> Self {
        if items.is_empty() {
            return Self::default();
        }
        let mut policy = CorsPolicy {
            any: false,
            extra: Vec::new(),
            defaults: false,
        };
        for item in items {
            match item.as_ref().trim() {
                "*" => policy.any = true,
                "default" => policy.defaults = true,
                "" => {}
                origin => policy.extra.push(origin.trim_end_matches('/').to_string()),
            }
        }
        policy
    }

    /// Whether every origin is allowed (`Access-Control-Allow-Origin: *`).
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Whether `origin` may read responses.
    pub fn allows(&self, origin: &str) -> bool {
        if self.any || self.extra.iter().any(|o| o == origin) {
            return true;
        }
        self.defaults && default_allows(origin)
    }
}

/// The reference's built-in rule (§1.4 of the protocol notes).
fn default_allows(origin: &str) -> bool {
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return false;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    if host == "localhost" || host == "127.0.0.1" {
        return true;
    }
    if origin == "https://www.cellucid.com" {
        return true;
    }
    scheme == "https" && (host == "cellucid.com" || host.ends_with(".cellucid.com"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_reference() {
        let p = CorsPolicy::default();
        assert!(p.allows("http://localhost:5173"));
        assert!(p.allows("https://127.0.0.1:8443"));
        assert!(p.allows("https://www.cellucid.com"));
        assert!(p.allows("https://beta.cellucid.com"));
        assert!(!p.allows("http://beta.cellucid.com"));
        assert!(!p.allows("https://evilcellucid.com"));
        assert!(!p.allows("https://cellucid.com.evil.org"));
        assert!(!p.allows("null"));
    }

    #[test]
    fn lists_extend_or_replace() {
        let p = CorsPolicy::from_list(&["https://viewer.example.org", "default"]);
        assert!(p.allows("https://viewer.example.org"));
        assert!(p.allows("http://localhost:1"));
        let p = CorsPolicy::from_list(&["https://viewer.example.org"]);
        assert!(!p.allows("http://localhost:1"));
        assert!(CorsPolicy::from_list(&["*"]).allows("https://anything.example"));
    }
}
